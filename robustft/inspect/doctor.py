"""`robustft doctor DIR [--repair]`: check a run directory, say what is wrong and what a repair
would do; with --repair, do it.

    links        a file robustft writes that is a symbolic link: refused (exit 2), a person decides
    temporaries  leftovers of a killed writer, by robustft's own naming only (removed)
    store        responses.sqlite: SQLite's check, its tables, every row (rebuilt from what reads;
                 the rest is asked again by the next run)
    run files    samples.jsonl, summary.json, denoised.jsonl, review_log.jsonl as the other commands
                 read them (their message says the fix: usually running `denoise` again)
    review       decisions logged but not in denoised.jsonl (an import cut off): applied again

Nothing outside DIR is read for writing, and a run going on in DIR is left alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..backends.store_repair import check_store, rebuild_store
from ..errors import UserError
from ..files import open_nofollow, remove_stale_temporaries, temporary_pattern, write_jsonl
from ..run.rundir import DENOISED, LOCK, STORE, WRITTEN, load_run, read_jsonl_checked, refuse_links


@dataclass
class Finding:
    what: str
    repair: str | None = None     # what --repair does; None: a person must act (the fix is in `what`)
    repaired: bool = False


@dataclass
class Checkup:
    dir: Path
    findings: list[Finding] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(f.repaired for f in self.findings)

    def text(self, repair: bool) -> str:
        if not self.findings:
            return f"{self.dir}: no problem found"
        lines = []
        for f in self.findings:
            if f.repaired:
                lines.append(f"repaired: {f.what}: {f.repair}")
            elif f.repair:
                lines.append(f"problem: {f.what}\n  a repair would: {f.repair}")
            else:
                lines.append(f"problem: {f.what}")
        if not repair and any(f.repair for f in self.findings):
            lines.append(f"run `robustft doctor {self.dir} --repair` to make the repairs above")
        return "\n".join(lines)


def _running(d: Path) -> bool:
    import fcntl

    if not (d / LOCK).is_file():
        return False
    fd = open_nofollow(d / LOCK, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def doctor(run_dir: str | Path, repair: bool = False) -> Checkup:
    d = Path(run_dir)
    if not d.is_dir():
        raise UserError(f"{d}: not a directory; pass the run directory of a `robustft denoise` run")
    refuse_links(d)  # a link is a person's to resolve: nothing is read or repaired through one
    up = Checkup(d)
    if _running(d):
        raise UserError(f"{d} is in use by a robustft run; run doctor when it has finished (or stop it)")

    pattern = temporary_pattern(WRITTEN)
    stale = sorted(p.name for p in d.iterdir() if pattern.fullmatch(p.name) and not p.is_symlink())
    if stale:
        f = Finding(f"{len(stale)} temporary files left by a killed command ({', '.join(stale[:3])}"
                    f"{', ...' if len(stale) > 3 else ''})", "remove them")
        if repair:
            remove_stale_temporaries(d, WRITTEN)
            f.repaired = True
        up.findings.append(f)

    if (d / STORE).is_file():
        health = check_store(d / STORE)
        if not health.ok:
            f = Finding(f"{d / STORE}: " + "; ".join(health.problems),
                        "rebuild it from every row that still reads (the rest is asked again by the next run)")
            if repair:
                kept = rebuild_store(d / STORE)
                f.repair += f": kept {kept.responses} responses and {kept.embeddings} embeddings"
                f.repaired = True
            up.findings.append(f)

    try:
        run = load_run(d)
    except UserError as e:
        up.findings.append(Finding(str(e)))
        return up
    if run.denoised is not None and (d / "review_log.jsonl").is_file():
        def decided(rows: list[dict]) -> list[tuple]:  # what a decision sets (other fields vary by version)
            return [(str(r.get("id")), r.get("label"), r.get("source")) for r in rows]

        if decided(read_jsonl_checked(d / DENOISED)) != decided(run.denoised):
            f = Finding(f"{d / DENOISED} lacks decisions logged in review_log.jsonl (a `review import` was cut off)",
                        "rewrite it with every logged decision applied")
            if repair:
                write_jsonl(d / DENOISED, run.denoised)
                f.repaired = True
            up.findings.append(f)
    return up


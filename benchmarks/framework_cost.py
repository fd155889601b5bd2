"""robustft's own CPU per sample, around a server that answers at once; and its start-up.

Synthetic multiple-choice rows (30 % wrong labels) go through `robustft denoise` against
`robustft.sim` in a separate process, answering instantly, with its `/v1/embeddings` for the
questions (`--embedding-base-url`), at `--concurrency 64`. CPU per sample is the slope between a
small and a large run (user + system time of the robustft process), so start-up cancels out.
Start-up is the time from launching the process to the first request reaching the server.

    python -m benchmarks.framework_cost [--small 500] [--large 5000] [--repeats 2]

Goal (issue 7): at most 4 ms of CPU per sample; the first model call within 3 s of start.

    python -m benchmarks.framework_cost --tracing [--small 500] [--large 4000] [--repeats 3]

measures what OpenTelemetry tracing costs (issue 23), in one run, interleaved: the same CPU slope
with tracing on (spans exported over OTLP/HTTP to `tests/otlp_receiver.py` in this process, which
decodes and counts them), with tracing off, and for robustft as it was before tracing existed
(`git archive` of the commit before the one that added robustft/tracing, run from a temporary
folder). Goals: tracing on adds at most 0.5 ms of CPU per sample; off adds nothing.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from ._runs import ROOT, SimProcess, run_measured, synthetic, write_results


def first_call_after(sim: SimProcess, args: list[str]) -> float:
    """Seconds from launching `robustft denoise` until the server sees its first chat request."""
    before = sim.requests()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "robustft", "denoise", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while sim.requests() == before:
            if proc.poll() is not None:
                raise RuntimeError("the run ended before its first call")
            time.sleep(0.01)
        return time.perf_counter() - started
    finally:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=None, help="default 5000 (4000 with --tracing)")
    parser.add_argument("--repeats", type=int, default=None, help="default 2 (3 with --tracing)")
    parser.add_argument("--tracing", action="store_true", help="what OpenTelemetry tracing costs (issue 23)")
    parser.add_argument("--no-before", action="store_true", help="with --tracing: without the variant before")
    parser.add_argument("--no-tenth", action="store_true", help="with --tracing: without the variant on-10%%")
    parser.add_argument("--against", metavar="REV", help="with --tracing: also robustft at git revision REV with "
                        "tracing on (variant on@REV), to measure a change to tracing in the same run")
    args = parser.parse_args(argv)
    if args.tracing:
        args.large, args.repeats = args.large or 4000, args.repeats or 3
        return tracing_cost(args)
    args.large, args.repeats = args.large or 5000, args.repeats or 2
    work = Path(tempfile.mkdtemp(prefix="robustft-bench-"))
    gold, noisy = synthetic(work, args.large)
    rows, slopes = [], []
    with SimProcess(gold) as sim:
        def run(n: int, out: Path):
            before = sim.requests()
            m = run_measured(["--data", str(noisy), "--limit", str(n), "--model", "sim", "--base-url", sim.base_url,
                              "--embedding-base-url", sim.base_url, "--embedding-model", "sim-embed",
                              "--concurrency", "64", "--out", str(out), "--quiet"])
            if m.returncode not in (0, 3):
                raise RuntimeError(m.stderr[-3000:])
            return m, sim.requests() - before

        for repeat in range(args.repeats):
            small, _ = run(args.small, work / f"small-{repeat}")
            large, calls_large = run(args.large, work / f"large-{repeat}")
            slope = (large.cpu_s - small.cpu_s) / (args.large - args.small)
            slopes.append(slope)
            rows.append({"repeat": repeat, "small_cpu_s": round(small.cpu_s, 2), "large_cpu_s": round(large.cpu_s, 2),
                         "small_wall_s": round(small.wall_s, 2), "large_wall_s": round(large.wall_s, 2),
                         "calls_per_sample": round(calls_large / args.large, 2),
                         "cpu_ms_per_sample": round(slope * 1000, 3)})
        startup = [first_call_after(sim, ["--data", str(noisy), "--limit", "50", "--model", "sim", "--base-url",
                                          sim.base_url, "--embedding-base-url", sim.base_url, "--embedding-model",
                                          "sim-embed", "--out", str(work / f"startup-{i}"), "--quiet"])
                   for i in range(3)]
    best = min(slopes) * 1000
    payload = {"small": args.small, "large": args.large, "runs": rows, "cpu_ms_per_sample_best": round(best, 3),
               "cpu_ms_per_sample_median": round(statistics.median(slopes) * 1000, 3),
               "first_call_s": [round(s, 2) for s in startup], "goal_cpu_ms": 4.0, "goal_first_call_s": 3.0}
    md = ["# Framework cost: robustft's own CPU per sample", "",
          f"Synthetic rows (4 options, 30 % wrong labels) against `robustft.sim` in its own process, answering "
          f"at once, with its embeddings; `--concurrency 64`. CPU (user + system) of the robustft process; per "
          f"sample = slope between {args.small} and {args.large} rows, so start-up cancels. 2 shared cores: the "
          "server uses the other one.", "",
          "| repeat | CPU small | CPU large | wall small | wall large | calls / sample | CPU per sample |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r['repeat']} | {r['small_cpu_s']} s | {r['large_cpu_s']} s | {r['small_wall_s']} s | "
           f"{r['large_wall_s']} s | {r['calls_per_sample']} | {r['cpu_ms_per_sample']} ms |" for r in rows]
    md += ["", f"**CPU per sample: {best:.2f} ms** (best of {len(slopes)}; median "
               f"{payload['cpu_ms_per_sample_median']:.2f} ms). Goal: at most 4 ms.", "",
           f"**First model call after launch:** {', '.join(f'{s:.2f} s' for s in startup)} (goal: within 3 s)."]
    write_results("framework_cost", payload, "\n".join(md))


def before_tracing(work: Path) -> tuple[Path, str] | None:
    """robustft as of the commit before the one that added tracing, unpacked into `work` (None
    without git history)."""
    try:
        added = subprocess.run(["git", "log", "--format=%H", "--diff-filter=A", "--", "robustft/tracing/__init__.py"],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return at_revision(work / "before", f"{added[-1]}^") if added else None


def at_revision(folder: Path, rev: str) -> tuple[Path, str] | None:
    """robustft as of git revision `rev`, unpacked into `folder` (None without git history)."""
    try:
        short = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
        tar = subprocess.run(["git", "archive", short, "robustft"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(folder, filter="data")
    return folder, short


def tracing_cost(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from otlp_receiver import OtlpReceiver

    work = Path(tempfile.mkdtemp(prefix="robustft-bench-"))
    try:
        _tracing_cost(args, work, OtlpReceiver)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # a few hundred MB of run directories


def _tracing_cost(args: argparse.Namespace, work: Path, OtlpReceiver: type) -> None:  # noqa: N803
    """Runs the variants; the results are written after each repeat (a long run cut short keeps its
    finished repeats)."""
    gold, noisy = synthetic(work, args.large)
    plain = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    before = None if args.no_before else before_tracing(work)
    against = at_revision(work / "against", args.against) if args.against else None
    if args.against and against is None:
        raise SystemExit(f"--against {args.against}: not a git revision of this checkout")
    slopes: dict[str, list[float]] = {"before": [], "off": [], "on": [], "on-10%": []}
    if against is not None:
        slopes[f"on@{against[1]}"] = []
    tenth = work / "tenth.yaml"
    tenth.write_text("run:\n  otel_sample: 0.1\n")
    rows, spans_per_sample = [], []
    with SimProcess(gold) as sim, OtlpReceiver() as receiver:
        traced = {**plain, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
        variants = {"off": (plain, None), "on": (traced, None)}
        if not args.no_tenth:
            variants["on-10%"] = (traced, None)
        if before is not None:
            variants["before"] = (plain, before[0])
        if against is not None:
            variants[f"on@{against[1]}"] = (traced, against[0])

        def run(variant: str, n: int, out: Path):
            env, cwd = variants[variant]
            received = len(receiver.spans)
            config = ["--config", str(tenth)] if variant == "on-10%" else []
            m = run_measured(["--data", str(noisy), "--limit", str(n), "--model", "sim", "--base-url", sim.base_url,
                              "--embedding-base-url", sim.base_url, "--embedding-model", "sim-embed",
                              "--concurrency", "64", "--out", str(out), "--quiet", *config], env=env, cwd=cwd)
            if m.returncode not in (0, 3):
                raise RuntimeError(m.stderr[-3000:])
            return m, len(receiver.spans) - received

        for repeat in range(args.repeats):
            # Interleaved, the order turning each repeat: load from the other helpers hits every variant alike.
            order = list(variants)[repeat % len(variants):] + list(variants)[:repeat % len(variants)]
            for variant in order:
                small, _ = run(variant, args.small, work / f"{variant}-small-{repeat}")
                large, spans = run(variant, args.large, work / f"{variant}-large-{repeat}")
                slope = (large.cpu_s - small.cpu_s) / (args.large - args.small)
                slopes[variant].append(slope)
                if variant == "on":
                    spans_per_sample.append(spans / args.large)
                traced_variant = variant.startswith("on")
                rows.append({"repeat": repeat, "variant": variant, "small_cpu_s": round(small.cpu_s, 2),
                             "large_cpu_s": round(large.cpu_s, 2), "large_wall_s": round(large.wall_s, 2),
                             "spans_large": spans if traced_variant else 0,
                             "cpu_ms_per_sample": round(slope * 1000, 3)})
            payload = _payload(args, rows, slopes, spans_per_sample, before, against, repeat + 1)
            write_results("framework_cost_tracing", payload, tracing_markdown(payload))


def _payload(args: argparse.Namespace, rows: list[dict], slopes: dict[str, list[float]], spans_per_sample: list[float],
             before: tuple[Path, str] | None, against: tuple[Path, str] | None, repeats: int) -> dict:
    def median_of(values: list[float]) -> float | None:
        return round(statistics.median(values), 3) if values else None

    median = {k: statistics.median(v) * 1000 for k, v in slopes.items() if v}
    # Per repeat, the same repeat's variants against each other: the fairest pairing on a loaded machine.
    on_minus_off = [(on - off) * 1000 for on, off in zip(slopes["on"], slopes["off"])]
    off_minus_before = [(off - b) * 1000 for off, b in zip(slopes["off"], slopes["before"])]
    tenth_minus_off = [(t - off) * 1000 for t, off in zip(slopes["on-10%"], slopes["off"])]
    against_minus_off = ([(a - off) * 1000 for a, off in zip(slopes[f"on@{against[1]}"], slopes["off"])]
                         if against else [])
    payload = {"small": args.small, "large": args.large, "repeats": repeats, "runs": rows,
               "cpu_ms_per_sample_median": {k: round(v, 3) for k, v in median.items()},
               "on_minus_off_ms": [round(d, 3) for d in on_minus_off],
               "on_minus_off_ms_median": round(statistics.median(on_minus_off), 3),
               "off_minus_before_ms": [round(d, 3) for d in off_minus_before],
               "off_minus_before_ms_median": round(statistics.median(off_minus_before), 3) if off_minus_before else None,
               "on_10pct_minus_off_ms": [round(d, 3) for d in tenth_minus_off],
               "on_10pct_minus_off_ms_median": median_of(tenth_minus_off),
               "before_rev": before[1] if before else None,
               "against_rev": against[1] if against else None,
               "against_on_minus_off_ms": [round(d, 3) for d in against_minus_off],
               "against_on_minus_off_ms_median": median_of(against_minus_off),
               "spans_per_sample": round(statistics.median(spans_per_sample), 2),
               "goal_on_minus_off_ms": 0.5}
    return payload


def tracing_markdown(p: dict) -> str:
    """The report of `tracing_cost`, from its JSON alone."""
    def each(values: list[float]) -> str:
        return ", ".join(f"{d:+.2f}" for d in values)

    md = ["# Framework cost of OpenTelemetry tracing", "",
          f"`python -m benchmarks.framework_cost --tracing`: synthetic rows (4 options, 30 % wrong labels) against "
          f"`robustft.sim` in its own process, answering at once, `--concurrency 64`. CPU (user + system) of the "
          f"robustft process; per sample = slope between {p['small']} and {p['large']} rows. Variants, interleaved "
          f"in each repeat: **on** (OTEL_EXPORTER_OTLP_ENDPOINT set; spans sent over OTLP/HTTP to a receiver in the "
          f"benchmark process that decodes them)"
          + (", **on-10%** (the same with `run.otel_sample: 0.1`)" if p.get("on_10pct_minus_off_ms") else "")
          + ", **off** (no OTEL_ variable)"
          + (f", **on@{p['against_rev']}** (robustft at {p['against_rev']}, from `git archive`, tracing on: the code "
             f"before a change to tracing, measured in the same run)" if p.get("against_rev") else "")
          + (f", **before** (robustft at {p['before_rev']}, the last commit without tracing: every change merged "
             f"after it counts in this difference too, so it isolates tracing only while nothing else has been "
             f"merged since)" if p.get("before_rev") else "")
          + ". 2 cores shared with other work: the machine was loaded by other jobs while this ran, so single "
          "slopes vary by several tenths of a ms.", "",
          "| repeat | variant | CPU small | CPU large | wall large | spans (large) | CPU per sample |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r['repeat']} | {r['variant']} | {r['small_cpu_s']} s | {r['large_cpu_s']} s | {r['large_wall_s']} s | "
           f"{r['spans_large'] or ''} | {r['cpu_ms_per_sample']} ms |" for r in p["runs"]]
    md += ["", "Median CPU per sample: " + ", ".join(f"{k} {v:.2f} ms" for k, v in p["cpu_ms_per_sample_median"].items())
           + ".", "",
           f"**Tracing on adds {p['on_minus_off_ms_median']:+.2f} ms of CPU per sample** (median of the per-repeat "
           f"differences {each(p['on_minus_off_ms'])} ms; {p['spans_per_sample']} spans per sample). Goal: at most "
           "+0.5 ms."]
    if p.get("on_10pct_minus_off_ms"):
        md += ["", f"**With `run.otel_sample: 0.1`** (a tenth of the samples traced): "
               f"{p['on_10pct_minus_off_ms_median']:+.2f} ms per sample (per repeat {each(p['on_10pct_minus_off_ms'])} ms)."]
    if p.get("against_rev"):
        md += ["", f"**The same with robustft at {p['against_rev']}** (variant on@{p['against_rev']}, tracing on): "
                   f"{p['against_on_minus_off_ms_median']:+.2f} ms per sample (per repeat "
                   f"{each(p['against_on_minus_off_ms'])} ms), against this checkout's {p['on_minus_off_ms_median']:+.2f} ms."]
    if p.get("off_minus_before_ms"):
        md += ["", f"**Tracing off vs {p['before_rev']}: {p['off_minus_before_ms_median']:+.2f} ms per sample** (per "
                   f"repeat {each(p['off_minus_before_ms'])} ms)."]
    return "\n".join(md)



if __name__ == "__main__":
    main()

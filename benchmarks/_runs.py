"""Shared by the runner benchmarks: synthetic data, the simulated server in its own process, and
`robustft denoise` run as a child process whose CPU time, peak memory and wall time are measured.

The server runs in a separate process so that its work is not counted as robustft's; the run is a
separate process so that its start-up is counted, as a user pays it.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from robustft.answers import letters

ROOT = Path(__file__).resolve().parents[1]
# The shared benchmark data with gold labels: ../shared/data beside the checkout, or $ROBUSTFT_SHARED_DATA.
DATA = Path(os.environ.get("ROBUSTFT_SHARED_DATA") or ROOT.parent / "shared" / "data")
RESULTS = Path(__file__).parent / "results"

_WORDS = ("atom cell energy force gravity heat light magnet mass motion orbit planet pressure river rock "
          "seed soil sound star sun tide volcano water wave weather wind cloud crystal density electron "
          "fossil glacier habitat insect lens mineral molecule nerve organ photon plant pollen prism "
          "quartz rain salt shadow spring storm tree valley vapor virus").split()


def synthetic(folder: Path, rows: int, *, noise: float = 0.3, seed: int = 0) -> tuple[Path, Path]:
    """`rows` multiple-choice questions with 4 options: a gold file for the server and a noisy one
    (`noise` of the labels replaced by another option). Questions are unique and look alike
    enough that retrieval has neighbours to find."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    gold, noisy = folder / f"gold-{rows}.csv", folder / f"noisy-{rows}.csv"
    with gold.open("w", newline="") as g, noisy.open("w", newline="") as n:
        gw, nw = csv.writer(g), csv.writer(n)
        for w in (gw, nw):
            w.writerow(["id", "question", "options", "answer"])
        for i in range(rows):
            topic = rng.sample(_WORDS, 4)
            question = (f"Question {i}: how does the {topic[0]} change the {topic[1]} of a {topic[2]} "
                        f"near the {topic[3]}?")
            options = json.dumps([f"it {verb} the {rng.choice(_WORDS)}" for verb in ("raises", "lowers", "keeps", "splits")])
            answer = rng.choice(letters(4))
            label = answer if rng.random() >= noise else rng.choice([x for x in letters(4) if x != answer])
            gw.writerow([f"s{i}", question, options, answer])
            nw.writerow([f"s{i}", question, options, label])
    return gold, noisy


class SimProcess:
    """`python -m robustft.sim` in its own process; `requests()` reads its counters over HTTP."""

    def __init__(self, gold: Path, *, latency_ms: float = 0, accuracy: float = 0.8, seed: int = 0,
                 extra: list[str] | None = None):
        cmd = [sys.executable, "-m", "robustft.sim", "--gold", str(gold), "--latency-ms", str(latency_ms),
               "--accuracy", str(accuracy), "--seed", str(seed), *(extra or [])]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            self.proc.kill()
            raise RuntimeError(f"the simulated server did not start: {self.base_url!r}")

    def stats(self) -> dict:
        with urllib.request.urlopen(self.base_url.removesuffix("/v1") + "/health", timeout=30) as r:
            return json.loads(r.read())

    def requests(self, path: str = "/v1/chat/completions") -> int:
        return int(self.stats().get("paths", {}).get(path, 0))

    def close(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def __enter__(self) -> "SimProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Measured:
    returncode: int
    wall_s: float
    cpu_s: float          # user + system of the robustft process
    max_rss_mb: float
    stderr: str
    stdout: str
    started_at: float = 0.0  # Unix time the process was started (compare with a server's request times)


def run_measured(args: list[str], *, timeout: float = 3600, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> Measured:
    """`robustft denoise ARGS` as a child process, with its own CPU time and peak memory (os.wait4);
    `env`: its whole environment (default: this process's); `cwd`: where it runs (its robustft)."""
    started = time.perf_counter()
    started_at = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "robustft", "denoise", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=cwd)
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}

    def drain(stream, key):
        for line in iter(stream.readline, b""):
            chunks[key].append(line)

    threads = [threading.Thread(target=drain, args=(proc.stdout, "out")),
               threading.Thread(target=drain, args=(proc.stderr, "err"))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.05)
    for t in threads:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(proc.returncode, time.perf_counter() - started, usage.ru_utime + usage.ru_stime,
                    usage.ru_maxrss / 1024, b"".join(chunks["err"]).decode(errors="replace"),
                    b"".join(chunks["out"]).decode(errors="replace"), started_at)


def disk_usage(folder: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            top = path.relative_to(folder).parts[0]
            sizes[top] = sizes.get(top, 0) + path.stat().st_size
    return sizes


def write_results(name: str, payload: dict, markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    (RESULTS / f"{name}.md").write_text(markdown.rstrip() + "\n", encoding="utf-8")
    print(markdown)

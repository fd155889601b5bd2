"""The CPU that OpenTelemetry tracing itself costs per sample, without the rest of a run around it.

`framework_cost --tracing` measures tracing as a user pays it, but as the difference between two
whole runs (about 2 ms of CPU a sample each): on a loaded machine their noise is larger than the
change to tracing being measured. This drives robustft's tracing hooks alone, as a run calls
them, for synthetic samples shaped like the benchmark's (8.5 spans a sample: the sample, its
base, reasoning and checker nodes, a model call under each expert; half the samples a second
pass with context and reviewer nodes and their calls; an embedding batch every 64 samples), with
the spans exported over OTLP/HTTP to `tests/otlp_receiver.py` in another process. The CPU time of
the whole process (the exporter's thread included) from the first span to the last one sent,
less the same loop with tracing off, divided by the samples. Each variant runs in its own
process, interleaved, several times:

    python -m benchmarks.tracing_path [--samples 4000] [--repeats 5] [--against REV]

`--against REV` (repeatable) adds robustft at git revision REV (`git archive`), to compare a change
to tracing in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ._runs import ROOT, write_results
from .framework_cost import at_revision

# Runs in the child process: `python -c DRIVER ROOT SAMPLES on|off`.
DRIVER = r'''
import asyncio, os, sys, time
root, samples, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sys.path.insert(0, root)
import robustft
assert robustft.__file__.startswith(root), robustft.__file__
from robustft import tracing
from robustft.config import load_config

config = load_config(None, {"model.name": "sim", "model.base_url": "http://127.0.0.1:9/v1",
                            "run.otel": mode == "on"})
model = config.model
url = model.base_urls[0]
REPLY = {"choices": [{"finish_reason": "stop", "message": {"content": "The answer is B"}}]}
MESSAGES = [{"role": "user", "content": "Question: which option? A) one B) two"}]


class Gen:
    prompt_tokens, completion_tokens, text = 180, 24, "The answer is B"


if mode == "on":
    from robustft.tracing.otel import OtelTracing
    otel = OtelTracing(config)

    async def expert(state):
        with otel.model_call(model, MESSAGES) as span:
            await asyncio.sleep(0)
            tracing.reply(url, REPLY)
            otel.paid(span, Gen)
        return {"nodes": {}}

    async def checker(state):
        return {"nodes": {}}

    async def embed():
        with otel.embeddings("sim-embed", 64):
            await asyncio.sleep(0)

    nodes = {n: otel.node(n, expert if n != "checker" else checker)
             for n in ("base", "reasoning", "checker", "context", "reviewer")}
    route = otel.route(lambda state: "__end__", "__end__")
else:
    async def expert(state):
        await asyncio.sleep(0)
        return {"nodes": {}}

    async def checker(state):
        return {"nodes": {}}

    async def embed():
        await asyncio.sleep(0)

    nodes = {n: (expert if n != "checker" else checker) for n in ("base", "reasoning", "checker", "context", "reviewer")}
    route = lambda state: "__end__"


async def sample(i):
    state = {"id": f"s{i}"}
    for n in ("base", "reasoning", "checker"):
        await nodes[n](state)
    route(state)
    if i % 2:  # flagged noisy: the second pass, relabeling
        state = {"id": f"s{i}", "examples": []}
        for n in ("context", "reviewer"):
            await nodes[n](state)
        route(state)


async def main():
    for start in range(0, samples, 64):
        await embed()
        await asyncio.gather(*(sample(i) for i in range(start, min(samples, start + 64))))


begin = time.process_time()
if mode == "on":
    with otel.run_span({"robustft.samples": samples}):
        asyncio.run(main())
    otel.close()  # everything exported
else:
    asyncio.run(main())
print(time.process_time() - begin)
'''


def measure(root: Path, samples: int, mode: str, endpoint: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    env.pop("PYTHONPATH", None)
    out = subprocess.run([sys.executable, "-c", DRIVER, str(root), str(samples), mode], env=env, cwd=root,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--against", metavar="REV", action="append", default=[], help="(repeatable)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    from otlp_receiver import OtlpReceiver

    work = Path(tempfile.mkdtemp(prefix="robustft-bench-"))
    try:
        variants = {"on": ROOT}
        revisions = []
        for i, rev in enumerate(args.against):
            found = at_revision(work / f"against-{i}", rev)
            if found is None:
                raise SystemExit(f"--against {rev}: not a git revision of this checkout")
            variants[f"on@{found[1]}"] = found[0]
            revisions.append(found[1])
        per_sample: dict[str, list[float]] = {k: [] for k in variants}
        rows = []
        # The receiver in its own process: its decoding is not counted, nor does it share this one's GIL.
        receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], cwd=ROOT / "tests", stdout=subprocess.PIPE,
                                    text=True)
        try:
            endpoint = receiver.stdout.readline().strip()
            for repeat in range(args.repeats):
                off = measure(ROOT, args.samples, "off", endpoint)
                order = list(variants)[repeat % len(variants):] + list(variants)[:repeat % len(variants)]
                for name in order:
                    cpu = measure(variants[name], args.samples, "on", endpoint)
                    ms = (cpu - off) / args.samples * 1000
                    per_sample[name].append(ms)
                    rows.append({"repeat": repeat, "variant": name, "cpu_s": round(cpu, 3), "off_cpu_s": round(off, 3),
                                 "ms_per_sample": round(ms, 4)})
        finally:
            receiver.terminate()
            receiver.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {k: round(statistics.median(v), 4) for k, v in per_sample.items()}
    payload = {"samples": args.samples, "repeats": args.repeats, "spans_per_sample": 8.5 + 1 / 64, "runs": rows,
               "ms_per_sample_median": medians, "against_revs": revisions}
    md = ["# CPU of the tracing path alone", "",
          f"`python -m benchmarks.tracing_path`: robustft's tracing hooks driven as a run calls them, for "
          f"{args.samples} synthetic samples of 8.5 spans each, exported over OTLP/HTTP to a receiver in another "
          "process; process CPU (the exporter's thread included) less the same loop with tracing off, per sample. "
          "Each variant in its own process, interleaved"
          + "".join(f"; **on@{rev}** is robustft at {rev} (`git archive`)" for rev in revisions)
          + ". 2 cores shared with other work: the machine was loaded by other jobs while this ran.", "",
          "| repeat | variant | CPU on | CPU off | tracing CPU per sample |", "|---|---|---|---|---|"]
    md += [f"| {r['repeat']} | {r['variant']} | {r['cpu_s']} s | {r['off_cpu_s']} s | {r['ms_per_sample']:.3f} ms |"
           for r in rows]
    md += ["", "Median tracing CPU per sample: " + ", ".join(f"**{k} {v:.3f} ms**" for k, v in medians.items()) + "."]
    write_results("tracing_path", payload, "\n".join(md))
    print(json.dumps(medians))


RECEIVER = r'''
import time
from otlp_receiver import OtlpReceiver
with OtlpReceiver() as r:
    print(r.endpoint, flush=True)
    while True:  # what it decoded is not needed: kept, it would grow by the GB
        time.sleep(1)
        r.spans.clear()
        r.bodies.clear()
'''


if __name__ == "__main__":
    main()

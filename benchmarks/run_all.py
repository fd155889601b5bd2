"""`make bench`: every benchmark, one after the other, each writing benchmarks/results/<name>.json and .md.

    python -m benchmarks.run_all [--only NAME ...] [--skip NAME ...]

- framework_cost: robustft's own CPU per sample around an instant server, and its start-up.
- saturation: full ARC against a server answering in 50 ms, 64 calls in flight against one at a time,
  and with default settings and no embedding server (the local MiniLM), before and after.
- local_embedder: the local MiniLM's CPU per text on each engine and precision (torch, ONNX Runtime
  plain and fused, group sizes, fp16, int8 in several scopes, bf16, OpenVINO when importable), the
  fp32 floor, its start-up, and whether each retrieves the same examples as torch on ARC and FPB.
- scale: 20,000 and 100,000 synthetic rows: wall time, peak memory, disk per sample.
- resume_cost: the calls sent again after kill -9 and Ctrl-C, and the resumed outputs.
- fault_injection: a server failing a fifth of its calls in every way: failed samples, label accuracy.
- denoise_quality: denoising quality and speed with simulated experts (see its docstring).
- train_eval: one tiny model fine-tuned on the noisy-50, robustft and gold labels of FPB, then
  test accuracy.
- sim_server: CPU per request and requests per second of the simulated expert server.
- client_overhead: CPU per model call of robustft's HTTP client beside langchain's ChatOpenAI and
  the openai SDK.
- selection_scores: how well each selection score (mean_nll, answer_nll, entropy) separates right
  relabels from wrong ones (AUROC), with simulated experts.
- local_batching: a local transformers model at 32 calls in flight against one at a time (whole
  denoise runs on FPB), the batches that formed, tokens per second alone and batched.
- open_similarity: cosine similarity of agreeing and disagreeing open-ended responses (MiniLM), the
  measurement behind the default `denoise.open_similarity`.
- open_quality: open-ended responses at 30/50/70 % noise with simulated experts: detection precision
  and recall, the fine-tuning set's share of right responses, selection score vs. length, and a chat
  file cleaned and exported through the command line.
- open_trust: trust scores of open-ended responses with four kinds of noise at 30/50/70 % (three
  calibration sets, two more development sets and six sets used for no choice): AUROC and precision at 10/20 % of the
  score, of each signal alone and of self-reflection at equal calls, per kind, with calls and tokens; the fine-tuning
  set of the trust, paper and judge checkers.
- rate_limit: a server enforcing requests and tokens per minute: the share of calls answered 429
  and of the allowed rate used, paced by configured limits or the server's headers, against the
  client that did not pace (and the run the issue measured).
- batch_api: the same ARC run online and through the simulated Batch API (also with failing and
  expiring batches): batches, cost, identical outputs.
- estimate: the dry run's estimate of calls, tokens and cost (without and with a pilot) against
  the real run.
- answer_reading: reading answers out of hostile 1 MB replies, today's readers against the quadratic
  marker pattern they replaced (issue 16).
- tracing_path: the CPU per sample of OpenTelemetry tracing alone (robustft's tracing hooks as a run
  calls them, spans exported over OTLP/HTTP to a receiver in another process).
  (`python -m benchmarks.framework_cost --tracing` measures it in whole runs: slower and noisier.)
- ray_overhead: the same ARC run on the local runner and on a local Ray instance: wall time and CPU
  per sample side by side, and whether the outputs are identical (needs `robustft[ray]`).

Everything runs offline on the CPU. The experts are simulated by `robustft.sim`, the local model is
`tests/tiny_model.py`'s tiny random Llama.
"""

from __future__ import annotations

import argparse
import importlib
import time

BENCHMARKS = ("framework_cost", "saturation", "scale", "resume_cost", "fault_injection", "denoise_quality",
              "train_eval", "local_batching", "open_similarity", "open_quality", "open_trust", "sim_server",
              "client_overhead", "selection_scores", "ray_overhead", "rate_limit", "estimate", "batch_api",
              "answer_reading", "local_embedder", "tracing_path")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--skip", nargs="+", choices=BENCHMARKS, default=[], help="leave these out")
    args = parser.parse_args(argv)
    chosen = [name for name in (args.only or BENCHMARKS) if name not in args.skip]
    timings = {}
    for name in chosen:
        print(f"\n=== benchmarks.{name} ===", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"benchmarks.{name}").main([])
        timings[name] = time.perf_counter() - started
    print("\n" + "  ".join(f"{name}: {seconds:.0f} s" for name, seconds in timings.items()))


if __name__ == "__main__":
    main()

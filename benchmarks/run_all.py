"""`make bench`: every benchmark, one after the other, each writing benchmarks/results/<name>.json and .md.

    python -m benchmarks.run_all [--only NAME ...] [--skip NAME ...]

- denoise_quality: denoising quality and speed with simulated experts (see its docstring).
- train_eval: one tiny model fine-tuned on the noisy-50, robustft and gold labels of FPB, then
  test accuracy.
- sim_server: CPU per request and requests per second of the simulated expert server.
- client_overhead: CPU per model call of robustft's HTTP client beside langchain's ChatOpenAI and
  the openai SDK.
- selection_scores: how well each selection score (mean_nll, answer_nll, entropy) separates right
  relabels from wrong ones (AUROC), with simulated experts.
- open_similarity: cosine similarity of agreeing and disagreeing open-ended responses (MiniLM), the
  measurement behind the default `denoise.open_similarity`.
- open_quality: open-ended responses at 30/50/70 % noise with simulated experts: detection precision
  and recall, the fine-tuning set's share of right responses, selection score vs. length, and a chat
  file cleaned and exported through the command line.

Everything runs offline on the CPU. The experts are simulated by `robustft.sim`.
"""

from __future__ import annotations

import argparse
import importlib
import time

BENCHMARKS = ("denoise_quality", "train_eval", "sim_server", "client_overhead", "selection_scores", "open_similarity",
              "open_quality")


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

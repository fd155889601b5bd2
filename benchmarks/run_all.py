"""`make bench`: every benchmark, one after the other, each writing benchmarks/results/<name>.json and .md.

    python -m benchmarks.run_all [--only NAME ...] [--skip NAME ...]

- denoise_quality: denoising quality and speed with simulated experts (see its docstring).
- train_eval: one tiny model fine-tuned on the noisy-50, robustft and gold labels of FPB, then
  test accuracy.
- local_batching: a local transformers model at 32 calls in flight against one at a time (whole
  denoise runs on FPB), the batches that formed, tokens per second alone and batched.

Everything runs offline on the CPU. The experts are simulated by `robustft.sim`, the local model is
`robustft.testing`'s tiny random Llama.
"""

from __future__ import annotations

import argparse
import importlib
import time

BENCHMARKS = ("denoise_quality", "train_eval", "local_batching")


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

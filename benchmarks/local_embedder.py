"""The local embedding model (all-MiniLM-L6-v2) on the CPU: each way of running it, its CPU per
text, and whether its vectors retrieve the same examples as sentence-transformers on torch.

    python -m benchmarks.local_embedder [--limit N]

On the ARC noisy-30 questions (../shared/data), sent as the run sends them: in calls of 64 in the
data order. For each path: CPU and wall time per text (the whole process's CPU, pool threads
included), the smallest cosine similarity to the reference vectors (torch, fp32), and the share of
mislabelled questions whose k=3 retrieved clean examples (the runner's exact index) are the
reference's, in the same order. Paths: torch as robustft ran it before (each call of 64 padded to
its longest text, torch's own thread count); torch with texts sorted by length in groups of 8 on
1 thread; ONNX Runtime on the cached export (what robustft runs now), 1 and 2 threads; and, to
show why they are not used, int8 weights (dynamic quantisation, per channel) and bfloat16
(torch autocast). Then the start-up: a fresh interpreter importing and loading each engine.
One session of a 2-core machine shared with other work: compare within the table.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._runs import DATA, ROOT, write_results

CALL = 64


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def measure(encode, texts: list[str]) -> tuple[np.ndarray, float, float]:
    encode(texts[:CALL])  # warm: first-call allocations are start-up, reported apart
    wall, used = time.perf_counter(), cpu()
    parts = [encode(texts[s:s + CALL]) for s in range(0, len(texts), CALL)]
    wall, used = time.perf_counter() - wall, cpu() - used
    vectors = np.concatenate(parts).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, 1000 * used / len(texts), 1000 * wall / len(texts)


def retrieved(vectors: np.ndarray, noisy: np.ndarray, k: int = 3) -> list[list[str]]:
    from robustft.retrieval import ExactIndex

    with ExactIndex() as index:
        index.add([str(i) for i in np.flatnonzero(~noisy)], vectors[~noisy])
        return [[sid for sid, _ in hits] for hits in index.query(vectors[noisy], k)]


def start_up(code: str) -> dict:
    """Wall and CPU seconds of a fresh interpreter running `code` (imports and model load)."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return {"wall_s": round(time.perf_counter() - started, 2), "cpu_s": round(float(proc.stdout.split()[-1]), 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    import torch
    from sentence_transformers import SentenceTransformer

    from robustft.retrieval.embedders import resolve_embedding_model
    from robustft.retrieval.onnx_encoder import OnnxEncoder
    from robustft.retrieval.onnx_export import onnx_model
    from robustft.retrieval.sentence_layout import read_layout

    rows_noisy = list(csv.DictReader((DATA / "arc" / "noisy30.csv").open(encoding="utf-8")))[:args.limit]
    rows_gold = list(csv.DictReader((DATA / "arc" / "labeled.csv").open(encoding="utf-8")))[:args.limit]
    texts = [r["question"] for r in rows_noisy]
    noisy = np.array([n["answer"] != g["answer"] for n, g in zip(rows_noisy, rows_gold)])
    layout = read_layout(resolve_embedding_model("all-MiniLM-L6-v2"))
    export = onnx_model(layout)
    st = SentenceTransformer(str(layout.folder), device="cpu")
    default_threads = torch.get_num_threads()

    def torch_encode(group: int, threads: int, bf16: bool = False):
        def encode(batch):
            torch.set_num_threads(threads)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = st.encode(batch, batch_size=group, convert_to_numpy=False, show_progress_bar=False)
            return torch.stack(out).float().numpy()
        return encode

    work = Path(tempfile.mkdtemp(prefix="robustft-embed-bench-"))
    int8 = work / "int8.onnx"
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = export if isinstance(export, Path) else work / "fp32.onnx"
    if not isinstance(export, Path):
        source.write_bytes(export)
    quantize_dynamic(str(source), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"])
    paths = [
        ("torch fp32, as before: calls of 64 padded to the longest, torch's threads", torch_encode(CALL, default_threads)),
        ("torch fp32, sorted groups of 8, 1 thread", torch_encode(8, 1)),
        ("ONNX Runtime fp32, sorted groups of 8, 1 thread", OnnxEncoder(export, layout, 1).encode),
        ("ONNX Runtime fp32, sorted groups of 8, 2 threads (the default on 2 cores)", OnnxEncoder(export, layout, 2).encode),
        ("ONNX Runtime int8 weights (per channel), groups of 8, 1 thread (not used)", OnnxEncoder(int8, layout, 1).encode),
        ("torch bfloat16 autocast, groups of 8, 1 thread (not used)", torch_encode(8, 1, bf16=True)),
    ]
    reference = measure(torch_encode(8, 1), texts)[0]
    expected = retrieved(reference, noisy)
    rows = []
    for name, encode in paths:
        vectors, cpu_ms, wall_ms = measure(encode, texts)
        same = np.mean([a == b for a, b in zip(retrieved(vectors, noisy), expected)])
        rows.append({"path": name, "cpu_ms_per_text": round(cpu_ms, 2), "wall_ms_per_text": round(wall_ms, 2),
                     "min_cosine": round(float((vectors * reference).sum(axis=1).min()), 6),
                     "same_top3": round(float(same), 4)})
        print(rows[-1], flush=True)
    cpu_line = "import os; t = os.times(); print(t.user + t.system)"
    starts = {
        "ONNX Runtime, cached export": start_up(
            "from robustft.retrieval import LocalEmbedder; e = LocalEmbedder(); assert e.engine == 'onnx'; "
            f"e.embed_sync(['a question']); {cpu_line}"),
        "torch (sentence-transformers)": start_up(
            f"from sentence_transformers import SentenceTransformer; m = SentenceTransformer({str(layout.folder)!r}, "
            f"device='cpu'); m.encode(['a question']); {cpu_line}"),
        "ONNX Runtime, first run on the machine (export made)": start_up(
            f"import os; os.environ['ROBUSTFT_CACHE_DIR'] = {str(work / 'cache')!r}; "
            "from robustft.retrieval import LocalEmbedder; e = LocalEmbedder(); assert e.engine == 'onnx'; "
            f"e.embed_sync(['a question']); {cpu_line}"),
    }
    payload = {"texts": len(texts), "noisy_queries": int(noisy.sum()), "rows": rows, "start_up": starts,
               "mean_tokens": round(float(np.mean([len(t) for t in OnnxEncoder(export, layout, 1).token_ids(texts)])), 1)}
    md = ["# The local embedding model on the CPU (all-MiniLM-L6-v2)", "",
          f"{len(texts)} ARC noisy-30 questions ({payload['mean_tokens']} tokens on average) in calls of {CALL}, as a "
          f"run sends them; {payload['noisy_queries']} mislabelled ones retrieve k=3 examples among the rest. "
          "Reference: torch fp32. One session of a 2-core machine shared with other work (wall > CPU means "
          "waiting for a core): compare within the table.", "",
          "| path | CPU per text | wall per text | smallest cosine to torch | same 3 examples, same order |",
          "|---|---|---|---|---|"]
    md += [f"| {r['path']} | {r['cpu_ms_per_text']} ms | {r['wall_ms_per_text']} ms | {r['min_cosine']} | "
           f"{100 * r['same_top3']:.1f} % |" for r in rows]
    md += ["", "Start-up (a fresh interpreter: imports, model load, one text):", "",
           "| engine | wall | CPU |", "|---|---|---|"]
    md += [f"| {name} | {s['wall_s']} s | {s['cpu_s']} s |" for name, s in starts.items()]
    write_results("local_embedder", payload, "\n".join(md))


if __name__ == "__main__":
    main()

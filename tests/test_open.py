"""Open-ended responses (data.task: open): extraction, the task's own prompts, the checker by
meaning (real MiniLM embeddings), the embedding cache, and the reviewer's agreement rule."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from robustft.agents.checker import make_checker
from robustft.agents.reviewer import make_reviewer
from robustft.agents.runtime import AgentRuntime
from robustft.answers import answer_char_span, answers_match, extract_answer
from robustft.backends.base import Generation
from robustft.backends.registry import ModelPool
from robustft.backends.store import ResponseStore
from robustft.config import load_config
from robustft.data import Dataset, Sample
from robustft.entropy import answer_nll, mean_nll, response_score
from robustft.errors import ConfigError
from robustft.prompts import PROMPT_NAMES, PromptLibrary, prompt_values
from robustft.prompts.check import check_prompts
from robustft.retrieval import LocalEmbedder, QuestionVectors, TextVectors
from robustft.sim.embeddings import embed as hashed_embedding
from robustft.sim.gold import GoldItem
from robustft.sim.model import SimModel

# --- extraction ------------------------------------------------------------------------------

REPLY = """Let me think about what matters here. The answer: it depends on the tilt.
Answer: **Seasons come from the tilt of Earth's axis.**

- In June the northern half leans toward the Sun.
- In December it leans away.
"""


def test_an_open_response_is_every_line_after_the_last_answer_line():
    response = extract_answer(REPLY, "open")
    assert response == ("**Seasons come from the tilt of Earth's axis.**\n\n- In June the northern half leans toward "
                        "the Sun.\n- In December it leans away.")
    start, end = answer_char_span(REPLY, "open")
    assert REPLY[start:end] == response
    # "The answer: ..." inside the reasoning is not the marker line; the last "Answer:" line is.
    assert extract_answer("Draft.\nAnswer: first try\nThinking again.\n**Answer:** second try\nmore", "open") == \
        "second try\nmore"
    assert extract_answer("Reasoning only, no marker.", "open") is None
    assert extract_answer("Reasoning.\nAnswer:   \n", "open") is None  # a marker with nothing after it: re-ask
    # Short-answer tasks still read one line.
    assert extract_answer(REPLY, "text") == "Seasons come from the tilt of Earth's axis."


def test_answer_nll_of_an_open_response_scores_the_whole_response_and_nothing_before_it():
    reasoning, response = "Some reasoning here.\n", "Answer: line one\nline two and three"
    text = reasoning + response
    tokens = ["Some", " reasoning", " here.", "\nAnswer:", " line", " one", "\nline", " two", " and", " three"]
    assert "".join(tokens) == text
    logprobs = [-3.0, -3.0, -3.0, -0.5, -0.1, -0.1, -0.2, -0.2, -0.2, -0.2]
    # Every token of both lines of the response, not the first line only, and none of the reasoning.
    assert answer_nll(text, tokens, logprobs, "open") == pytest.approx(mean_nll([-0.1, -0.1, -0.2, -0.2, -0.2, -0.2]))
    assert answer_nll(text, tokens, logprobs, "text") == pytest.approx(0.1)  # short answers: the answer line
    gen = Generation(text=text, token_logprobs=logprobs, tokens=tokens)
    assert response_score("answer_nll", gen, "open") == pytest.approx(mean_nll(logprobs[4:]))
    assert response_score("mean_nll", gen, "open") == pytest.approx(mean_nll(logprobs))


def test_open_labels_match_only_as_the_same_text():
    assert answers_match("The tilt of the axis.", "the tilt of the axis", "open")
    assert not answers_match("The tilt of the axis", "Earth's axis is tilted", "open")
    assert not answers_match("tilt", "the tilt of the axis", "open")  # no containment, unlike short text


# --- prompts ---------------------------------------------------------------------------------


def test_each_prompt_of_the_open_task_is_its_own_template():
    library = PromptLibrary()
    values = prompt_values("Why does Earth have seasons?", None, "open")
    extra = {"reflection": {"previous": "Answer: tilt"}, "context": {"examples": []},
             "reviewer": {"first_source": "After step-by-step reasoning", "reasoning_answer": "r", "context_answer": "c"},
             "judge": {"label": "given text", "base_answer": "b", "reasoning_answer": "r"},
             "claim": {"claim": "one claim", "label": "given text", "base_answer": "b", "reasoning_answer": "r"},
             "recheck": {"label": "given text"}}
    for name in PROMPT_NAMES:
        assert library.source_of(name, "open").endswith(f"{name}_open.jinja")
        assert library.source_of(name, "multiple_choice").endswith(f"/{name}.jinja")
        text = library.render(name, **values, **extra.get(name, {}))
        assert "Why does Earth have seasons?" in text and "Answer:" in text
        assert text == library.render(f"{name}_open", **values, **extra.get(name, {}))
        assert "Options:" not in text and "letter" not in text
    assert library.question_prompt("Why?", None, "open").startswith("Respond to the following open-ended question.")
    assert library.question_prompt("Why?", None, "text").startswith("Answer the following short-answer question")


def test_open_templates_are_user_overridable_and_checked_before_any_call(tmp_path):
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "base_open.jinja").write_text("Q: {{ question }}\nEnd with a line 'Answer:' and your response.\n")
    library = PromptLibrary(folder)
    assert library.question_prompt("Why?", None, "open").startswith("Q: Why?")
    assert library.source_of("base", "open") == str(folder / "base_open.jinja")
    assert library.question_prompt("Why?", None, "text").startswith("Answer the following")  # other tasks keep theirs

    (folder / "context_open.jinja").write_text("{{ question }} {{ shots }}\nAnswer:\n")
    dataset = Dataset(samples=[Sample(id=str(i), question=f"Question {i}?", label=f"A long response number {i}.",
                                      options=None, row=i) for i in range(3)], task="open", path=tmp_path / "d.csv")
    config = load_config(None, {"denoise": {"prompts_dir": str(folder)}})
    with pytest.raises(ConfigError, match=r"context_open\.jinja: uses shots"):
        check_prompts(PromptLibrary(folder), config, dataset)
    (folder / "seasons_open.jinja").write_text("x")
    with pytest.raises(ConfigError, match=r"seasons_open\.jinja, which replace no prompt.*base_open\.jinja"):
        PromptLibrary(folder)


def test_the_open_judge_prompt_labels_the_judged_response_given():
    """The simulated judge reads the response after the label holding "given": with a judge that
    is always right, a wrong given response is called wrong and a right one right."""
    item = GoldItem(id="s", question="Why does ice float on water?", key="less dense",
                    answer="Ice floats because it is less dense than liquid water.", distractors=("denser",))
    sim = SimModel([item], accuracy=1.0)
    library = PromptLibrary()
    values = prompt_values(item.question, None, "open")
    for given, verdict in ((item.answer, "N"), ("Ice floats because it is denser than liquid water.", "Y")):
        prompt = library.render("judge", **values, label=given, base_answer=item.answer, reasoning_answer=item.answer)
        reply = sim.complete({"model": "m", "messages": [{"role": "user", "content": prompt}]})
        assert reply.payload["choices"][0]["message"]["content"].strip() == f"Answer: {verdict}"


# --- the checker and reviewer, by meaning ----------------------------------------------------

GIVEN = ("Earth has seasons because its axis is tilted, so for part of the year each hemisphere leans toward the "
         "Sun and receives more direct sunlight.")
AGREEING = [
    "The seasons come from the tilt of Earth's axis: as the planet orbits, each half spends some months angled "
    "toward the Sun and gets stronger, more direct light.",
    "Because Earth's axis is tilted, each hemisphere leans toward the Sun for part of the year, and the more direct "
    "sunlight then makes it summer there.",
]
OTHER_QUESTION = ("Ice floats because it is less dense than liquid water: freezing locks the molecules into an open "
                  "crystal lattice.")
CHANGED_FACT = ("Earth has seasons because the Moon pulls on the atmosphere, so for part of the year the air is "
                "thinner and lets more heat in.")


@pytest.fixture(scope="module")
def minilm():
    embedder = LocalEmbedder()
    yield embedder
    embedder.close()


def open_runtime(embedder, **denoise) -> AgentRuntime:
    # the similarity rule alone: the trust score (its own tests: test_trust.py) would ask a judge model
    config = load_config(None, {"denoise": {"trust": False, **denoise}})
    return AgentRuntime(config=config, task="open", pool=ModelPool(), prompts=PromptLibrary(),
                        texts=TextVectors(embedder))


def check(rt: AgentRuntime, given: str, base: str | None, reasoning: str | None) -> dict:
    state = {"id": "s", "question": "Why does Earth have seasons?", "options": None, "label": given,
             "nodes": {"base": {"answer": base}, "reasoning": {"answer": reasoning}}}
    return asyncio.run(make_checker(rt)(state))


def test_the_checker_calls_paraphrases_clean_and_another_questions_response_noisy(minilm):
    rt = open_runtime(minilm)
    clean = check(rt, GIVEN, AGREEING[0], AGREEING[1])
    assert clean["decision"] == "clean", clean["decision_reason"]
    assert "base similarity 0." in clean["decision_reason"] and "(agrees at >= 0.65)" in clean["decision_reason"]
    # The given response answers another question, both experts wrote a right one ...
    noisy = check(rt, OTHER_QUESTION, AGREEING[0], AGREEING[1])
    assert noisy["decision"] == "noisy" and "not all agree" in noisy["decision_reason"]
    # ... or the given response is right and one expert answered another question: the paper's rule
    # (both agree) calls it noisy, majority (half agree) clean.
    assert check(rt, GIVEN, AGREEING[0], OTHER_QUESTION)["decision"] == "noisy"
    assert check(open_runtime(minilm, checker="majority"), GIVEN, AGREEING[0], OTHER_QUESTION)["decision"] == "clean"
    assert check(rt, GIVEN, AGREEING[0], None)["decision"] == "noisy"  # no response agrees with nothing


def test_a_changed_key_fact_is_less_alike_than_a_paraphrase_and_the_threshold_decides(minilm):
    """A response with its key fact changed keeps much of the wording: it lies below the paraphrases
    but above another question's response. The default (chosen so that people's paraphrases agree)
    lets it pass; a stricter `open_similarity` catches it, and so does `checker: judge`."""
    rt = open_runtime(minilm)
    paraphrases = [asyncio.run(rt.similarity(GIVEN, a)) for a in AGREEING]
    changed = asyncio.run(rt.similarity(GIVEN, CHANGED_FACT))
    other = asyncio.run(rt.similarity(GIVEN, OTHER_QUESTION))
    assert other < 0.3 < 0.65 < changed < min(paraphrases) < 1.0
    strict = open_runtime(minilm, open_similarity=round((changed + min(paraphrases)) / 2, 3))
    assert check(strict, CHANGED_FACT, AGREEING[0], AGREEING[1])["decision"] == "noisy"
    assert check(strict, GIVEN, AGREEING[0], AGREEING[1])["decision"] == "clean"
    assert check(rt, CHANGED_FACT, AGREEING[0], AGREEING[1])["decision"] == "clean"


def test_the_reviewer_is_skipped_when_the_two_responses_agree_by_meaning(minilm):
    rt = open_runtime(minilm)
    state = {"id": "s", "question": "Why does Earth have seasons?", "options": None, "label": "x",
             "nodes": {"reasoning": {"answer": AGREEING[0]}, "context": {"answer": AGREEING[1], "score": 0.3}}}
    update = asyncio.run(make_reviewer(rt)(state))
    assert update["proposed_label"] == AGREEING[1] and update["score"] == 0.3
    assert update["nodes"]["reviewer"]["skipped"].startswith("the reasoning and context responses agree (similarity 0.")


def test_a_runtime_without_embeddings_says_how_to_give_it_some():
    rt = AgentRuntime(config=load_config(None, {}), task="open", pool=ModelPool(), prompts=PromptLibrary())
    with pytest.raises(ConfigError, match="TextVectors"):
        check(rt, GIVEN, AGREEING[0], AGREEING[1])


# --- the embedding cache ---------------------------------------------------------------------


class CountingEmbedder:
    """The simulator's feature-hashing embeddings, counting the texts and calls it gets."""

    identity = "test:hashed"

    def __init__(self):
        self.calls: list[list[str]] = []

    async def embed(self, texts):
        self.calls.append(list(texts))
        vectors = np.array([hashed_embedding(t) for t in texts], dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_text_vectors_are_batched_across_samples_and_stored_under_the_question_keys(tmp_path):
    texts = [f"response number {i} about the tilt of the axis" for i in range(10)]

    async def compare(vectors: TextVectors) -> list[float]:
        return await asyncio.gather(*(vectors.similarity(texts[0], t) for t in texts))

    store = ResponseStore(tmp_path / "responses.sqlite")
    first = CountingEmbedder()
    vectors = TextVectors(first, store)
    sims = asyncio.run(compare(vectors))
    assert len(first.calls) == 1 and sorted(first.calls[0]) == sorted(texts)  # one batch, each text once
    assert sims[0] == pytest.approx(1.0, abs=1e-3) and all(s < 0.999 for s in sims[1:])

    again = CountingEmbedder()
    resumed = TextVectors(again, store)
    assert asyncio.run(compare(resumed)) == sims  # the same float16 vectors: the same decisions
    assert again.calls == [] and resumed.embedded == 0

    async def questions():
        qv = QuestionVectors(again, store)
        qv.start(texts[:3])
        await qv.matrix()
        return qv

    assert asyncio.run(questions()).embedded == 0  # QuestionVectors finds them under the same keys
    store.close()


def test_an_embedding_failure_fails_the_waiting_callers_not_the_loop():
    class Broken:
        identity = "test:broken"

        async def embed(self, texts):
            raise RuntimeError("embedding server down")

    async def go():
        vectors = TextVectors(Broken())
        results = await asyncio.gather(vectors.similarity("a", "b"), vectors.similarity("a", "c"),
                                       return_exceptions=True)
        return results

    results = asyncio.run(go())
    assert all(isinstance(r, RuntimeError) and "server down" in str(r) for r in results)

"""The graph on scripted fake models: routing, the barrier, selection, failures, resume."""

from __future__ import annotations

import json

import pytest

from robustft.backends.registry import ModelPool
from robustft.agents.runtime import AgentRuntime
from robustft.graph.build import build_graph
from robustft.run.runner import denoise
from robustft.prompts import PromptLibrary

from fakes import QUESTIONS, answering, config_for, fake_pool, make_dataset, prompt_text

GOLD = {sid: gold for sid, (_, _, gold) in QUESTIONS.items()}
NOISY = {"q1": "A", "q2": "A", "q5": "C", "q6": "A"}  # given labels that are wrong


def gold(sid):
    return GOLD[sid]


def run(tmp_path, replies, labels=NOISY, **denoise_cfg):
    config = config_for(tmp_path, **denoise_cfg)
    pool, fakes = fake_pool(config, replies)
    result = denoise(config, pool=pool, dataset=make_dataset(labels), progress=False, preflight=False)
    return result, fakes


def by_id(result):
    return {r["id"]: r for r in result.records}


PERFECT = {"base": answering(gold), "reasoning": answering(gold), "context": answering(gold),
           "reviewer": answering(gold)}


def test_clean_samples_end_after_the_checker(tmp_path):
    result, fakes = run(tmp_path, PERFECT)
    recs = by_id(result)
    assert recs["q0"]["status"] == "clean" and recs["q0"]["label"] == GOLD["q0"]
    assert set(recs["q0"]["nodes"]) == {"base", "reasoning"}
    assert "all equal the label" in recs["q0"]["decision_reason"]
    # Only the 4 noisy samples reach the context relabeler; the reviewer is not asked when the
    # reasoning and context answers agree (they all do here).
    assert len(fakes["context"].calls) == 4 and not fakes["reviewer"].calls
    assert len(fakes["base"].calls) == 12 and len(fakes["reasoning"].calls) == 12


def test_noisy_samples_are_relabeled_with_retrieved_clean_examples(tmp_path):
    result, fakes = run(tmp_path, PERFECT, review="always")
    rec = by_id(result)["q1"]
    assert rec["decision"] == "noisy" and rec["original_label"] == "A"
    assert rec["proposed_label"] == GOLD["q1"]
    examples = rec["nodes"]["context"]["examples"]
    assert len(examples) == 3
    clean_ids = {sid for sid in QUESTIONS if sid not in NOISY}
    assert {e["id"] for e in examples} <= clean_ids  # only clean samples are shown
    prompt = rec["nodes"]["context"]["prompt"]
    for e in examples:
        assert e["question"] in prompt and f"Answer: {e['answer']}" in prompt
    assert prompt.rfind(QUESTIONS["q1"][0]) > prompt.rfind(examples[-1]["question"])
    reviewer_prompt = rec["nodes"]["reviewer"]["prompt"]
    assert f"After step-by-step reasoning: {GOLD['q1']}" in reviewer_prompt
    assert f"After studying similar solved examples: {GOLD['q1']}" in reviewer_prompt


def test_selection_keeps_the_lowest_scoring_half_of_relabels(tmp_path):
    scores = {"q1": -0.05, "q2": -0.9, "q5": -0.2, "q6": -1.5}  # logprobs: q1 most certain
    replies = dict(PERFECT, context=answering(gold, logprob=lambda sid: scores.get(sid, -0.1)))
    result, _ = run(tmp_path, replies)
    recs = by_id(result)
    assert {sid for sid, r in recs.items() if r["status"] == "relabeled"} == {"q1", "q5"}
    assert {sid for sid, r in recs.items() if r["status"] == "dropped"} == {"q2", "q6"}
    assert recs["q1"]["score"] == pytest.approx(0.05)
    assert result.summary["selection"]["threshold"] == pytest.approx(0.2)
    assert recs["q6"]["label"] is None
    denoised = [json.loads(line) for line in (result.out_dir / "denoised.jsonl").read_text().splitlines()]
    assert len(denoised) == 8 + 2
    assert {d["source"] for d in denoised if d["id"] in ("q1", "q5")} == {"relabeled"}
    s = result.summary
    assert (s["total"], s["clean"], s["noisy"], s["relabeled"], s["dropped"], s["failed"]) == (12, 8, 4, 2, 2, 0)
    assert s["model_calls"] == {"base": 12, "reasoning": 12, "context": 4, "reviewer": 0, "total": 28}


def test_the_reviewer_decides_only_when_reasoning_and_context_disagree(tmp_path):
    def contrary(sid, messages):
        return f"Answer: {'D' if sid in ('q1', 'q2') and GOLD[sid] != 'D' else GOLD[sid]}"

    def reviewer(sid, messages):
        assert "After step-by-step reasoning: " in messages[0]["content"]
        return "Answer: C"

    result, fakes = run(tmp_path, dict(PERFECT, context=contrary, reviewer=reviewer), beta=1.0)
    recs = by_id(result)
    assert len(fakes["reviewer"].calls) == 2
    assert recs["q1"]["label"] == "C" and recs["q1"]["nodes"]["reviewer"]["attempts"] == 1
    assert recs["q5"]["label"] == GOLD["q5"] and "agree" in recs["q5"]["nodes"]["reviewer"]["skipped"]
    always, fakes = run(tmp_path / "always", dict(PERFECT, context=contrary, reviewer=reviewer), beta=1.0,
                        review="always")
    assert len(fakes["reviewer"].calls) == 4 and by_id(always)["q5"]["label"] == "C"


def test_a_sample_whose_model_keeps_failing_is_recorded_and_the_run_goes_on(tmp_path):
    def flaky_base(sid, messages):
        if sid == "q3":
            return ConnectionError("server went away")
        return answering(gold)(sid, messages)

    config = config_for(tmp_path)
    config.model.max_retries = 1
    pool, fakes = fake_pool(config, dict(PERFECT, base=flaky_base))
    result = denoise(config, pool=pool, dataset=make_dataset(NOISY), progress=False, preflight=False)
    rec = by_id(result)["q3"]
    assert rec["status"] == "failed" and "server went away" in rec["error"] and "2 attempts" in rec["error"]
    assert result.summary["failed"] == 1 and result.summary["clean"] == 7
    assert sum(1 for c in fakes["base"].calls if QUESTIONS["q3"][0] in c[0]["content"]) == 2


def test_unparsable_replies_are_re_asked_then_count_as_disagreement(tmp_path):
    def rambling(sid, messages):
        return "I am not sure." if sid == "q0" else answering(gold)(sid, messages)

    result, fakes = run(tmp_path, dict(PERFECT, base=rambling), parse_retries=2)
    rec = by_id(result)["q0"]
    assert rec["nodes"]["base"]["attempts"] == 3 and rec["nodes"]["base"]["answer"] is None
    assert "no usable 'Answer:' line" in rec["nodes"]["base"]["error"]
    assert rec["decision"] == "noisy"


def test_resume_makes_no_new_calls_and_writes_the_same_outputs(tmp_path):
    result, _ = run(tmp_path, PERFECT)
    first = (result.out_dir / "samples.jsonl").read_text()
    def forbidden(sid, messages):
        raise AssertionError("a finished sample was queried again")
    again, fakes = run(tmp_path, {role: forbidden for role in PERFECT})
    assert (again.out_dir / "samples.jsonl").read_text() == first
    assert again.summary["resumed_samples"] == 12
    assert all(not f.calls for f in fakes.values())


def test_failed_relabels_are_retried_from_the_barrier_without_new_detection_calls(tmp_path):
    down = dict(PERFECT, context=lambda sid, m: ConnectionError("context server down"))
    config = config_for(tmp_path)
    config.model.max_retries = 0
    pool, _ = fake_pool(config, down)
    first = denoise(config, pool=pool, dataset=make_dataset(NOISY), progress=False, preflight=False)
    assert first.summary["failed"] == 4
    pool, fakes = fake_pool(config, PERFECT)
    second = denoise(config, pool=pool, dataset=make_dataset(NOISY), progress=False, preflight=False)
    assert second.summary["failed"] == 0 and second.summary["relabeled"] == 2
    assert not fakes["base"].calls and not fakes["reasoning"].calls
    assert len(fakes["context"].calls) == 4


def test_a_changed_beta_reselects_without_calls(tmp_path):
    run(tmp_path, PERFECT)
    forbidden = {role: (lambda sid, m: AssertionError("no calls expected")) for role in PERFECT}
    result, _ = run(tmp_path, forbidden, beta=1.0)
    assert result.summary["relabeled"] == 4 and result.summary["dropped"] == 0


def test_a_changed_setting_reasks_only_the_requests_that_changed(tmp_path, caplog):
    run(tmp_path, PERFECT, review="always")
    # More examples change every context prompt (so the reviewer's too, whose inputs follow), but
    # no detection prompt: those are answered from the response store.
    with caplog.at_level("INFO", logger="robustft"):
        result, fakes = run(tmp_path, PERFECT, k=5, review="always")
    assert "method.k: 3 -> 5" in caplog.text
    assert not fakes["base"].calls and not fakes["reasoning"].calls
    assert len(fakes["context"].calls) == 4
    assert all(len(by_id(result)[sid]["nodes"]["context"]["examples"]) == 5 for sid in NOISY)
    assert result.summary["this_run"]["calls_from_store"] == 24 + 4  # detection, and the unchanged reviews


def test_reflection_rounds_add_calls_and_the_last_answer_wins(tmp_path):
    def changes_mind(sid, messages):
        text = messages[0]["content"]
        answer = GOLD[sid] if "Earlier attempt" in text else "D"
        return f"Reasoning.\nAnswer: {answer}"

    result, fakes = run(tmp_path, dict(PERFECT, reasoning=changes_mind), reflection_rounds=2)
    rec = by_id(result)["q0"]
    assert len(rec["nodes"]["reasoning"]["rounds"]) == 3
    assert rec["nodes"]["reasoning"]["answer"] == GOLD["q0"]
    assert rec["nodes"]["reasoning"]["attempts"] == 3
    assert len(fakes["reasoning"].calls) == 36
    assert "Earlier attempt:\nReasoning.\nAnswer: D" in prompt_text(fakes["reasoning"])[1]


def test_judge_checker_asks_the_judge(tmp_path):
    def judge(sid, messages):
        return "Answer: Y" if sid in NOISY else "Answer: N"

    result, fakes = run(tmp_path, dict(PERFECT, judge=judge), checker="judge")
    recs = by_id(result)
    assert {sid for sid, r in recs.items() if r["decision"] == "noisy"} == set(NOISY)
    assert len(fakes["judge"].calls) == 12
    assert "Given answer (may be wrong): A" in recs["q1"]["nodes"]["judge"]["prompt"]


def test_majority_checker_accepts_half_agreement(tmp_path):
    wrong_reasoning = answering(lambda sid: "D" if GOLD[sid] != "D" else "A")
    result, _ = run(tmp_path, dict(PERFECT, reasoning=wrong_reasoning), checker="majority")
    recs = by_id(result)
    assert recs["q0"]["decision"] == "clean"  # base agrees, reasoning does not: 1 of 2
    assert recs["q1"]["decision"] == "noisy"  # neither agrees with the wrong label


def _mermaid(tmp_path, **denoise_cfg):
    config = config_for(tmp_path, **denoise_cfg)
    pool, _ = fake_pool(config, {})
    rt = AgentRuntime(config=config, task="multiple_choice", pool=pool, prompts=PromptLibrary())
    graph = build_graph(rt).compile()
    return sorted(line.strip() for line in graph.get_graph().draw_mermaid().splitlines() if "-->" in line or ".->" in line)


FULL_GRAPH = ["__start__ -.-> base;", "__start__ -.-> context;",
              "base -.-> __end__;", "base -.-> reasoning;", "reasoning -.-> __end__;", "reasoning -.-> checker;",
              "checker -.-> __end__;", "context -.-> __end__;", "context -.-> reviewer;", "reviewer -.-> __end__;"]


# The drawing of every variant `ablate` can build, edge for edge: a change in the wiring of any of
# them shows here first. A batch enters at __start__ bound for base (detection) or context (relabel).
@pytest.mark.parametrize("ablation,edges", [
    (None, FULL_GRAPH),
    # no reasoning expert: the checker compares the base answer with the label alone
    ("reasoning", ["__start__ -.-> base;", "__start__ -.-> context;", "base -.-> __end__;", "base -.-> checker;",
                   "checker -.-> __end__;", "context -.-> __end__;", "context -.-> reviewer;",
                   "reviewer -.-> __end__;"]),
    # no reviewer: the context relabeler's answer is the relabel
    ("reviewer", ["__start__ -.-> base;", "__start__ -.-> context;", "base -.-> __end__;", "base -.-> reasoning;",
                  "checker -.-> __end__;", "context -.-> __end__;", "reasoning -.-> __end__;",
                  "reasoning -.-> checker;"]),
    # no context relabeling: noisy samples are relabeled by the reasoning expert, with no barrier
    ("context", ["__start__ -.-> base;", "base -.-> __end__;", "base -.-> reasoning;", "checker -.-> __end__;",
                 "checker -.-> reasoning_relabel;", "reasoning -.-> __end__;", "reasoning -.-> checker;",
                 "reasoning_relabel -.-> __end__;"]),
    # no consistency check: the checker node stays and calls every sample noisy
    ("checker", FULL_GRAPH),
])
def test_the_drawn_graph_of_every_variant_is_pinned(tmp_path, ablation, edges):
    assert _mermaid(tmp_path, **({"ablate": [ablation]} if ablation else {})) == sorted(edges)


def test_the_context_token_budget_drops_the_least_similar_examples(tmp_path):
    from robustft.agents.relabeler import _shown
    from robustft.tokens import count_tokens

    full, _ = run(tmp_path / "full", PERFECT)
    examples = by_id(full)["q1"]["nodes"]["context"]["examples"]
    assert len(examples) == 3
    config = config_for(tmp_path)
    rt = AgentRuntime(config=config, task="multiple_choice", pool=ModelPool(), prompts=PromptLibrary())
    state = {"question": QUESTIONS["q1"][0], "options": QUESTIONS["q1"][1]}
    two = [{"question": e["question"], "options": QUESTIONS[e["id"]][1], "answer": e["answer"]} for e in examples[:2]]
    budget = count_tokens(rt.prompts.render("context", **rt.prompt_values(state), examples=_shown(two)))
    limited, _ = run(tmp_path / "limited", PERFECT, context_token_budget=budget)
    kept = by_id(limited)["q1"]["nodes"]["context"]["examples"]
    assert [e["id"] for e in kept] == [e["id"] for e in examples[:2]]
    assert count_tokens(by_id(limited)["q1"]["nodes"]["context"]["prompt"]) <= budget


def test_a_relabel_that_keeps_the_label_is_confirmed_not_relabeled(tmp_path):
    # the experts disagree with q3's right label, but the context relabeler and the reviewer give it back:
    # the sample is kept with its label unchanged, and counted as confirmed
    wrong_experts = answering(lambda sid: "A" if sid == "q3" else gold(sid))
    replies = dict(PERFECT, base=wrong_experts, reasoning=wrong_experts)
    result, _ = run(tmp_path, replies, beta=1.0)
    recs = by_id(result)
    assert recs["q3"]["status"] == "confirmed" and recs["q3"]["label"] == GOLD["q3"] == recs["q3"]["proposed_label"]
    assert {sid for sid, r in recs.items() if r["status"] == "relabeled"} == set(NOISY)
    assert all(recs[sid]["label"] != NOISY[sid] for sid in NOISY)
    assert result.summary["confirmed"] == 1 and result.summary["relabeled"] == 4
    ft = {r["id"]: r for r in result.fine_tuning_set}
    assert ft["q3"]["source"] == "confirmed" and ft["q3"]["label"] == GOLD["q3"] and len(ft) == 12
    from robustft.cli.denoise import describe_run

    assert "4 relabeled (label changed), 1 confirmed (relabel kept the given label)" in describe_run(
        result.summary, result.out_dir)


def test_a_sample_whose_answers_cannot_be_read_is_dropped_unreadable_not_failed(tmp_path, capsys):
    mumble = lambda sid, messages: "I am not sure." if sid == "q1" else answering(gold)(sid, messages)  # noqa: E731
    replies = {"base": mumble, "reasoning": mumble, "context": mumble, "reviewer": mumble}
    result, fakes = run(tmp_path, replies)
    rec = by_id(result)["q1"]
    assert (rec["status"], rec["reason"], rec["label"]) == ("dropped", "unreadable", None)
    assert "could be read" in rec["error"]
    s = result.summary
    assert s["failed"] == 0 and s["dropped_by_reason"]["unreadable"] == 1
    from robustft.cli.common import failed_exit

    assert failed_exit(s) == 0 and "run the same command again" not in capsys.readouterr().err
    # a rerun finds it finished: nothing to retry, no call made
    before = {role: len(f.calls) for role, f in fakes.items()}
    again, fakes2 = run(tmp_path, replies)
    assert by_id(again)["q1"]["status"] == "dropped" and not any(f.calls for f in fakes2.values())
    assert again.summary["dropped_by_reason"] == s["dropped_by_reason"] and before["base"] > 0

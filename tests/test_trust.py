"""Trust scores of open-ended responses (agents/trust.py): the signals and their combination, the
ranking figures, the simulator's four kinds of noise, and a run end to end: samples.jsonl's
`trust`, the `trust` checker, `review export` least trusted first, `report --gold`'s ranking."""

from __future__ import annotations

import csv
import json

import pytest

from robustft.cli import main
from robustft.config import load_config
from robustft.data import read_jsonl
from robustft.errors import ConfigError
from robustft.inspect.ranking import auroc, precision_at, trust_ranking
from robustft.agents.trust import combine, split_claims, verdict_probability
from robustft.sim import SimModel, SimServer, load_gold
from robustft.sim.facts import is_right, stated
from robustft.sim.open_data import NOISE_KINDS, make_open_data
from simhelp import arc_gold_path

# -- claims, signals, combination ----------------------------------------------------------------


def test_a_response_splits_into_sentences_short_fragments_joined_and_at_most_max_claims():
    text = "The sun is a star. It is hot.\nPlants need light to grow! Yes. Water matters too?"
    assert split_claims(text, 8) == ["The sun is a star.", "It is hot.", "Plants need light to grow! Yes.",
                                     "Water matters too?"]
    assert split_claims("One sentence only, no end", 8) == ["One sentence only, no end"]
    assert split_claims("", 8) == []
    many = " ".join(f"Sentence number {i} is here." for i in range(10))
    grouped = split_claims(many, 4)
    assert len(grouped) == 4 and " ".join(grouped) == many  # nothing lost, neighbours joined


def test_the_verdict_gives_reflection_and_with_its_token_probability_a_probability_of_right():
    import math
    assert verdict_probability({"answer": "N", "score": -math.log(0.9)}) == (1.0, pytest.approx(0.9))
    assert verdict_probability({"answer": "Y", "score": -math.log(0.9)}) == (0.0, pytest.approx(0.1))
    assert verdict_probability({"answer": "Y", "score": None}) == (0.0, None)
    assert verdict_probability({"answer": None, "score": 0.1}) == (None, None)
    assert verdict_probability(None) == (None, None)


def test_the_score_adds_the_signals_log_odds_with_the_calibrated_weights():
    import math

    from robustft.agents.trust import BIAS, WEIGHTS, features

    def sigmoid(z):
        return 1 / (1 + math.exp(-z))
    assert combine({"agreement": None, "reflection": None, "token_prob": None, "claims": None}) is None
    # one signal: the bias plus its weighted log-odds (0.9 -> log 9); the others add nothing
    assert combine({"agreement": 0.9}) == pytest.approx(sigmoid(BIAS + WEIGHTS["agreement"] * math.log(9)), abs=1e-6)
    assert combine({"agreement": 0.9, "token_prob": None}) == combine({"agreement": 0.9})
    x = features({"reflection": 0.0, "token_prob": 1.0, "claim_check": 0.0})
    assert x["reflection"] == -1.0 and x["token_prob"] == pytest.approx(math.log(999))  # clipped: never certain
    assert x["claim_check"] == pytest.approx(-math.log(999)) and x["agreement"] == 0.0
    # a confident wrong verdict is not diluted by signals that agree: the mean of these is 0.5
    doubted = {"agreement": 0.98, "claim_support": 0.97, "claims": 0.97, "reflection": 0.0, "token_prob": 0.05,
               "response_check": 0.1}
    assert sum(doubted[k] for k in ("agreement", "claims", "reflection", "token_prob")) / 4 == 0.5
    assert combine(doubted) < 0.15
    # every signal counts for right: raising any one raises the score
    base = {"agreement": 0.7, "claim_support": 0.6, "reflection": 1.0, "token_prob": 0.6, "claim_check": 0.6,
            "response_check": 0.6}
    for name in ("agreement", "claim_support", "token_prob", "claim_check", "response_check"):
        assert combine({**base, name: 0.9}) > combine(base) > combine({**base, name: 0.2})
    assert combine({**base, "reflection": 0.0}) < combine(base)
    for name in ("claim_verdict", "response_verdict"):  # every verdict counts as +1 / -1, like the reflection
        assert features({name: 0.3})[name] == -1.0 and features({name: 1.0})[name] == 1.0
        assert combine({**base, name: 0.0}) < combine(base) < combine({**base, name: 1.0})
    assert all(w > 0 for w in WEIGHTS.values())  # as fitted: each signal is evidence in its own direction


def test_the_calibration_fit_recovers_known_weights():
    import math
    import random

    from robustft.agents.trust import FEATURES, fit_weights

    rng = random.Random(0)
    truth = {name: 0.1 * (i + 3) for i, name in enumerate(FEATURES)}
    rows = []
    for _ in range(20000):
        x = {name: rng.gauss(0, 1) for name in FEATURES}
        z = -0.5 + sum(truth[n] * x[n] for n in FEATURES)
        rows.append((x, rng.random() < 1 / (1 + math.exp(-z))))
    fitted = fit_weights(rows, l2=0.0)
    assert fitted["rows"] == 20000 and fitted["bias"] == pytest.approx(-0.5, abs=0.1)
    for name in FEATURES:
        assert fitted["weights"][name] == pytest.approx(truth[name], rel=0.1, abs=0.05)


# -- ranking figures ------------------------------------------------------------------------------


def test_auroc_and_precision_at_k_against_hand_counted_values():
    scores = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4, "e": 0.5}
    assert auroc(scores, {"a", "b"}) == 1.0           # every wrong one below every right one
    assert auroc(scores, {"d", "e"}) == 0.0
    assert auroc(scores, {"a", "d"}) == pytest.approx(4 / 6, abs=1e-4)  # a beats b, c, e; d beats e only: 4 of 6 pairs
    assert auroc({"a": 0.5, "b": 0.5}, {"a"}) == 0.5  # a tie counts half
    assert auroc(scores, set()) is None and auroc(scores, set(scores)) is None
    assert precision_at(scores, {"a", "d"}, 0.2) == 1.0   # the lowest 1 of 5: a
    assert precision_at(scores, {"a", "d"}, 0.4) == 0.5   # a, b
    assert precision_at({}, {"a"}, 0.1) is None


def test_the_ranking_shows_each_signal_alone_and_length_in_its_better_direction():
    records = [{"id": str(i), "original_label": "word " * (10 if i < 3 else 2), "trust": t,
                "trust_signals": {"agreement": a, "reflection": None, "token_prob": 1 - t, "claims": None}}
               for i, (t, a) in enumerate([(0.1, 0.9), (0.2, 0.8), (0.3, 0.1), (0.8, 0.2), (0.9, 0.3), (0.95, 0.4)])]
    records.append({"id": "unscored", "original_label": "x"})
    ranking = trust_ranking(records, {"0", "1", "2", "unscored"}, kinds={"0": "swap", "1": "swap", "2": "consistent"})
    assert ranking["samples"] == 6 and ranking["wrong"] == 3 and ranking["base_rate"] == 0.5
    s = ranking["scores"]
    assert s["trust"]["auroc"] == 1.0 and s["trust"]["precision_at_20"] == 1.0
    assert s["token_prob"]["auroc"] == 0.0
    assert "reflection" not in s                     # never available: not shown
    assert s["length"]["direction"] == "longer first" and s["length"]["auroc"] == 1.0
    assert s["trust"]["auroc_by_kind"] == {"consistent": 1.0, "swap": 1.0}
    assert s["agreement"]["auroc_by_kind"] == {"consistent": 1.0, "swap": 0.0}
    assert trust_ranking([{"id": "x"}], {"x"}) is None


# -- the simulator's four kinds of noise --------------------------------------------------------


@pytest.fixture(scope="module")
def four_kinds(tmp_path_factory):
    out = tmp_path_factory.mktemp("kinds")
    manifest = make_open_data(arc_gold_path(), out, noise=0.5, seed=2, limit=48, kinds=NOISE_KINDS)
    return out, manifest


def test_the_noisy_rows_are_dealt_out_to_the_four_kinds_and_the_gold_file_says_which_are_hard(four_kinds):
    out, manifest = four_kinds
    assert manifest["noisy"] == 24 and all(manifest[k] == 6 for k in NOISE_KINDS)
    gold = {g.id: g for g in load_gold(out / "gold.csv")}
    noisy = {r["id"]: r["answer"] for r in csv.DictReader((out / "noisy.csv").open(encoding="utf-8"))}
    log = list(csv.DictReader((out / "noise.csv").open(encoding="utf-8")))
    for entry in log:
        g, given = gold[entry["id"]], noisy[entry["id"]]
        assert not is_right(given, g.key, g.distractors)
        assert g.confabulates == (entry["kind"] == "confabulation")
        if entry["kind"] == "consistent":
            assert g.mistake and stated(given, (g.mistake,)) == {0}  # the experts' mistake is the given one's
        else:
            assert g.mistake is None
    assert sum(g.is_hard for g in gold.values()) == 12
    # the default (no kinds) is unchanged: swaps and changed key facts, no hardness columns
    plain = make_open_data(arc_gold_path(), out / "plain", noise=0.5, seed=2, limit=48)
    assert plain["swap"] == plain["key_changed"] == 12
    assert "mistake" not in (out / "plain" / "gold.csv").read_text().splitlines()[0]
    # a held-out set: other questions from the same source
    skipped = make_open_data(arc_gold_path(), out / "held", noise=0.5, seed=2, limit=48, kinds=NOISE_KINDS, skip=48)
    assert skipped["rows"] == 48 and not set(gold) & {g.id for g in load_gold(out / "held" / "gold.csv")}
    with pytest.raises(ConfigError, match="kinds must be some of"):
        make_open_data(arc_gold_path(), out / "bad", kinds=["typo"])


def _ask(sim: SimModel, text: str) -> str:
    reply = sim.complete({"model": "m", "messages": [{"role": "user", "content": text}]})
    return reply.payload["choices"][0]["message"]["content"].rsplit("Answer:", 1)[-1].strip()


def test_confabulating_experts_vary_between_samples_and_consistent_ones_repeat_the_mistake(four_kinds):
    out, _ = four_kinds
    items = load_gold(out / "gold.csv")
    sim = SimModel(items, accuracy=0.85, seed=0)
    for item in items:
        if not item.is_hard:
            continue
        replies = [_ask(sim, f"Request {n}. Respond to this question.\nQuestion:\n{item.question}\n"
                             "Answer: your response") for n in range(12)]  # differently worded: independent samples
        if item.confabulates:
            facts_stated = {frozenset(stated(text, (item.key, *item.distractors))) for text in replies}
            assert len(facts_stated) >= 2   # replies vary between samples
        else:
            mistaken = sum(stated(text, (item.mistake, item.key)) == {0} for text in replies)
            assert mistaken >= 7            # the same wrong fact, most of the time (0.85 x 12 expected)


def test_a_claim_is_judged_by_the_distractors_it_states_not_by_the_key_it_leaves_out(four_kinds):
    out, _ = four_kinds
    item = next(g for g in load_gold(out / "gold.csv") if not g.is_hard)
    sim = SimModel([item], accuracy=1.0, seed=0)

    def verdict(claim: str) -> str:
        return _ask(sim, f"Question:\n{item.question}\n\nThe given claim (may be wrong):\n{claim}\n\n"
                         "Finish with a line 'Answer: ' then Y if the claim is wrong, or N if it is right.")
    assert verdict("The question is about many things.") == "N"
    assert verdict(f"The best answer is {item.distractors[0]}.") == "Y"
    assert verdict(f"The best answer is {item.key}.") == "N"


# -- a run end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trust_run(tmp_path_factory, four_kinds):
    folder, _ = four_kinds
    tmp = tmp_path_factory.mktemp("trust-run")
    config = tmp / "trust.yaml"
    config.write_text("denoise:\n  checker: trust\n  trust_threshold: 0.55\n")
    out = tmp / "run"
    # the server stays up for the module: report --gold compares by meaning with the run's embedder (it)
    with SimServer(folder / "gold.csv", accuracy=0.85, seed=4) as sim:
        code = main(["denoise", "--config", str(config), "--data", str(folder / "noisy.csv"), "--out", str(out),
                     "--model", "sim", "--base-url", sim.base_url, "--embedding-base-url", sim.base_url,
                     "--embedding-model", "sim-embed", "--quiet"])
        assert code == 0
        gold = {g.id: g for g in load_gold(folder / "gold.csv")}
        records = read_jsonl(out / "samples.jsonl")
        wrong = {r["id"] for r in records
                 if not is_right(r["original_label"], gold[r["id"]].key, gold[r["id"]].distractors)}
        yield {"out": out, "records": records, "wrong": wrong, "folder": folder}


def test_every_given_response_gets_a_trust_score_from_a_bounded_number_of_calls(trust_run):
    records, wrong = trust_run["records"], trust_run["wrong"]
    assert len(records) == 48 and len(wrong) == 24
    for r in records:
        assert 0.0 <= r["trust"] <= 1.0
        s = r["trust_signals"]
        assert set(s) >= {"agreement", "reflection", "token_prob", "claims", "weakest_claim", "claims_checked"}
        assert s["claims_checked"] == 1 and s["weakest_claim"] in r["original_label"]
        assert r["decision"] == ("clean" if r["trust"] >= 0.55 else "noisy")
        assert r["decision_reason"].startswith("trust ")
        # base, reasoning, one reflection and one claim check, each re-asked at most parse_retries times
        detection = [n for n in ("base", "reasoning", "judge", "claim") if n in r["nodes"]]
        assert detection == ["base", "reasoning", "judge", "claim"]
        assert all(r["nodes"][n]["attempts"] <= 3 for n in detection)
        assert "base" in r["nodes"]["claim"]["prompt"] or "expert" in r["nodes"]["claim"]["prompt"]
    mean = lambda ids: sum(r["trust"] for r in records if r["id"] in ids) / len(ids)  # noqa: E731
    right = {r["id"] for r in records} - wrong
    assert mean(wrong) < mean(right) - 0.2
    summary = json.loads((trust_run["out"] / "summary.json").read_text())
    assert summary["model_calls"]["judge"] >= 48 and summary["model_calls"]["claim"] >= 48


def test_review_export_lists_every_scored_sample_least_trusted_first(trust_run):
    path = trust_run["out"] / "review.csv"
    assert main(["review", "export", str(trust_run["out"])]) == 0
    rows = list(csv.DictReader(path.open(encoding="utf-8-sig")))
    assert len(rows) == 48  # the clean ones too: a wrong response the checker passed can be reviewed
    trusts = [float(r["trust"]) for r in rows]
    assert trusts == sorted(trusts)
    first = {r["id"] for r in rows[:10]}
    assert len(first & trust_run["wrong"]) >= 8  # the least trusted 20 % is mostly wrong (24 of 48 are)


def test_report_with_gold_ranks_the_trust_score_beside_each_signal(trust_run, capsys):
    assert main(["report", str(trust_run["out"]), "--gold", str(trust_run["folder"] / "gold.csv")]) == 0
    printed = capsys.readouterr().out
    assert "trust ranking" in printed and "AUROC" in printed
    data = json.loads((trust_run["out"] / "report.json").read_text())
    ranking = data["trust_ranking"]
    assert set(ranking["scores"]) == {"trust", "agreement", "reflection", "token_prob", "claims", "recheck", "verdicts",
                                      "length"}
    assert "How well the trust score ranks" in (trust_run["out"] / "report.html").read_text()


def test_the_trust_checker_refuses_short_answer_data_and_a_switched_off_score(tmp_path, capsys):
    with pytest.raises(Exception, match="trust needs the trust score"):
        load_config(None, {"denoise": {"checker": "trust", "trust": False}})
    from robustft.sim import DEMO_DATA

    config = tmp_path / "trust.yaml"
    config.write_text("denoise:\n  checker: trust\n")
    with SimServer(DEMO_DATA / "demo_gold.csv") as sim:
        code = main(["denoise", "--config", str(config), "--data", str(DEMO_DATA / "demo.csv"), "--out",
                     str(tmp_path / "mc"), "--model", "sim", "--base-url", sim.base_url, "--limit", "4", "--quiet"])
        assert code == 2 and "checker: trust scores open-ended responses" in capsys.readouterr().err
        assert sim.requests == 0  # refused before any call


def test_trace_shows_the_trust_score_its_signals_and_the_weakest_claim(trust_run, capsys):
    record = min(trust_run["records"], key=lambda r: r["trust"])
    assert main(["trace", str(trust_run["out"]), record["id"]]) == 0
    shown = capsys.readouterr().out
    assert f"trust of the given response: {record['trust']:.3f}" in shown
    assert "weakest claim:" in shown and "claim check" in shown
    assert f"recheck {record['trust_signals']['recheck']:.3f}" in shown and ". recheck (the judge asked again" in shown


# -- the score when calls misbehave (a scripted judge; the simulator's hashing embedder) ----------


class HashEmbedder:
    """robustft.sim's feature-hashing embeddings, in process: a paraphrase lies close, another text far."""

    identity = "test:sim-hash"

    async def embed(self, texts):
        import numpy as np
        from robustft.sim.embeddings import embed

        return np.array([embed(t) for t in texts], dtype=np.float32)


def _by_template(replies: dict[str, str]):
    """A judge that answers each template its own way: `replies` maps judge / claim / recheck to a reply."""
    openings = {"judge": "You are a critical checker", "claim": "You are a careful fact checker",
                "recheck": "You are checking a response"}

    def reply(messages):
        prompt = messages[-1]["content"]
        return next(replies[name] for name, opening in openings.items() if prompt.startswith(opening))
    return reply


def _trust_of(judge_replies, given: str, experts: dict[str, str], **denoise):
    import asyncio

    from robustft.agents.runtime import AgentRuntime
    from robustft.agents.similarity import agreement
    from robustft.agents.trust import score_trust
    from robustft.backends.fake import FakeChatModel
    from robustft.backends.registry import ModelPool
    from robustft.prompts import PromptLibrary
    from robustft.retrieval.texts import TextVectors

    config = load_config(None, {"model": {"provider": "fake", "name": "fake", "max_retries": 0},
                                "denoise": {"checker": "trust", **denoise}})
    judge = FakeChatModel(_by_template(judge_replies) if isinstance(judge_replies, dict) else judge_replies)
    pool = ModelPool()
    pool.add(config.model_for("judge"), judge)
    rt = AgentRuntime(config=config, task="open", pool=pool, prompts=PromptLibrary(), texts=TextVectors(HashEmbedder()))
    state = {"id": "s", "question": "Why is the sky blue?", "label": given, "options": None, "nodes": {}}

    async def go():
        found = [await agreement(rt, a, given) for a in experts.values()]
        return await score_trust(rt, state, experts, [f.similarity for f in found], None)

    return asyncio.run(go()), judge


GIVEN = "The sky is blue because air scatters blue light. Sunlight holds every colour of light."
EXPERTS = {"base": "The sky is blue since air scatters blue light. Sunlight holds every colour of light.",
           "reasoning": "Air scatters blue light, so the sky is blue. Sunlight holds every colour of light."}


def test_an_unreadable_verdict_is_left_out_and_the_calls_stay_bounded():
    update, judge = _trust_of(["I would rather not say."], GIVEN, EXPERTS)
    s = update["trust_signals"]
    assert s["reflection"] is None and s["token_prob"] is None      # no verdict: no number made up
    assert s["agreement"] > 0.9 and s["claims"] is not None
    assert update["trust"] == pytest.approx(combine(s), abs=1e-3)  # the shown signals are rounded
    # one reflection, one claim check and the recheck, each asked 1 + parse_retries (2) times, no more
    assert len(judge.calls) == 9 and update["nodes"]["judge"]["attempts"] == 3
    assert update["nodes"]["claim"]["attempts"] == 3 and update["nodes"]["recheck"]["attempts"] == 3
    assert "recheck" not in s and "recheck_verdict" not in s


def test_a_response_no_claim_of_which_stands_out_is_checked_as_a_whole():
    # one sentence: no claims to compare, so the claim check asks about the whole response
    short = "The sky is blue because air scatters blue light."
    update, judge = _trust_of(["Answer: Y"], short, {"base": short, "reasoning": short})
    s = update["trust_signals"]
    assert s["claims"] is None and s["claims_checked"] == 1 and s["response_check"] is not None
    assert len(judge.calls) == 3 and short in update["nodes"]["claim"]["prompt"]
    said_right, _ = _trust_of(["Answer: N"], short, {"base": short, "reasoning": short})
    assert update["trust"] < 0.5 < said_right["trust"]
    # two sentences the experts both support: the check goes to the response as a whole too
    update, judge = _trust_of(["Answer: N"], GIVEN, EXPERTS)
    s = update["trust_signals"]
    assert s["claim_support"] > 0.5 and "claim_check" not in s and s["response_check"] is not None
    assert "The given claim (may be wrong):\n" + GIVEN in update["nodes"]["claim"]["prompt"]
    # the whole-response check is a second self-reflection: its verdict counts like the first's
    assert s["response_verdict"] == 1.0 and "claim_verdict" not in s
    doubted, _ = _trust_of({"judge": "Answer: N", "claim": "Answer: Y", "recheck": "Answer: N"}, GIVEN, EXPERTS)
    assert doubted["trust_signals"]["response_verdict"] == 0.0 and doubted["trust"] < update["trust"]


def test_a_claim_the_experts_do_not_support_is_the_one_checked():
    odd = "The sky is blue because air scatters blue light. The moon is made of green cheese and old socks."
    update, judge = _trust_of({"judge": "Answer: N", "claim": "Answer: Y", "recheck": "Answer: N"}, odd, EXPERTS)
    s = update["trust_signals"]
    assert s["claim_support"] < 0.5 and s["weakest_claim"].startswith("The moon")
    assert "response_check" not in s and s["claim_check"] is not None and s["claims_checked"] == 1
    assert s["claim_verdict"] == 0.0 and "response_verdict" not in s  # the judge said the claim is wrong (Y)
    assert "The given claim (may be wrong):\nThe moon" in update["nodes"]["claim"]["prompt"]
    assert len(judge.calls) == 3  # the reflection, one claim check (trust_claim_checks bounds it) and the recheck


def test_the_recheck_is_a_third_verdict_asked_without_the_experts_responses():
    right = {"judge": "Answer: N", "claim": "Answer: N", "recheck": "Answer: N"}
    update, judge = _trust_of(right, GIVEN, EXPERTS)
    s = update["trust_signals"]
    assert s["recheck_verdict"] == 1.0 and s["recheck"] > 0.5 and len(judge.calls) == 3
    prompt = update["nodes"]["recheck"]["prompt"]
    assert "The given response (may be wrong):\n" + GIVEN in prompt
    assert EXPERTS["base"] not in prompt and EXPERTS["reasoning"] not in prompt  # on its own knowledge
    doubted, _ = _trust_of({**right, "recheck": "Answer: Y"}, GIVEN, EXPERTS)
    assert doubted["trust_signals"]["recheck_verdict"] == 0.0 and doubted["trust"] < update["trust"]
    off, judge = _trust_of(right, GIVEN, EXPERTS, trust_recheck=False)
    assert len(judge.calls) == 2 and "recheck" not in off["nodes"] and "recheck" not in off["trust_signals"]


def test_a_response_no_expert_shares_a_topic_with_ranks_below_one_that_wrong_verdicts_put_low():
    from robustft.agents.trust import OFF_TOPIC_MARGIN, RELEVANCE_MARGIN, off_topic

    assert off_topic([0.9, 0.2], 0.65) == 0.0 and off_topic([None], 0.65) is None
    assert off_topic([0.25, 0.1], 0.65) == pytest.approx((0.65 - OFF_TOPIC_MARGIN - 0.25) / 0.1, abs=1e-4)
    # near the question it answers: not off-topic, however far both experts went astray
    assert off_topic([0.25, 0.1], 0.65, relevance=0.65 - RELEVANCE_MARGIN) == 0.0
    assert off_topic([0.25, 0.1], 0.65, relevance=0.1) == off_topic([0.25, 0.1], 0.65)
    # a right response the experts share, but two of three verdicts say wrong ...
    doubted, _ = _trust_of({"judge": "Answer: Y", "claim": "Answer: N", "recheck": "Answer: Y"}, GIVEN, EXPERTS)
    # ... and another question's response that two of three verdicts wrongly call right
    other = "Volcanoes erupt when magma rises through cracks in the crust. Lava cools into basalt."
    swapped, _ = _trust_of({"judge": "Answer: N", "claim": "Answer: N", "recheck": "Answer: Y"}, other, EXPERTS)
    assert "off_topic" not in doubted["trust_signals"] and swapped["trust_signals"]["off_topic"] > 1
    assert swapped["trust"] < doubted["trust"] < 0.5
    without = {k: v for k, v in swapped["trust_signals"].items() if k != "off_topic"}
    assert combine(without) > doubted["trust"]  # without the term the verdicts would have put it above
    assert swapped["trust_signals"]["relevance"] < doubted["trust_signals"]["relevance"]
    # a right response both experts went astray from, but near its question: no off-topic term
    astray = {"base": other, "reasoning": "Volcanoes erupt when magma rises. Basalt forms from cooled lava."}
    kept, _ = _trust_of({"judge": "Answer: N", "claim": "Answer: N", "recheck": "Answer: N"},
                        "Why is the sky blue? The sky is blue because air scatters blue light.", astray)
    assert kept["trust_signals"]["agreement"] < 0.05  # both experts far from it ...
    assert kept["trust_signals"]["relevance"] >= 0.4 and "off_topic" not in kept["trust_signals"]  # ... but on topic


def test_a_judge_that_keeps_failing_fails_the_sample_with_its_error():
    from robustft.backends.errors import BackendError

    update, _ = _trust_of([BackendError("judge down", status_code=400, retryable=False)], GIVEN, EXPERTS)
    assert update["status"] == "failed" and "judge down" in update["error"]


def test_a_recheck_that_keeps_failing_fails_the_sample_after_the_claim_check_is_done():
    from robustft.backends.errors import BackendError

    replies = {"judge": "Answer: N", "claim": "Answer: N",
               "recheck": BackendError("recheck refused", status_code=400, retryable=False)}
    update, judge = _trust_of(replies, GIVEN, EXPERTS)
    assert update["status"] == "failed" and "recheck refused" in update["error"]
    assert any(m[-1]["content"].startswith("You are a careful fact checker") for m in judge.calls)  # not cut off


def test_with_trust_selection_relabels_are_ranked_by_their_own_trust(four_kinds, tmp_path):
    folder, _ = four_kinds
    config = tmp_path / "trust.yaml"
    config.write_text("denoise:\n  checker: trust\n  trust_selection: true\n")
    out = tmp_path / "run"
    with SimServer(folder / "gold.csv", accuracy=0.85, seed=4) as sim:
        assert main(["denoise", "--config", str(config), "--data", str(folder / "noisy.csv"), "--out", str(out),
                     "--model", "sim", "--base-url", sim.base_url, "--embedding-base-url", sim.base_url,
                     "--embedding-model", "sim-embed", "--quiet"]) == 0
    records = read_jsonl(out / "samples.jsonl")
    relabels = [r for r in records if r["status"] in ("relabeled", "confirmed", "dropped") and r.get("proposed_label")]
    assert relabels
    for r in relabels:
        assert r["score"] == pytest.approx(1 - r["relabel_trust"], abs=1e-6)
        assert {"relabel_judge", "relabel_claim"} <= set(r["nodes"])
        assert r["nodes"]["relabel_judge"]["prompt"].count(r["proposed_label"][:40]) >= 1  # the relabel is judged
    kept = [r["relabel_trust"] for r in relabels if r["status"] != "dropped"]
    dropped = [r["relabel_trust"] for r in relabels if r["status"] == "dropped"]
    assert kept and dropped and min(kept) >= max(dropped)  # beta keeps the most trusted relabels
    assert all("relabel_trust" not in r for r in records if r["status"] == "clean")


def test_the_ranking_reads_wrong_and_right_with_the_reports_own_comparison():
    from robustft.inspect.ranking import gold_wrong

    records = [{"id": "a", "original_label": "The sky is blue."}, {"id": "b", "original_label": "Blue, the sky is."},
               {"id": "c", "original_label": None}, {"id": "d", "original_label": "x"}]
    gold = {"a": "The sky is blue.", "b": "The sky is blue.", "c": "The sky is blue."}
    assert gold_wrong(records, gold, "open", 0.01) == {"b", "c"}           # same text only
    by_meaning = lambda answer, g, sid: "blue" in answer.lower()  # noqa: E731  (a stand-in for the embedder)
    assert gold_wrong(records, gold, "open", 0.01, same=by_meaning) == {"c"}


def test_an_unreachable_embedding_server_costs_a_report_seconds_not_the_runs_give_up(trust_run, monkeypatch):
    """report --gold falls back to the same text (and says so) after REPORT_GIVE_UP_S, not give_up_after_s."""
    import socket
    import time

    from robustft.errors import UserError
    from robustft.inspect import gold_compare
    from robustft.run.rundir import load_run

    with socket.socket() as s:  # a port nobody listens on: connections are refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    run = load_run(trust_run["out"])
    denoise = run.config.denoise.model_copy(update={"embedding_base_url": [dead]})
    run.config = run.config.model_copy(update={"denoise": denoise})
    assert run.config.model.give_up_after_s >= 60
    monkeypatch.setattr(gold_compare, "REPORT_GIVE_UP_S", 1.0)
    started = time.monotonic()
    with pytest.raises(UserError, match="embedding server"):
        gold_compare._embed(run, ["a response"])
    assert time.monotonic() - started < 15


def test_on_a_simulated_set_the_combined_score_ranks_better_than_any_one_signal(trust_run):
    # 48 rows, half wrong, the four kinds of noise; the hashing embedder, not MiniLM: the weights were
    # fitted elsewhere (benchmarks/open_trust.py's dev sets), so this is a set they never saw
    with (trust_run["folder"] / "noise.csv").open(newline="", encoding="utf-8") as fh:
        kinds = {row["id"]: row["kind"] for row in csv.DictReader(fh)}
    ranking = trust_ranking(trust_run["records"], trust_run["wrong"], kinds=kinds)
    s = ranking["scores"]
    singles = ("agreement", "reflection", "token_prob", "claims")
    assert s["trust"]["auroc"] > max(s[name]["auroc"] for name in singles)
    assert s["trust"]["auroc"] >= 0.9 and s["trust"]["precision_at_20"] >= 0.9


def test_refitted_weights_change_the_run_settings_so_a_resumed_run_rescores(monkeypatch):
    import robustft.agents.trust as trust
    from robustft.prompts import PromptLibrary
    from robustft.run.runner import method_settings

    config = load_config(None, {"model": {"provider": "fake", "name": "fake"}, "denoise": {"checker": "trust"}})
    before = method_settings(config, PromptLibrary(), "open")
    assert before["method"]["trust"]["weights"] == trust.scoring_digest()
    monkeypatch.setattr(trust, "WEIGHTS", {**trust.WEIGHTS, "agreement": trust.WEIGHTS["agreement"] + 0.1})
    after = method_settings(config, PromptLibrary(), "open")
    assert after["method"]["trust"]["weights"] != before["method"]["trust"]["weights"]
    monkeypatch.setattr(trust, "OFF_TOPIC_SLOPE", trust.OFF_TOPIC_SLOPE + 1)
    assert method_settings(config, PromptLibrary(), "open")["method"]["trust"]["weights"] != after["method"]["trust"]["weights"]
    assert "trust" not in method_settings(config, PromptLibrary(), "multiple_choice")["method"]

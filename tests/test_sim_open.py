"""robustft.sim's open-ended mode: key facts, the expert and the judge over real HTTP, and the data generator."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import subprocess
import sys

import openai
import pytest

from robustft.data import read_jsonl
from robustft.errors import InputError
from robustft.sim import SimServer, load_gold
from robustft.sim.facts import change_fact, is_right, paraphrase, stated
from robustft.sim.open_data import make_open_data
from simhelp import ROOT, arc_gold_path, ask, final_answer

LIMIT = 400


@pytest.fixture(scope="module")
def open30(tmp_path_factory):
    out = tmp_path_factory.mktemp("open30")
    manifest = make_open_data(arc_gold_path(), out, noise=0.3, seed=0, limit=LIMIT)
    return out, manifest


@pytest.fixture(scope="module")
def gold(open30):
    return load_gold(open30[0] / "gold.csv")


@pytest.fixture(scope="module")
def noisy(open30):
    return {row["id"]: row["answer"] for row in csv.DictReader((open30[0] / "noisy.csv").open(encoding="utf-8"))}


def answer_prompt(item) -> str:
    return (f"Answer the question below in a short paragraph.\n\nQuestion:\n{item.question}\n\n"
            "End with a line starting with \"Answer: \" followed by your response.")


def judge_prompt(item, response: str) -> str:
    return (f"Question:\n{item.question}\n\nGiven response (may be wrong):\n{response}\n\n"
            "Finish with \"Answer: \", then Y if the given response is wrong, or N if it is right.")


# -- key facts ---------------------------------------------------------------------------------

def test_a_fact_is_stated_word_for_word_and_not_inside_a_longer_one():
    assert is_right("The answer is THE sun, clearly.", "the Sun")
    assert not is_right("It is sunny today.", "sun")
    assert is_right("It is dry in summer.", "dry", ["warm and dry"])
    assert not is_right("It is warm and dry in summer.", "dry", ["warm and dry"])
    assert not is_right("It is dry, or maybe wet.", "dry", ["wet"])
    assert stated("igneous rock to metamorphic rock", ["metamorphic rock", "igneous rock to metamorphic rock"]) == {1}
    assert change_fact("Ice melts at 0 C. So 0 C it is.", "0 C", "10 C") == "Ice melts at 10 C. So 10 C it is."


def test_paraphrase_rewords_but_keeps_the_key_fact():
    text = ("The best answer is a lizard shedding its skin. This follows from the basic principle involved, "
            "and the situation described supports it clearly.")
    first = paraphrase(text, ["a lizard shedding its skin"], random.Random(1))
    assert first == paraphrase(text, ["a lizard shedding its skin"], random.Random(1))
    assert first != text and "a lizard shedding its skin" in first and "answer:" not in first.lower()
    assert is_right(first, "a lizard shedding its skin")
    assert paraphrase("Paris.", ["Paris"], random.Random(0)).endswith("Paris.")


# -- the data generator ------------------------------------------------------------------------

def test_noise_rate_is_exact_and_every_noisy_response_is_wrong(open30, gold, noisy):
    out, manifest = open30
    rows = manifest["rows"]
    assert rows == len(gold) == len(noisy) == LIMIT
    changed = [item for item in gold if noisy[item.id] != item.answer]
    assert len(changed) == manifest["noisy"] == round(0.3 * rows)
    assert all(is_right(item.answer, item.key, item.distractors) for item in gold)
    assert not any(is_right(noisy[item.id], item.key, item.distractors) for item in changed)
    assert manifest["swap"] == math.floor(manifest["noisy"] * 0.5) and manifest["swaps_for_want_of_a_distractor"] == 0
    assert manifest["swap"] + manifest["key_changed"] == manifest["noisy"]


def test_noise_kinds_are_as_logged(open30, gold, noisy):
    out, manifest = open30
    by_id = {item.id: item for item in gold}
    log = list(csv.DictReader((out / "noise.csv").open(encoding="utf-8")))
    assert sorted(entry["id"] for entry in log) == sorted(i for i in noisy if noisy[i] != by_id[i].answer)
    for entry in log:
        item = by_id[entry["id"]]
        if entry["kind"] == "swap":
            source = by_id[entry["source"]]
            assert noisy[item.id] == source.answer and source.question != item.question
        else:
            assert entry["kind"] == "key_changed" and entry["source"] in item.distractors
            assert noisy[item.id] == change_fact(item.answer, item.key, entry["source"].rstrip(". "))


def test_noise_levels_are_nested_and_reproducible(open30, tmp_path, noisy):
    make_open_data(arc_gold_path(), tmp_path / "50", noise=0.5, seed=0, limit=LIMIT)
    make_open_data(arc_gold_path(), tmp_path / "30", noise=0.3, seed=0, limit=LIMIT)
    again = {r["id"]: r["answer"] for r in csv.DictReader((tmp_path / "30" / "noisy.csv").open(encoding="utf-8"))}
    assert again == noisy
    at50 = {r["id"]: r["answer"] for r in csv.DictReader((tmp_path / "50" / "noisy.csv").open(encoding="utf-8"))}
    gold_answers = {r["id"]: r["answer"] for r in csv.DictReader((open30[0] / "gold.csv").open(encoding="utf-8"))}
    wrong30 = {i for i in noisy if noisy[i] != gold_answers[i]}
    wrong50 = {i for i in at50 if at50[i] != gold_answers[i]}
    assert len(wrong50) == round(0.5 * LIMIT) and wrong30 < wrong50
    assert all(at50[i] == noisy[i] for i in wrong30)


def test_the_same_rows_in_every_format(open30, noisy):
    out, _ = open30
    gold_csv = list(csv.DictReader((out / "gold.csv").open(encoding="utf-8")))
    gold_jsonl, noisy_jsonl = read_jsonl(out / "gold.jsonl"), read_jsonl(out / "noisy.jsonl")
    gold_chat, noisy_chat = read_jsonl(out / "gold.messages.jsonl"), read_jsonl(out / "noisy.messages.jsonl")
    assert [r["answer"] for r in gold_jsonl] == [r["answer"] for r in gold_csv]
    assert [json.loads(r["distractors"]) for r in gold_csv] == [r["distractors"] for r in gold_jsonl]
    assert {r["id"]: r["answer"] for r in noisy_jsonl} == noisy
    for chat, plain in ((gold_chat, gold_csv), (noisy_chat, noisy_jsonl)):
        assert [c["id"] for c in chat] == [p["id"] for p in plain]
        assert all(c["messages"] == [{"role": "user", "content": p["question"]},
                                     {"role": "assistant", "content": p["answer"]}] for c, p in zip(chat, plain))
    assert all(c["key"] == p["key"] for c, p in zip(gold_chat, gold_csv))
    assert load_gold(out / "gold.jsonl") == load_gold(out / "gold.csv")


def test_cli_makes_the_files_and_refuses_a_text_file(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "robustft.sim", "make-open-data", "--source", str(arc_gold_path()),
                           "--out", str(tmp_path / "o"), "--noise", "0.5", "--limit", "40"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "40 questions, 20 wrong responses" in done.stdout
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["noisy"] == 20
    text = tmp_path / "text.csv"
    text.write_text("question,answer\nWhat is 2+2?,four\n")
    bad = subprocess.run([sys.executable, "-m", "robustft.sim", "make-open-data", "--source", str(text),
                          "--out", str(tmp_path / "p")], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "not a multiple-choice file" in bad.stderr and "Traceback" not in bad.stderr


# -- the open-ended expert and judge over HTTP -------------------------------------------------

def test_expert_paraphrases_right_responses_at_the_set_accuracy(open30, gold):
    items = gold[:250]
    with SimServer(open30[0] / "gold.csv", accuracy=0.8, seed=1) as sim, \
            openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as c:
        replies = [final_answer(ask(c, answer_prompt(item)).choices[0].message.content) for item in items]
        again = final_answer(ask(c, answer_prompt(items[0])).choices[0].message.content)
        assert sim.unmatched == 0
    assert again == replies[0]
    right = [is_right(reply, item.key, item.distractors) for reply, item in zip(replies, items)]
    accuracy = sum(right) / len(items)
    print(f"open-ended expert accuracy {accuracy:.3f} over {len(items)} questions (setting 0.8)")
    assert abs(accuracy - 0.8) < 0.08
    paraphrased = [reply != item.answer for reply, item, ok in zip(replies, items, right) if ok]
    assert sum(paraphrased) / len(paraphrased) > 0.95
    wrong_replies = [reply for reply, ok in zip(replies, right) if not ok]
    assert all(reply and "answer:" not in reply.lower() for reply in wrong_replies)


def test_step_by_step_reasoning_comes_before_the_response(open30, gold):
    item = gold[3]
    with SimServer(open30[0] / "gold.csv", accuracy=1.0) as sim, openai.OpenAI(base_url=sim.base_url, api_key="x") as c:
        text = ask(c, "Think it through step by step.\n" + answer_prompt(item)).choices[0].message.content
    reasoning, response = text.rsplit("\nAnswer: ", 1)
    assert "step by step" in reasoning and "Answer:" not in reasoning
    assert is_right(response, item.key, item.distractors)


def test_judge_says_whether_a_response_is_right(open30, gold, noisy):
    items = [item for item in gold if noisy[item.id] != item.answer][:40]
    rng = random.Random(0)
    with SimServer(open30[0] / "gold.csv", accuracy=1.0) as sim, openai.OpenAI(base_url=sim.base_url, api_key="x") as c:
        for item in items:
            right_one = paraphrase(item.answer, [item.key], rng)
            for response, verdict in ((item.answer, "N"), (right_one, "N"), (noisy[item.id], "Y")):
                assert final_answer(ask(c, judge_prompt(item, response)).choices[0].message.content) == verdict
        item = items[0]
        variants = [  # other wordings a judge prompt may have, each with the verdict for a right response
            (f"Reply Y if the response below is correct and N if it is not.\n\nQuestion:\n{item.question}\n\n"
             f"Response:\n{item.answer}\n", "Y"),
            (f"Question:\n{item.question}\n\nExpert response:\n{noisy[item.id]}\n\nThe given response:\n"
             f"{item.answer}\nSecond expert: {noisy[item.id]}\n\nIs the given response wrong? Answer Y or N.", "N"),
            (f"Question: {item.question}\nGiven response: {item.answer}\nY or N: does the given response agree "
             "with the facts?", "Y"),
        ]
        for prompt, verdict in variants:
            assert final_answer(ask(c, prompt).choices[0].message.content) == verdict, prompt
        assert sim.unmatched == 0


def test_judge_accuracy_matches_setting(open30, gold, noisy):
    items = gold[:200]
    with SimServer(open30[0] / "gold.csv", accuracy=0.7, seed=2) as sim, \
            openai.OpenAI(base_url=sim.base_url, api_key="x") as c:
        verdicts = [final_answer(ask(c, judge_prompt(item, noisy[item.id])).choices[0].message.content)
                    for item in items]
    truth = ["N" if is_right(noisy[item.id], item.key, item.distractors) else "Y" for item in items]
    accuracy = sum(v == t for v, t in zip(verdicts, truth)) / len(items)
    assert abs(accuracy - 0.7) < 0.1


def test_bad_open_gold_files(tmp_path):
    cases = {
        "absent_key.csv": ("question,answer,key\nWhy is the sky blue?,Because of Rayleigh scattering.,Mie scattering\n",
                           "does not state its key fact"),
        "marker.csv": ("question,answer,key\nWhy?,Answer: Rayleigh scattering.,Rayleigh scattering\n", "marker"),
        "empty_key.csv": ("question,answer,key\nWhy?,Rayleigh scattering.,\n", "empty key fact"),
        "distractors.csv": ("question,answer,key,distractors\nWhy?,Rayleigh scattering.,Rayleigh scattering,[oops\n",
                            "distractors is not a JSON list"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(InputError, match=message) as info:
            load_gold(path)
        assert name in str(info.value) and "row 1" in str(info.value)

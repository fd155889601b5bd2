"""A chat dataset whose system prompt asks for a bare answer ("Answer with just the name"), against
the simulated experts, which obey such a system prompt: every reply is only the answer. The run
reads those replies (no sample lost as unreadable), each prompt carries the note that settles the
conflict, and the dry run shows the whole conversation as it is sent."""

from __future__ import annotations

import json

from robustft.cli import main
from robustft.data import read_jsonl
from robustft.sim import SimServer

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Egypt", "Cairo"), ("Peru", "Lima"),
            ("Kenya", "Nairobi"), ("Chile", "Santiago"), ("Norway", "Oslo"), ("Spain", "Madrid"), ("Cuba", "Havana")]
SYSTEM = "You are a geography quiz bot. Answer with just the name of the city."
WRONG = {"Japan": "Osaka", "Peru": "Cusco"}  # given answers that are wrong


def _files(tmp_path):
    gold = tmp_path / "gold.csv"
    gold.write_text("id,question,answer\n" + "".join(
        f"{country.lower()},What is the capital of {country}?,{city}\n" for country, city in CAPITALS))
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"id": country.lower(), "messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"What is the capital of {country}?"},
        {"role": "assistant", "content": WRONG.get(country, city)}]}) + "\n" for country, city in CAPITALS))
    return gold, data


def test_a_system_prompt_asking_for_a_bare_answer_costs_no_sample(tmp_path, capsys):
    gold, data = _files(tmp_path)
    out = tmp_path / "run"
    with SimServer(gold, accuracy=1.0, seed=3) as sim:
        args = ["denoise", "--data", str(data), "--model", "sim", "--base-url", sim.base_url, "--quiet",
                "--out", str(out)]
        assert main([*args, "--dry-run"]) == 0
        dry = capsys.readouterr().out
        assert main(args) == 0
        bare_replies = sim.model.bare
    # the dry run: the system prompt as sent, then each prompt with the note, as the last user turn
    assert f"[system]\n{SYSTEM}" in dry and "sent as the last user turn" in dry
    assert "even where the conversation above asked for the answer alone" in dry
    assert "conflicts with the prompts' Answer: line" in dry
    records = {r["id"]: r for r in read_jsonl(out / "samples.jsonl")}
    assert bare_replies > 0  # the simulated experts did answer with the name alone
    assert all(r["status"] != "dropped" or r.get("reason") != "unreadable" for r in records.values())
    assert all(node.get("answer") is not None for r in records.values() for node in r["nodes"].values()
               if node.get("response") is not None)
    assert {sid for sid, r in records.items() if r["decision"] == "noisy"} == {c.lower() for c in WRONG}
    assert records["japan"]["proposed_label"] == "Tokyo" and records["peru"]["proposed_label"] == "Lima"
    sent = records["france"]["nodes"]["base"]["prompt"]
    assert sent.startswith("(For this message, follow the instructions below")

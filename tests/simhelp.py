"""Helpers shared by the robustft.sim tests: where the ARC gold answers are, prompts, raw HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from shared_data import ARC, shared_file

ROOT = Path(__file__).resolve().parents[1]
ARC_GOLD = ARC / "labeled.csv"
LETTERS = "ABCDEFGH"


def arc_gold_path() -> Path:
    """The ARC gold file, or skip the test when the benchmark data is absent."""
    return shared_file("arc", "labeled.csv")


def mc_prompt(item, step_by_step: bool = False) -> str:
    options = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(item.options))
    how = "Think it through step by step." if step_by_step else "Answer directly."
    return f"{how}\nEnd with a line \"Answer: \" and a letter.\n\nQuestion:\n{item.question}\nOptions:\n{options}\n"


def ask(client, prompt: str, **kwargs):
    return client.chat.completions.create(model="sim", messages=[{"role": "user", "content": prompt}], **kwargs)


def final_answer(text: str) -> str | None:
    """What follows the last 'Answer:' marker (the convention of every task), or None."""
    if "Answer:" not in text:
        return None
    return text.rsplit("Answer:", 1)[1].strip()


def each_prompt_gets_through(client, items, tries: int) -> None:
    """Ask each item's question again after every HTTP 500 (as a client's retry does): each must
    get an answer within `tries` attempts, or the test fails."""
    import openai
    import pytest

    for item in items:
        for _ in range(tries):
            try:
                assert final_answer(ask(client, mc_prompt(item)).choices[0].message.content)
                break
            except openai.InternalServerError:
                pass
        else:
            pytest.fail(f"{tries} attempts of one prompt all failed")


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str) -> tuple[int, dict]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, json.loads(response.read())

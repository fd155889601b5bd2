"""The simulated expert server, over real HTTP on 127.0.0.1, with the ARC gold answers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import openai
import pytest

from robustft.errors import ConfigError, InputError
from robustft.sim import DEMO_DATA, QuestionIndex, SimServer, load_gold
from shared_data import ARC_ROWS, needs_full_data
from simhelp import (
    ARC_GOLD, LETTERS, ROOT, arc_gold_path, ask, each_prompt_gets_through, final_answer, get, mc_prompt, post)

DEMO_GOLD = DEMO_DATA / "demo_gold.csv"


@pytest.fixture(scope="module")
def gold():
    return load_gold(arc_gold_path())


@pytest.fixture(scope="module")
def server(gold):
    with SimServer(ARC_GOLD, accuracy=0.8, seed=0) as sim:
        yield sim


@pytest.fixture(scope="module")
def client(server):
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as c:
        yield c


def test_openai_client_gets_logprobs_and_usage(client, gold):
    item = gold[1]
    reply = ask(client, mc_prompt(item), logprobs=True, top_logprobs=2, max_tokens=64, temperature=0.0, seed=1)
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and reply.model == "sim" and reply.id
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert final_answer(choice.message.content) in LETTERS[:len(item.options)]
    tokens = choice.logprobs.content
    assert "".join(t.token for t in tokens) == choice.message.content
    assert all(t.logprob < 0 and bytes(t.bytes).decode() == t.token for t in tokens)
    assert all(len(t.top_logprobs) == 2 for t in tokens)
    assert reply.usage.completion_tokens == len(tokens)
    assert reply.usage.prompt_tokens > 10
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_no_logprobs_unless_asked(client, gold):
    reply = ask(client, mc_prompt(gold[2]))
    assert reply.choices[0].logprobs is None


def test_langchain_chat_openai_keeps_logprobs(server, gold):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model="sim", base_url=server.base_url, api_key="x", logprobs=True, max_retries=0)
    message = chat.invoke(mc_prompt(gold[3]))
    content = message.response_metadata["logprobs"]["content"]
    assert content and all(entry["logprob"] < 0 for entry in content)
    assert final_answer(message.content) in LETTERS
    assert message.usage_metadata["output_tokens"] == len(content)


def test_accuracy_matches_setting(client, gold):
    items = gold[:300]
    right = sum(final_answer(ask(client, mc_prompt(item)).choices[0].message.content) == item.answer
                for item in items)
    accuracy = right / len(items)
    print(f"measured accuracy {accuracy:.3f} over {len(items)} questions (setting 0.8)")
    assert abs(accuracy - 0.8) < 0.07  # three binomial standard deviations


def test_wrong_answers_are_other_options(gold):
    with SimServer(ARC_GOLD, accuracy=0.0) as sim, openai.OpenAI(base_url=sim.base_url, api_key="x") as c:
        for item in gold[:40]:
            answer = final_answer(ask(c, mc_prompt(item)).choices[0].message.content)
            assert answer != item.answer and answer in LETTERS[:len(item.options)]


def test_same_prompt_same_reply_and_prompts_draw_independently(client, gold):
    prompt = mc_prompt(gold[4], step_by_step=True)
    first, second = (ask(client, prompt, logprobs=True).choices[0] for _ in range(2))
    assert first.message.content == second.message.content
    assert [t.logprob for t in first.logprobs.content] == [t.logprob for t in second.logprobs.content]
    with SimServer(ARC_GOLD, accuracy=0.5, seed=0) as sim, openai.OpenAI(base_url=sim.base_url, api_key="x") as c:
        base = [final_answer(ask(c, mc_prompt(item)).choices[0].message.content) for item in gold[:100]]
        reasoning = [final_answer(ask(c, mc_prompt(item, True)).choices[0].message.content) for item in gold[:100]]
    agree = sum(a == b for a, b in zip(base, reasoning)) / 100
    assert 0.2 < agree < 0.6  # independent draws at accuracy 0.5 agree about 0.5^2 + wrong coincidences


def test_seed_decides_the_replies(gold):
    def answers(seed):
        with SimServer(ARC_GOLD, accuracy=0.5, seed=seed) as sim, openai.OpenAI(base_url=sim.base_url, api_key="x") as c:
            return [ask(c, mc_prompt(item)).choices[0].message.content for item in gold[:40]]

    assert answers(7) == answers(7)
    assert answers(7) != answers(8)


def test_step_by_step_prompt_gets_reasoning_then_answer(client, gold):
    item = gold[5]
    text = ask(client, mc_prompt(item, step_by_step=True)).choices[0].message.content
    body, last = text.rsplit("\n", 1)
    assert "step by step" in body and len(body.split()) > 15 and "Answer:" not in body
    assert last.startswith("Answer: ") and final_answer(text) in LETTERS
    direct = ask(client, mc_prompt(item)).choices[0].message.content
    assert direct.startswith("Answer: ") and "\n" not in direct


def test_target_is_the_question_that_starts_last(gold):
    examples, target = gold[10:13], gold[13]
    context = "\n\n".join(f"Example {i}\nQuestion:\n{ex.question}\nOptions:\n"
                          + "\n".join(f"{LETTERS[j]}. {o}" for j, o in enumerate(ex.options))
                          + f"\nAnswer: {ex.answer}" for i, ex in enumerate(examples, 1))
    prompt = f"Here are solved examples.\n\n{context}\n\nNow answer this one.\n\n{mc_prompt(target)}"
    with SimServer(ARC_GOLD, accuracy=1.0) as sim, openai.OpenAI(base_url=sim.base_url, api_key="x") as c:
        system = {"role": "system", "content": "You are a careful expert."}
        reply = c.chat.completions.create(model="sim", messages=[system, {"role": "user", "content": prompt}])
        assert final_answer(reply.choices[0].message.content) == target.answer
        assert sim.unmatched == 0


@needs_full_data("ARC's one question that ends with another's is row 1755 (the other, row 1239)")
def test_index_tells_a_question_from_one_that_ends_with_it(gold):
    index = QuestionIndex(gold)
    short = next(item for item in gold if item.question == "Which statement is an observation?")
    long = next(item for item in gold if item.question.endswith("Which statement is an observation?")
                and item is not short)
    assert index.find(f"Example: {long.question}\nNow: {short.question}") is short
    assert index.find(f"Example: {short.question}\nNow: {long.question}") is long


def test_index_handles_duplicate_questions(gold):
    index = QuestionIndex(gold)
    twins = [item for item in gold if item.question == "Which is a chemical change?"]
    assert len(twins) == 2 and twins[0].answer != twins[1].answer
    for twin in twins:
        assert index.find(mc_prompt(twin)) is twin
    spaced = "Question:\n" + "  \n ".join(gold[0].question.split(" "))
    assert index.find(spaced) is gold[0]
    assert index.find("What is the airspeed velocity of an unladen swallow?") is None


def test_lookup_is_fast(gold):
    index = QuestionIndex(gold)
    prompts = [mc_prompt(item) * 3 for item in gold[:500]]
    start = time.perf_counter()
    found = [index.find(p) for p in prompts]
    per_prompt = (time.perf_counter() - start) / len(prompts)
    assert all(f is item for f, item in zip(found, gold[:500]))
    assert per_prompt < 0.005


def test_unknown_question_gets_an_option_letter(client):
    prompt = "Question:\nWhat colour is a ripe banana?\nOptions:\nA. blue\nB. yellow\nC. red\n"
    assert final_answer(ask(client, prompt).choices[0].message.content) in "ABC"


def test_error_rate_one_gives_http_500(gold):
    with SimServer(ARC_GOLD, error_rate=1.0) as sim:
        body = json.dumps({"model": "sim", "messages": [{"role": "user", "content": gold[0].question}]})
        status, payload = post(sim.base_url + "/chat/completions", body.encode())
        assert status == 500
        assert payload["error"]["type"] == "server_error" and payload["error"]["message"]
        with openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as c:
            with pytest.raises(openai.InternalServerError):
                ask(c, mc_prompt(gold[0]))
        assert sim.errors == 2 and sim.requests == 2


def test_errors_are_transient_per_attempt(gold):
    with SimServer(ARC_GOLD, error_rate=0.5) as sim, openai.OpenAI(base_url=sim.base_url, api_key="x",
                                                                   max_retries=0) as c:
        each_prompt_gets_through(c, gold[:10], tries=10)
        assert sim.errors > 0


def test_malformed_rate_one_gives_no_answer_line(gold):
    with SimServer(ARC_GOLD, malformed_rate=1.0) as sim, openai.OpenAI(base_url=sim.base_url, api_key="x") as c:
        for item in gold[:20]:
            text = ask(c, mc_prompt(item, step_by_step=item is gold[0])).choices[0].message.content
            assert "answer:" not in text.lower() and text.strip()
        assert sim.malformed == 20


def test_bad_requests_get_400(server):
    url = server.base_url + "/chat/completions"
    cases = [b"{not json", b"[]", json.dumps({"model": "sim"}).encode(),
             json.dumps({"model": "sim", "messages": []}).encode(),
             json.dumps({"model": "sim", "messages": [{"role": "user", "content": "hi"}], "n": 2}).encode(),
             json.dumps({"model": "sim", "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode(),
             json.dumps({"model": "sim", "messages": [{"role": "user", "content": "hi"}],
                         "top_logprobs": 2}).encode(),
             json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()]
    for body in cases:
        status, payload = post(url, body)
        assert status == 400, body
        assert payload["error"]["type"] == "invalid_request_error" and payload["error"]["message"]


def test_max_tokens_cuts_the_reply(client, gold):
    choice = ask(client, mc_prompt(gold[6], step_by_step=True), max_tokens=5).choices[0]
    assert choice.finish_reason == "length" and len(choice.message.content.split()) == 5


def test_models_and_health(server):
    status, models = get(server.base_url + "/models")
    assert status == 200 and models["data"][0]["id"] == "sim"
    status, health = get(server.base_url.removesuffix("/v1") + "/health")
    assert status == 200 and health["status"] == "ok" and health["questions"] == ARC_ROWS


def test_concurrent_requests_overlap(gold):
    async def run(url):
        async with openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as c:
            start = time.perf_counter()
            replies = await asyncio.gather(*(
                c.chat.completions.create(model="sim", messages=[{"role": "user", "content": mc_prompt(item)}],
                                          logprobs=True) for item in gold[:50]))
            return time.perf_counter() - start, replies

    with SimServer(ARC_GOLD, latency_ms=100) as sim:
        elapsed, replies = asyncio.run(run(sim.base_url))
        assert sim.requests == 50 and sim.in_flight == 0
        overlapping = sim.max_in_flight
    print(f"50 concurrent requests at 100 ms latency took {elapsed:.2f} s (serial: 5 s), "
          f"{overlapping} in flight at most")
    assert len(replies) == 50 and all(final_answer(r.choices[0].message.content) for r in replies)
    assert overlapping >= 10 and elapsed < 4.5  # the client's own cost dominates the wall time


def _nll_by_correctness(calibration, items):
    with SimServer(ARC_GOLD, accuracy=0.5, calibration=calibration, seed=3) as sim, \
            openai.OpenAI(base_url=sim.base_url, api_key="x") as c:
        right, wrong = [], []
        for item in items:
            choice = ask(c, mc_prompt(item, step_by_step=True), logprobs=True).choices[0]
            logprobs = [t.logprob for t in choice.logprobs.content]
            nll = -sum(logprobs) / len(logprobs)
            (right if final_answer(choice.message.content) == item.answer else wrong).append(nll)
    auc = sum((r < w) + 0.5 * (r == w) for r in right for w in wrong) / (len(right) * len(wrong))
    return sum(right) / len(right), sum(wrong) / len(wrong), auc


def test_calibration_separates_right_from_wrong(gold):
    right, wrong, auc = _nll_by_correctness(0.8, gold[:200])
    print(f"calibration 0.8: mean NLL right {right:.3f}, wrong {wrong:.3f}, AUC {auc:.3f}")
    assert right < wrong and 0.8 < auc < 0.97
    right, wrong, auc = _nll_by_correctness(0.0, gold[:200])
    print(f"calibration 0.0: mean NLL right {right:.3f}, wrong {wrong:.3f}, AUC {auc:.3f}")
    assert 0.4 < auc < 0.6


def test_judge_prompt_gets_a_verdict(gold):
    item = gold[0]
    wrong = next(letter for letter in LETTERS[:len(item.options)] if letter != item.answer)
    with SimServer(ARC_GOLD, accuracy=1.0) as sim, openai.OpenAI(base_url=sim.base_url, api_key="x") as c:
        for label, verdict in ((item.answer, "N"), (wrong, "Y")):
            prompt = (f"{mc_prompt(item)}\nGiven answer (may be wrong): {label}\n"
                      "Finish with \"Answer: \", then Y if the given answer is wrong, or N if it is right.")
            assert final_answer(ask(c, prompt).choices[0].message.content) == verdict


def test_stop_is_clean_with_open_connections(gold):
    sim = SimServer(ARC_GOLD)
    url = sim.start()
    c = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
    ask(c, mc_prompt(gold[0]))  # leaves a keep-alive connection open
    start = time.perf_counter()
    sim.stop()
    assert time.perf_counter() - start < 2
    with pytest.raises(openai.APIConnectionError):
        ask(c, mc_prompt(gold[0]))
    c.close()
    sim.stop()  # a second stop does nothing


def test_bad_gold_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        SimServer(tmp_path / "missing.csv")
    cases = {
        "no_answer.csv": ("question\nWhat?\n", "missing column 'answer'"),
        "bad_options.csv": ('question,answer,options\nWhat?,A,"[oops"\n', "not a JSON list"),
        "bad_letter.csv": ('question,answer,options\nWhat?,E,"[""x"", ""y""]"\n', "not one of the options"),
        "empty.csv": ("", "empty"),
        "bad.jsonl": ('{"question": "What?", "answer": "x"}\nnot json\n', "not valid JSON"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(InputError, match=message) as info:
            load_gold(path)
        assert name in str(info.value)
    with pytest.raises(ConfigError):
        SimServer(DEMO_GOLD, accuracy=1.5)


def test_jsonl_gold_with_text_answers(tmp_path):
    path = tmp_path / "gold.jsonl"
    rows = [{"question": "How many legs has a spider?", "answer": "8"},
            {"question": "Name the closest star to Earth.", "answer": "the Sun"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [(i.answer, i.options) for i in load_gold(path)] == [("8", None), ("the Sun", None)]
    choice = tmp_path / "choice.jsonl"
    choice.write_text(json.dumps({"question": "Pick the even number.", "answer": "four", "options": ["three", "four"]}))
    assert [(i.answer, i.options) for i in load_gold(choice)] == [("B", ("three", "four"))]
    with SimServer(path, accuracy=0.0) as sim, openai.OpenAI(base_url=sim.base_url, api_key="x") as c:
        spider = final_answer(ask(c, "Question: How many legs has a spider? Step by step.").choices[0].message.content)
        star = final_answer(ask(c, "Question: Name the closest star to Earth.").choices[0].message.content)
    assert spider != "8" and float(spider) != 8
    assert star and star != "the Sun"


def test_cli_serves_until_interrupted(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    bad = subprocess.run([sys.executable, "-m", "robustft.sim", "--gold", str(tmp_path / "none.csv")],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert bad.returncode == 2 and "none.csv" in bad.stderr and "Traceback" not in bad.stderr
    # A suite started as a shell's background job inherits SIGINT ignored (POSIX), and a Python
    # started so never turns it into KeyboardInterrupt: the server gets SIGINT's default back.
    process = subprocess.Popen([sys.executable, "-m", "robustft.sim", "--gold", str(DEMO_GOLD), "--accuracy", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        status, health = get(url.removesuffix("/v1") + "/health")
        assert status == 200 and health["status"] == "ok" and health["questions"] == 80
        assert health["paths"] == {"/health": 1}  # counters readable from another process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=10)
        finally:
            if process.poll() is None:  # the test fails below; the server is not left behind
                process.kill()
                process.wait()
    assert code == 0


def test_demo_data_is_the_gold_with_30_percent_noise():
    gold_rows, noisy_rows = load_gold(DEMO_GOLD), load_gold(DEMO_DATA / "demo.csv")
    assert len(gold_rows) == len(noisy_rows) == 80
    assert [g.id for g in gold_rows] == [f"demo-{n:03d}" for n in range(1, 81)]
    assert all(len(g.options) == 4 for g in gold_rows)
    assert {letter: sum(g.answer == letter for g in gold_rows) for letter in "ABCD"} == dict.fromkeys("ABCD", 20)
    changed = [(g, n) for g, n in zip(gold_rows, noisy_rows) if g.answer != n.answer]
    assert len(changed) == 24
    assert all((g.question, g.options) == (n.question, n.options) for g, n in zip(gold_rows, noisy_rows))
    readme = (DEMO_DATA / "README.md").read_text()
    assert all(f"| {g.id} | {g.answer} | {n.answer} |" in readme for g, n in changed)


def test_demo_questions_are_all_found():
    items = load_gold(DEMO_GOLD)
    with SimServer(DEMO_GOLD, accuracy=1.0) as sim, openai.OpenAI(base_url=sim.base_url, api_key="x") as c:
        assert all(final_answer(ask(c, mc_prompt(item)).choices[0].message.content) == item.answer
                   for item in items)
        assert sim.unmatched == 0


def test_judge_reads_what_y_means_and_which_answer_is_given(gold):
    item = gold[0]
    wrong = next(letter for letter in LETTERS[:len(item.options)] if letter != item.answer)
    block = f"Question:\n{item.question}\nOptions:\n" + "\n".join(
        f"{LETTERS[i]}. {o}" for i, o in enumerate(item.options))
    variants = [  # (prompt for a given label, whether Y means "the given answer is wrong")
        (lambda label: f"{block}\nGiven answer (may be wrong): {label}\nDirect prediction: {wrong}\n"
                       "Finish with \"Answer: \", then Y if the given answer is wrong, or N if it is right.", True),
        (lambda label: f"Is the given answer correct? Reply Y or N.\n\n{block}\nThe given answer: ({label})\n", False),
        (lambda label: f"{block}\nProposed label: {label}\nAnswer Y if this label is right and N if it is not.", False),
        (lambda label: f"{block}\nGiven answer: {label}\nAnswer Y or N: is the given answer mislabeled?", True),
        (lambda label: f"{block}\nGiven answer: {item.options[LETTERS.index(label)]}\nY = wrong, N = right.", True),
    ]
    with SimServer(ARC_GOLD, accuracy=1.0) as sim, openai.OpenAI(base_url=sim.base_url, api_key="x") as c:
        for make, y_means_wrong in variants:
            for label, is_right in ((item.answer, True), (wrong, False)):
                verdict = final_answer(ask(c, make(label)).choices[0].message.content)
                assert verdict == ("Y" if is_right != y_means_wrong else "N"), make(label)
        assert sim.unmatched == 0


def test_a_taken_port_is_a_clear_error():
    with SimServer(DEMO_GOLD) as first:
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            SimServer(DEMO_GOLD, port=first.port).start()
        assert get(first.base_url + "/models")[0] == 200


def test_wrong_routes_methods_and_sizes_get_json_errors():
    import socket

    with SimServer(DEMO_GOLD) as sim:
        assert post(sim.base_url + "/completions", b"{}")[0] == 404
        assert post(sim.base_url + "/models", b"{}")[0] == 405
        status, payload = get_error(sim.base_url + "/chat/completions")
        assert status == 405 and "POST" in payload["error"]["message"]
        with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as raw:
            raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 20000000\r\n\r\n{")
            head = raw.recv(65536).split(b"\r\n", 1)[0]
        assert head == b"HTTP/1.1 413 Request Entity Too Large"
        assert sim.paths == {"/v1/completions": 1, "/v1/models": 1, "/v1/chat/completions": 2}


def get_error(url: str) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())

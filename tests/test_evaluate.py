"""`robustft eval`: accuracy of models whose answers are known, through a server and locally."""

from __future__ import annotations

import json
import socket

import pytest

from robustft.backends.fake import FakeChatModel
from robustft.cli import main
from robustft.config import load_config
from robustft.data import load_dataset, read_jsonl
from robustft.errors import ConfigError, UserError
from robustft.finetune.evaluate import default_out_dir, evaluate
from robustft.prompts import PromptLibrary
from robustft.sim import DEMO_DATA, SimServer

GOLD = DEMO_DATA / "demo_gold.csv"


@pytest.mark.parametrize("accuracy", [1.0, 0.0])
def test_server_path_scores_a_simulated_expert_of_known_accuracy(tmp_path, accuracy):
    with SimServer(GOLD, accuracy=accuracy, seed=3) as sim:
        result = evaluate(load_config(), data=GOLD, model="sim", base_url=sim.base_url, out=tmp_path / "ev",
                          limit=20, progress=False)
        prompts_seen = sim.requests
    assert result.accuracy == accuracy and result.result["total"] == 20 and prompts_seen == 20
    saved = json.loads((tmp_path / "ev" / "result.json").read_text())
    assert saved["accuracy"] == accuracy and saved["provider"] == "openai" and saved["eval"]["temperature"] == 0.0
    predictions = read_jsonl(tmp_path / "ev" / "predictions.jsonl")
    gold = {s.id: s.label for s in load_dataset(load_config().data, GOLD).samples}
    assert [p["id"] for p in predictions] == list(gold)[:20]  # dataset order, whatever order they finished in
    for p in predictions:
        assert p["label"] == gold[p["id"]] and p["response"].rstrip().endswith(f"Answer: {p['prediction']}")
        assert p["correct"] == (p["prediction"] == p["label"]) == (accuracy == 1.0)


def test_every_sample_gets_the_question_prompt_and_the_checker_decides(tmp_path):
    config = load_config(None, {"model.max_retries": 0})
    dataset = load_dataset(config.data, GOLD)
    samples = dataset.samples[:6]
    prompts = PromptLibrary()
    by_prompt = {prompts.question_prompt(s.question, s.options, dataset.task): s for s in samples}

    def reply(messages):
        assert len(messages) == 1 and messages[0]["role"] == "user"
        s = by_prompt[messages[0]["content"]]
        index = samples.index(s)
        if index == 4:
            return "I am not sure."  # no answer line: wrong, counted as unanswered
        if index == 5:
            return RuntimeError("boom")  # a failing call: wrong, counted as failed
        wrong = "A" if s.label != "A" else "B"
        return f"Answer: {s.label if index % 2 == 0 else wrong}"

    fake = FakeChatModel(lambda m: _raise_or_return(reply(m)))
    result = evaluate(config, data=GOLD, model="fake-model", base_url="http://unused/v1", limit=6,
                      chat_model=fake, write=False, progress=False)
    r = result.result
    assert (r["correct"], r["total"], r["unanswered"], r["failed"]) == (2, 6, 1, 1)
    assert r["accuracy"] == pytest.approx(2 / 6)
    assert [p["correct"] for p in result.predictions] == [True, False, True, False, False, False]
    assert "boom" in result.predictions[5]["error"] and result.predictions[5]["response"] is None
    assert len(fake.calls) == 6


def _raise_or_return(value):
    if isinstance(value, Exception):
        raise value
    return value


def test_local_path_with_adapter_matches_an_independent_computation(tmp_path, tiny_model_dir, toy_mc_csv):
    """The local backend with an adapter answers as the PEFT model itself does, decoding greedily."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from robustft.answers import extract_answer
    from robustft.finetune.train import train

    config = load_config(None, {"train.max_steps": 6, "train.learning_rate": 5e-2, "train.batch_size": 4,
                                "train.gradient_accumulation_steps": 1, "eval.max_tokens": 6,
                                "eval.batch_size": 1})
    adapter = tmp_path / "adapter"
    train(config, data=toy_mc_csv, model=str(tiny_model_dir), out=adapter, progress=False)
    result = evaluate(config, data=toy_mc_csv, model=str(tiny_model_dir), adapter=adapter, limit=4, progress=False)
    assert result.out_dir == adapter / "eval-toy"
    assert (adapter / "eval-toy" / "result.json").is_file()

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), str(adapter)).eval()
    dataset = load_dataset(config.data, toy_mc_csv)
    prompts = PromptLibrary()
    for sample, predicted in zip(dataset.samples[:4], result.predictions):
        messages = [{"role": "user", "content": prompts.question_prompt(sample.question, sample.options,
                                                                         dataset.task)}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id)
        expected = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        assert predicted["response"] == expected
        assert predicted["prediction"] == extract_answer(expected, dataset.task, sample.options)
        assert predicted["correct"] == (predicted["prediction"] == sample.label)


def test_cli_eval_prints_the_accuracy(tmp_path, capsys):
    with SimServer(GOLD, accuracy=1.0) as sim:
        code = main(["eval", "--data", str(GOLD), "--model", "sim", "--base-url", sim.base_url, "--limit", "5",
                     "--out", str(tmp_path / "ev"), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "accuracy: 1.0000 (5/5 correct)" in out and str(tmp_path / "ev" / "predictions.jsonl") in out


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_errors_say_what_to_fix(tmp_path, capsys):
    config_file = tmp_path / "c.yaml"
    config_file.write_text("model: {max_retries: 0, timeout_s: 5}\n")
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    assert main(["eval", "--config", str(config_file), "--data", str(GOLD), "--model", "m", "--base-url", url,
                 "--quiet", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "did not answer the first test question" in err and "model.base_url (--base-url)" in err

    assert main(["eval", "--data", str(GOLD), "--model", "m", "--base-url", url, "--adapter", str(tmp_path)]) == 2
    assert "--lora-modules" in capsys.readouterr().err
    assert main(["eval", "--data", str(GOLD), "--model", "some/model", "--adapter", str(tmp_path)]) == 2
    assert "adapter_config.json" in capsys.readouterr().err
    assert main(["eval", "--data", str(GOLD)]) == 2
    assert "--model" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="no test data"):
        evaluate(load_config(), model="m", base_url=url)


def test_default_output_directory():
    assert str(default_out_dir("data/test.csv", "m", "runs/adapter")) == "runs/adapter/eval-test"
    assert str(default_out_dir("test.csv", "meta-llama/Llama-3.1-8B-Instruct", None)) == \
        "runs/eval/Llama-3.1-8B-Instruct-test"


def test_user_error_type_for_unreachable_server(tmp_path):
    config = load_config(None, {"model.max_retries": 0, "model.timeout_s": 5})
    with pytest.raises(UserError):
        evaluate(config, data=GOLD, model="m", base_url=f"http://127.0.0.1:{_closed_port()}/v1", limit=2,
                 write=False, progress=False)

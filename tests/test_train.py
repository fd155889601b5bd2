"""`robustft train`: the fine-tuning set, the masked labels TRL builds, and LoRA training on a tiny model."""

from __future__ import annotations

import json
import shutil

import pytest

from robustft.cli import main
from robustft.config import DataConfig, RobustFTConfig, TrainConfig, load_config
from robustft.data import write_jsonl
from robustft.errors import UserError
from robustft.prompts import PromptLibrary
from robustft.finetune.train import (STATE_FILE, build_trainer, completion_text, load_training_set, sft_config, sft_examples,
                            train)

FAST = {"train.learning_rate": 1e-2, "train.batch_size": 4, "train.gradient_accumulation_steps": 1,
        "train.logging_steps": 1, "train.warmup_ratio": 0.0}


def fast_config(**overrides) -> RobustFTConfig:
    return load_config(None, {**FAST, **overrides})


def denoised_records() -> list[dict]:
    """Records in the documented denoised.jsonl shape: `label` is what to train on."""
    return [
        {"id": "a", "question": "Shares went up. Rise or fall?", "options": ["rise", "fall"], "task": "multiple_choice",
         "label": "A", "original_label": "B", "source": "relabeled", "score": 0.3},
        {"id": "b", "question": "Shares went down. Rise or fall?", "options": ["rise", "fall"],
         "task": "multiple_choice", "label": "B", "original_label": "B", "source": "clean", "score": None},
    ]


def test_defaults_are_the_papers_and_reach_trl(tmp_path):
    cfg = TrainConfig()
    assert (cfg.lora_r, cfg.target_modules, cfg.learning_rate, cfg.epochs, cfg.lr_scheduler) == (
        8, "all-linear", 1e-4, 2.0, "cosine")
    assert cfg.warmup_ratio > 0
    args = sft_config(cfg, tmp_path)
    assert args.learning_rate == 1e-4 and args.num_train_epochs == 2.0
    assert args.lr_scheduler_type == "cosine"
    assert getattr(args, "warmup_ratio", None) == cfg.warmup_ratio or args.warmup_steps == cfg.warmup_ratio
    assert args.completion_only_loss is True and args.packing is False and args.max_steps == -1
    with pytest.raises(Exception):
        TrainConfig(lora_rank=4)  # unknown keys are errors, as in every config section


def test_denoised_file_trains_on_its_label_with_the_question_prompt(tmp_path):
    path = tmp_path / "denoised.jsonl"
    write_jsonl(path, denoised_records())
    dataset = load_training_set(DataConfig(), path)
    assert [s.label for s in dataset.samples] == ["A", "B"] and dataset.task == "multiple_choice"
    prompts = PromptLibrary()
    examples = sft_examples(dataset, prompts)
    first = dataset.samples[0]
    assert examples[0]["prompt"] == [{"role": "user", "content": prompts.question_prompt(
        first.question, first.options, "multiple_choice")}]
    assert examples[0]["completion"] == [{"role": "assistant", "content": "Answer: A"}]
    assert completion_text("42") == "Answer: 42"


def test_prompt_tokens_carry_no_loss_and_match_what_eval_sends(tmp_path, tiny_model_dir, toy_mc_csv):
    from robustft.backends.transformers import TransformersChatModel
    from robustft.config import ModelConfig

    config = fast_config()
    dataset = load_training_set(config.data, toy_mc_csv)
    examples = sft_examples(dataset, PromptLibrary())
    trainer = build_trainer(examples, str(tiny_model_dir), config.train, tmp_path / "out", progress=False)
    tokenizer = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    chat = TransformersChatModel(ModelConfig(provider="transformers", name=str(tiny_model_dir), device="cpu"))
    try:
        for row, example in enumerate(examples[:4]):
            ids, labels = batch["input_ids"][row], batch["labels"][row]
            real = batch["attention_mask"][row].bool()
            ids, labels = ids[real].tolist(), labels[real].tolist()
            prompt_ids = chat._encode(example["prompt"])
            # The trained prompt is token for token what the local backend sends at eval time ...
            assert ids[:len(prompt_ids)] == prompt_ids
            # ... and none of it carries loss; every completion token does.
            assert all(label == -100 for label in labels[:len(prompt_ids)])
            assert labels[len(prompt_ids):] == ids[len(prompt_ids):]
            completion = tokenizer.decode(labels[len(prompt_ids):])
            assert completion.startswith(example["completion"][0]["content"])
            # The tiny template closes a turn without EOS, so EOS is trained explicitly: the model learns to stop.
            assert tokenizer.eos_token_id in labels[len(prompt_ids):]
    finally:
        chat.close()


def test_a_model_without_chat_template_trains_on_the_plain_transcript(tmp_path, tiny_model_dir, toy_mc_csv):
    from robustft.backends.transformers import TransformersChatModel
    from robustft.config import ModelConfig

    plain = tmp_path / "plain-model"
    shutil.copytree(tiny_model_dir, plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    tok_config = json.loads((plain / "tokenizer_config.json").read_text())
    tok_config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(tok_config))

    config = fast_config()
    examples = sft_examples(load_training_set(config.data, toy_mc_csv), PromptLibrary())
    trainer = build_trainer(examples[:2], str(plain), config.train, tmp_path / "out", progress=False)
    assert not trainer.processing_class.chat_template
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    chat = TransformersChatModel(ModelConfig(provider="transformers", name=str(plain), device="cpu"))
    try:
        prompt_ids = chat._encode(examples[0]["prompt"])
    finally:
        chat.close()
    assert ids[:len(prompt_ids)] == prompt_ids and set(labels[:len(prompt_ids)]) == {-100}
    completion = trainer.processing_class.decode(labels[len(prompt_ids):])
    assert completion == " Answer: A" + trainer.processing_class.eos_token


@pytest.mark.slow
def test_training_changes_the_adapter_and_lowers_the_loss(tmp_path, tiny_model_dir, toy_mc_csv):
    from safetensors.torch import load_file

    out = tmp_path / "adapter"
    result = train(fast_config(**{"train.max_steps": 24, "train.save_steps": 12}), data=toy_mc_csv,
                   model=str(tiny_model_dir), out=out, progress=False)
    losses = result.summary["losses"]
    assert len(losses) >= 20
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.1, losses
    weights = load_file(str(out / "adapter_model.safetensors"))
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())  # LoRA B starts at zero
    adapted = {k.split(".lora_")[0].split(".")[-1] for k in lora_b}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= adapted  # all-linear
    for name in ("adapter_config.json", "tokenizer.json", "train_config.json", "train_summary.json"):
        assert (out / name).is_file(), name
    resolved = json.loads((out / "train_config.json").read_text())
    assert resolved["train"]["lora_r"] == 8 and resolved["train"]["max_steps"] == 24 and resolved["samples"] == 24
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8

    again = train(fast_config(**{"train.max_steps": 24, "train.save_steps": 12}), data=toy_mc_csv,
                  model=str(tiny_model_dir), out=out, progress=False)
    assert again.skipped and again.summary["steps"] == 24
    with pytest.raises(UserError, match="other data, model or settings"):
        train(fast_config(**{"train.max_steps": 5}), data=toy_mc_csv, model=str(tiny_model_dir), out=out,
              progress=False)


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path, tiny_model_dir, toy_mc_csv):
    config = fast_config(**{"train.max_steps": 4, "train.save_steps": 2, "train.save_total_limit": None})
    out = tmp_path / "adapter"
    first = train(config, data=toy_mc_csv, model=str(tiny_model_dir), out=out, progress=False)
    assert first.summary["steps"] == 4 and first.summary["resumed_from"] is None
    # Make it look stopped after step 2: the last checkpoint gone, the run not marked done.
    shutil.rmtree(out / "checkpoint-4")
    state = json.loads((out / STATE_FILE).read_text())
    (out / STATE_FILE).write_text(json.dumps({**state, "status": "running"}))
    resumed = train(config, data=toy_mc_csv, model=str(tiny_model_dir), out=out, progress=False)
    assert not resumed.skipped
    assert resumed.summary["resumed_from"].endswith("checkpoint-2") and resumed.summary["steps"] == 4


def test_cli_train_writes_an_adapter_from_denoised_jsonl(tmp_path, tiny_model_dir, capsys):
    path = tmp_path / "denoised.jsonl"
    write_jsonl(path, denoised_records() * 1)
    out = tmp_path / "adapter"
    code = main(["train", "--data", str(path), "--model", str(tiny_model_dir), "--out", str(out),
                 "--max-steps", "2", "--batch-size", "2", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "trained 2 steps on 2 samples" in printed and f"--adapter {out}" in printed
    assert (out / "adapter_model.safetensors").is_file()


def test_cli_train_errors_name_the_fix(tmp_path, tiny_model_dir, toy_mc_csv, capsys):
    assert main(["train", "--data", str(toy_mc_csv), "--out", str(tmp_path / "o")]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "missing.csv"), "--model", str(tiny_model_dir),
                 "--out", str(tmp_path / "o")]) == 2
    assert "file not found" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["train", "--data", str(toy_mc_csv), "--model", str(tiny_model_dir), "--out", str(foreign)]) == 2
    assert "not a `robustft train` output directory" in capsys.readouterr().err
    assert main(["train", "--data", str(toy_mc_csv), "--model", str(tmp_path / "nomodel"),
                 "--out", str(tmp_path / "o2")]) == 2
    assert "--model" in capsys.readouterr().err


@pytest.mark.slow
def test_accelerate_launch_single_process(tmp_path, tiny_model_dir, toy_mc_csv):
    """`accelerate launch -m robustft train ...` (the multi-GPU recipe), here with one CPU process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    launcher = Path(sys.executable).parent / "accelerate"
    out = tmp_path / "adapter"
    done = subprocess.run(
        [str(launcher), "launch", "--cpu", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "-m", "robustft", "train", "--data", str(toy_mc_csv), "--model",
         str(tiny_model_dir), "--out", str(out), "--max-steps", "2", "--quiet"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained 2 steps on 24 samples" in done.stdout
    assert (out / "adapter_model.safetensors").is_file()

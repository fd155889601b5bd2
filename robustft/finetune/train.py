"""Supervised fine-tuning on a fine-tuning set with TRL's `SFTTrainer` and a PEFT LoRA adapter.

    train(config, data=..., model=..., out=...) -> TrainResult

Each sample becomes one conversational prompt-completion pair:

    prompt      [{"role": "user", "content": <the base expert's question prompt>}]
    completion  [{"role": "assistant", "content": "Answer: B"}]

The prompt is `PromptLibrary.question_prompt`, the one `robustft eval` and the base expert send, so
the model is trained on exactly what it is later asked. A chat sample's earlier turns (system
prompt, earlier user and assistant turns) come first, as the experts saw them.

Open-ended responses (task `open`) train a model to respond as the data does: the prompt is the
conversation as written (its system prompt and turns, ending with the last user turn; a table row:
its question as one user message), and the completion is the response itself.

TRL renders both with the tokenizer's chat template and, with `completion_only_loss`, gives every
prompt token the label -100: only the completion carries loss. A model without a chat template
gets the plain transcript the local backend sends it (`robustft.backends.hf.plain_transcript`:
`user: ...\\nassistant:`) as a string prompt, and the completion ` Answer: B`.

Input: `denoised.jsonl` from `robustft denoise` (its `label` column is the label to train on, its
`conversation` a chat sample's turns), or any dataset `robustft.data.load_dataset` reads (CSV,
JSON Lines, chat formats, a Hugging Face dataset folder).

`out` receives the adapter (`adapter_config.json`, `adapter_model.safetensors`), the tokenizer,
`train_config.json` (the resolved settings), `train_summary.json` (steps, losses, time) and
`checkpoint-N/` folders while training. Started again with the same `out`, data and settings, it
resumes from the last checkpoint, or returns at once when training had finished. Several GPUs:
`accelerate launch -m robustft train ...` (one process per GPU, data-parallel; only the main
process writes files).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..backends.hf import load_model, plain_transcript, resolve_dtype
from ..config import DataConfig, RobustFTConfig, TrainConfig
from ..data import Dataset, Sample, load_dataset, read_jsonl
from ..data.records import JSONL_SUFFIXES
from ..errors import ConfigError, InputError, UserError
from ..files import write_json
from ..prompts import PromptLibrary
from ..tasks import find_task

__all__ = ["TrainResult", "completion_text", "load_training_set", "sft_examples", "train", "build_trainer",
           "is_denoised_file"]

CONFIG_FILE = "train_config.json"
SUMMARY_FILE = "train_summary.json"
STATE_FILE = "robustft_train.json"


@dataclass
class TrainResult:
    out_dir: Path
    summary: dict[str, Any]
    skipped: bool = False                 # the run had already finished: nothing was trained
    log_history: list[dict] = field(default_factory=list)


# --- the fine-tuning set ---------------------------------------------------------------------


def completion_text(label: str, task: str | None = None) -> str:
    """The answer in the form every prompt asks for; an open-ended response as it is."""
    return label if task == "open" else f"Answer: {label}"


def is_denoised_file(path: Path) -> bool:
    """A `denoised.jsonl` written by `robustft denoise`: records with `label` and `original_label`."""
    if path.is_dir() or path.suffix.lower() not in JSONL_SUFFIXES:
        return False
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    first = json.loads(line)
                    return isinstance(first, dict) and "label" in first and "original_label" in first
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return False


def load_training_set(data: DataConfig, path: str | Path) -> Dataset:
    """The samples to train on. In a `denoised.jsonl` the label column is `label` (the denoised
    label) and the task is the one denoise recorded; any other file is read with `data`'s columns."""
    path = Path(path)
    if is_denoised_file(path):
        first = read_jsonl(path)[0]
        update: dict[str, Any] = {"answer_column": "label", "id_column": "id", "question_column": "question",
                                  "options_column": "options"}
        if data.task == "auto" and find_task(first.get("task")) is not None:
            update["task"] = first["task"]
        data = data.model_copy(update=update)
        dataset = load_dataset(data, path)
        for sample in dataset.samples:
            sample.conversation = _recorded_conversation(sample, path)
        return dataset
    return load_dataset(data, path)


def _recorded_conversation(sample: Sample, path: Path) -> list[dict[str, str]] | None:
    """The `conversation` denoise recorded for a chat sample (None for a table row)."""
    turns = sample.extra.pop("conversation", None)
    if turns is None:
        return None
    if not (isinstance(turns, list) and turns and all(
            isinstance(t, dict) and isinstance(t.get("role"), str) and isinstance(t.get("content"), str)
            for t in turns)):
        raise InputError("'conversation' is not a list of {role, content} turns", path=path, row=sample.row + 1,
                         field="conversation", fix="keep the conversation as robustft denoise wrote it, or remove "
                                                   "the field to train on the question alone")
    return [{"role": t["role"], "content": t["content"]} for t in turns]


def _prompt_messages(prompts: PromptLibrary, sample: Sample, task: str, instruction: str) -> list[dict[str, str]]:
    turns = sample.conversation or [{"role": "user", "content": sample.question}]
    if task == "open":
        return [dict(t) for t in turns]
    last = {"role": "user", "content": prompts.question_prompt(sample.question, sample.options, task, instruction)}
    return [*(dict(t) for t in turns[:-1]), last]


def sft_examples(dataset: Dataset, prompts: PromptLibrary, instruction: str = "") -> list[dict[str, Any]]:
    """Conversational prompt-completion records (TRL's format), one per sample, with its `id`."""
    return [{"id": s.id,
             "prompt": _prompt_messages(prompts, s, dataset.task, instruction),
             "completion": [{"role": "assistant", "content": completion_text(s.label, dataset.task)}]}
            for s in dataset.samples]


def _for_tokenizer(examples: list[dict[str, Any]], tokenizer: Any) -> list[dict[str, Any]]:
    """The records as the trainer gets them for this tokenizer.

    With a chat template: conversational, and when the template closes an assistant turn without
    the end-of-sequence token (so a model would never learn to stop), that token is appended to the
    completion. Without one: the local backend's plain transcript as a string prompt; TRL appends
    the end-of-sequence token to string completions itself.
    """
    if getattr(tokenizer, "chat_template", None):
        suffix = "" if _template_closes_with_eos(tokenizer) else tokenizer.eos_token
        return [{"prompt": e["prompt"],
                 "completion": [{"role": "assistant", "content": e["completion"][0]["content"] + suffix}]}
                for e in examples]
    return [{"prompt": plain_transcript(e["prompt"]), "completion": " " + e["completion"][0]["content"]}
            for e in examples]


def _template_closes_with_eos(tokenizer: Any) -> bool:
    """Whether the chat template ends an assistant turn with the end-of-sequence token (or has no
    such token, or renders in a way this probe cannot read: then it is trusted to close the turn)."""
    eos = tokenizer.eos_token
    if not eos:
        return True
    try:
        probe = tokenizer.apply_chat_template(
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Answer: A"}], tokenize=False)
    except Exception:  # noqa: BLE001 - a template with its own rules (e.g. a required system turn)
        return True
    at = probe.rfind("Answer: A")
    return at < 0 or eos in probe[at:]


# --- settings --------------------------------------------------------------------------------


def _use_gpu(cfg: TrainConfig) -> bool:
    import torch

    return cfg.device == "auto" and torch.cuda.is_available()


def _dtype(cfg: TrainConfig) -> Any:
    import torch

    if cfg.dtype == "auto":
        if _use_gpu(cfg) and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return resolve_dtype(cfg.dtype, "train.dtype")


def sft_config(cfg: TrainConfig, out_dir: Path, *, progress: bool = True) -> Any:
    """TRL's `SFTConfig` for these settings (every value that matters set explicitly)."""
    import torch
    from trl import SFTConfig

    dtype = _dtype(cfg)
    names = {f.name for f in dataclasses.fields(SFTConfig)}
    # transformers 5 renamed these: a float warmup_steps below 1 is the ratio; gradient -> activation checkpointing.
    version_dependent = {
        ("warmup_ratio" if "warmup_ratio" in names else "warmup_steps"): cfg.warmup_ratio,
        ("activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"):
            cfg.gradient_checkpointing,
    }
    return SFTConfig(
        output_dir=str(out_dir),
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        lr_scheduler_type=cfg.lr_scheduler,
        **version_dependent,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,
        completion_only_loss=True,
        packing=False,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=not _use_gpu(cfg),
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        report_to="none",
        disable_tqdm=not progress,
        dataset_num_proc=None,
    )


def lora_config(cfg: TrainConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.target_modules, bias="none", task_type="CAUSAL_LM")


def build_trainer(examples: list[dict[str, Any]], model_name: str, cfg: TrainConfig, out_dir: Path, *,
                  progress: bool = True, callbacks: list | None = None) -> Any:
    """An `SFTTrainer` ready to train `model_name` with a fresh LoRA adapter on `examples`
    (from `sft_examples`). Exposed so tests can inspect the collated batches."""
    from datasets import Dataset as HFDataset
    from trl import SFTTrainer

    if not progress:
        quiet_libraries()
    if not examples:
        raise InputError("the fine-tuning set is empty", fix="check the data file (a denoise run that kept no "
                         "sample writes an empty denoised.jsonl)")
    tokenizer, model = load_model(model_name, dtype=_dtype(cfg), setting="train.model")
    records = _for_tokenizer(examples, tokenizer)
    dataset = HFDataset.from_list(records)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        trainer = SFTTrainer(model=model, args=sft_config(cfg, out_dir, progress=progress), train_dataset=dataset,
                             processing_class=tokenizer, peft_config=lora_config(cfg), callbacks=callbacks)
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # no per-step log lines either
    return trainer


def quiet_libraries() -> None:
    """No progress bars from datasets and transformers (weights loading, dataset preparation)."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()


# --- the run ---------------------------------------------------------------------------------


def _fingerprint(examples: list[dict[str, Any]], model_name: str, cfg: TrainConfig) -> str:
    h = hashlib.sha256()
    # How often to log and save does not change the adapter: those may differ on a resume.
    settings = cfg.model_dump(mode="json", exclude={"model", "logging_steps", "save_steps", "save_total_limit"})
    h.update(json.dumps({"model": model_name, "train": settings}, sort_keys=True).encode())
    for e in examples:
        h.update(json.dumps([e["prompt"], e["completion"]], ensure_ascii=False).encode())
    return h.hexdigest()


def _read_state(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise UserError(f"{path}: unreadable; delete {out_dir} or give a new `out`") from None


def _check_out_dir(out_dir: Path, fingerprint: str) -> dict[str, Any] | None:
    """The previous state of this run directory when it is the same run; raises when it is another."""
    state = _read_state(out_dir)
    if state is None:
        if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
            raise UserError(f"{out_dir} exists and is not a `robustft train` output directory; "
                            "give `out` a new or empty directory")
        return None
    if state.get("fingerprint") != fingerprint:
        raise UserError(f"{out_dir} holds a training run with other data, model or settings; resuming it would "
                        "mix two runs. Give a new `out` directory, or delete this one to start over.")
    return state


def train(config: RobustFTConfig, *, data: str | Path | None = None, model: str | None = None,
          out: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Fine-tune `model` (default `config.train.model`) with LoRA on `data` (default
    `config.data.path`), writing the adapter and records to `out`."""
    from accelerate import PartialState
    from transformers.trainer_utils import get_last_checkpoint

    cfg = config.train
    model_name = model or cfg.model
    if not model_name:
        raise ConfigError("no model to fine-tune: set train.model to a local model directory or a hub name")
    data_path = data if data is not None else config.data.path
    if data_path is None:
        raise ConfigError("no training data: set data.path to denoised.jsonl, or any labeled CSV/JSONL/dataset folder")
    if out is None:
        raise ConfigError("no output directory: give `out`, where the adapter is written")
    out_dir = Path(out)

    dataset = load_training_set(config.data, data_path)
    prompts = PromptLibrary(config.denoise.prompts_dir)
    examples = sft_examples(dataset, prompts, config.data.instruction)
    fingerprint = _fingerprint(examples, str(model_name), cfg)
    processes = PartialState()
    with processes.main_process_first():  # under `accelerate launch` the main process sets up `out` first
        state = _check_out_dir(out_dir, fingerprint)
        if processes.is_main_process and (state is None or state.get("status") != "done"):
            out_dir.mkdir(parents=True, exist_ok=True)
            write_json(out_dir / STATE_FILE, {"fingerprint": fingerprint, "status": "running"})
    if state is not None and state.get("status") == "done" and (out_dir / SUMMARY_FILE).is_file():
        summary = json.loads((out_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        return TrainResult(out_dir=out_dir, summary=summary, skipped=True)

    resolved = {
        "model": str(model_name), "data": str(data_path), "samples": len(examples), "task": dataset.task,
        "train": cfg.model_dump(mode="json"), "instruction": config.data.instruction,
        "prompts_dir": str(config.denoise.prompts_dir) if config.denoise.prompts_dir else None,
        "prompt_format": ({"prompt": "the conversation as written (a table row: [{role: user, content: question}])",
                           "completion": "[{role: assistant, content: <the response>}]",
                           "loss": "completion tokens only"} if dataset.task == "open" else
                          {"prompt": "[earlier turns..., {role: user, content: PromptLibrary.question_prompt(...)}]",
                           "completion": "[{role: assistant, content: 'Answer: <label>'}]",
                           "loss": "completion tokens only"}),
        "robustft_version": __version__,
    }
    if processes.is_main_process:
        write_json(out_dir / CONFIG_FILE, resolved)

    started = time.monotonic()
    trainer = build_trainer(examples, str(model_name), cfg, out_dir, progress=progress)
    resume = get_last_checkpoint(str(out_dir)) if out_dir.is_dir() else None
    output = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(out_dir))
    history = list(trainer.state.log_history)
    losses = [h["loss"] for h in history if "loss" in h]
    summary = {
        "model": str(model_name), "data": str(data_path), "samples": len(examples), "task": dataset.task,
        "steps": trainer.state.global_step, "epochs": trainer.state.epoch,
        "train_loss": output.training_loss if not math.isnan(output.training_loss) else None,
        "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
        "losses": losses, "resumed_from": resume, "wall_time_s": round(time.monotonic() - started, 2),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
        "adapter": str(out_dir),
    }
    if trainer.is_world_process_zero():
        trainer.save_state()
        write_json(out_dir / SUMMARY_FILE, summary)
        write_json(out_dir / STATE_FILE, {"fingerprint": fingerprint, "status": "done"})
    return TrainResult(out_dir=out_dir, summary=summary, log_history=history)


def describe_training(result: TrainResult) -> str:
    s = result.summary
    if result.skipped:
        head = f"already trained: {result.out_dir} holds the finished adapter (nothing was re-run)"
    else:
        resumed = f", resumed from {s['resumed_from']}" if s.get("resumed_from") else ""
        head = f"trained {s['steps']} steps on {s['samples']} samples in {s['wall_time_s']:.1f} s{resumed}"
    lines = [head]
    losses = s.get("losses") or []
    if len(losses) > 1:
        lines.append(f"training loss {losses[0]:.4f} at the first logged step -> {losses[-1]:.4f} at the last "
                     f"({len(losses)} logged), mean {s['train_loss']:.4f}")
    elif s.get("train_loss") is not None:
        lines.append(f"mean training loss {s['train_loss']:.4f}")
    lines.append(f"adapter, tokenizer and settings: {result.out_dir}  ({CONFIG_FILE}, {SUMMARY_FILE})")
    lines.append(f"evaluate it: `robustft eval --data TEST.csv --model {s['model']} --adapter {result.out_dir}`")
    return "\n".join(lines)

"""Test-set accuracy: ask a model each question with the base expert's prompt, check its answer.

    evaluate(config, data=..., model=..., base_url=... | adapter=..., out=...) -> EvalResult

The model is an OpenAI-compatible server (`--model NAME --base-url URL`: `vllm serve`, with
`--enable-lora --lora-modules NAME=ADAPTER_DIR` for a fine-tuned adapter) or a local transformers
model (`--model PATH`) with an optional LoRA adapter (`--adapter DIR`, what `robustft train`
wrote). Each question is one user message, `PromptLibrary.question_prompt` (exactly what training
used); decoding is greedy by default (`eval.temperature: 0`). The answer is read with
`extract_answer` and compared to the label with `answers_match` (the task's own checker: letters for
multiple choice, a relative tolerance for numbers, normalised containment for text). A reply with
no readable answer, or a request that keeps failing, counts as wrong.

Server requests run concurrently (at most `eval.concurrency` in flight); a local model generates
`eval.batch_size` prompts per call, shortest prompts first.

Writes `OUT/predictions.jsonl` (one record per sample: id, question, options, label, prediction,
correct, response, error) and `OUT/result.json` (accuracy, counts, model, data, settings).
"""

from __future__ import annotations

import asyncio
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..answers import answers_match, extract_answer
from ..config import ModelConfig, RobustFTConfig, model_flag_updates
from ..data import Dataset
from ..errors import ConfigError, InputError, ModelCallError, RobustFTError, UserError
from ..files import write_json, write_jsonl
from ..prompts import PromptLibrary

__all__ = ["EvalResult", "eval_model_config", "evaluate", "score_samples", "describe_eval", "default_out_dir"]

PREDICTIONS_FILE = "predictions.jsonl"
RESULT_FILE = "result.json"


@dataclass
class EvalResult:
    out_dir: Path | None
    result: dict[str, Any]
    predictions: list[dict[str, Any]]

    @property
    def accuracy(self) -> float:
        return self.result["accuracy"]


def _check_adapter(adapter: str | Path) -> None:
    path = Path(adapter)
    if not path.is_dir():
        raise InputError("adapter directory not found", path=path,
                         fix="pass the output directory of `robustft train` (it holds adapter_config.json)")
    if not (path / "adapter_config.json").is_file():
        raise InputError("no adapter_config.json in it, so it is not a PEFT adapter", path=path,
                         fix="pass the output directory of a finished `robustft train` run")


def eval_model_config(config: RobustFTConfig, *, model: str | None = None,
                      base_url: str | Sequence[str] | None = None,
                      adapter: str | Path | None = None) -> ModelConfig:
    """The model to evaluate: `config.model` with the flags applied and the eval settings
    (temperature, max_tokens, batch size; no logprobs). `base_url` means a server; `model` alone a
    local transformers model, unless the config already names a server (`model_flag_updates`)."""
    from ..backends.registry import options_model

    update: dict[str, Any] = model_flag_updates(config.model, model=model, base_url=base_url)
    e = config.eval
    update.update(temperature=e.temperature, max_tokens=e.max_tokens, logprobs=False)
    inherited = config.model.model_dump()
    provider = update.get("provider", config.model.provider)
    if provider != config.model.provider:  # the configured backend's options are not another's
        inherited = {k: v for k, v in inherited.items() if k in ModelConfig.model_fields}
    if "batch_size" in options_model(provider).model_fields:
        update["batch_size"] = e.batch_size
    if adapter is not None:
        update["adapter"] = str(adapter)
    mc = ModelConfig(**{**inherited, **update})
    if not mc.name:
        raise ConfigError("no model to evaluate: set model.name, with model.base_url for a server, or alone "
                          "for a local model (its path or hub name)")
    if mc.options.get("adapter") is not None:
        if mc.provider != "transformers":
            raise ConfigError(
                "an `adapter` applies a LoRA adapter to a local model (model.name a path or hub name, no "
                "model.base_url). For a server, serve the adapter instead "
                "(`vllm serve BASE --enable-lora --lora-modules NAME=ADAPTER_DIR`) and set model.name to NAME and "
                "model.base_url to the server")
        _check_adapter(mc.options["adapter"])
    if mc.provider == "fake":
        return mc
    if mc.provider == "openai" and not mc.base_url:
        raise ConfigError("model.base_url is empty for a server model: set it to the server's URL (for example "
                          "http://127.0.0.1:8000/v1)")
    return mc


def _batch_size(config: ModelConfig) -> int:
    """Requests a local backend generates together (1 for one that has no such option)."""
    from ..backends.registry import backend_options

    return int(backend_options(config).model_dump().get("batch_size", 1))


def default_out_dir(data: str | Path, model: str, adapter: str | Path | None) -> Path:
    """`ADAPTER/eval-<data name>` for an adapter, else `runs/eval/<model>-<data name>`."""
    stem = Path(data).stem or Path(data).name
    if adapter is not None:
        return Path(adapter) / f"eval-{stem}"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model).name or model).strip("_") or "model"
    return Path("runs") / "eval" / f"{slug}-{stem}"


async def _ask(chat_model: Any, messages: list[dict[str, str]], cfg: ModelConfig) -> tuple[Any, str | None]:
    """(Generation or None, error or None), retrying failures that may pass (as the agents do)."""
    from ..backends.retry import RetryPolicy, with_retries

    try:
        return await with_retries(lambda: chat_model.generate(messages), RetryPolicy.for_model(cfg),
                                  "model call"), None
    except ModelCallError as exc:
        return None, str(exc)


async def score_samples(dataset: Dataset, chat_model: Any, prompts: PromptLibrary, cfg: ModelConfig, *,
                        instruction: str = "", concurrency: int = 32, tolerance: float = 1e-2,
                        progress: bool = False) -> list[dict[str, Any]]:
    """One prediction record per sample, in dataset order.

    The first request goes alone: when it fails, nothing else is sent and `UserError` says why (a
    wrong URL or model name fails every request the same way).
    """
    from tqdm.auto import tqdm

    samples = dataset.samples
    task = dataset.task
    messages = [[{"role": "user", "content": prompts.question_prompt(s.question, s.options, task, instruction)}]
                for s in samples]
    records: list[dict[str, Any] | None] = [None] * len(samples)
    bar = tqdm(total=len(samples), desc="eval", unit="sample", disable=not progress)

    def record(i: int, generation: Any, error: str | None) -> dict[str, Any]:
        s = samples[i]
        text = generation.text if generation is not None else None
        pred = extract_answer(text, task, s.options) if text is not None else None
        if text is not None and pred is None:
            error = "no usable 'Answer:' line in the response"
        rec = {"id": s.id, "row": s.row, "question": s.question}
        if s.options is not None:
            rec["options"] = s.options
        rec.update({"label": s.label, "prediction": pred,
                    "correct": answers_match(pred, s.label, task, tolerance=tolerance),
                    "response": text, "error": error})
        return rec

    async def one(i: int) -> None:
        generation, error = await _ask(chat_model, messages[i], cfg)
        records[i] = record(i, generation, error)
        bar.update(1)

    # Shortest prompts first: a local model batches neighbours, so they pad less.
    order = sorted(range(len(samples)), key=lambda i: len(messages[i][0]["content"]))
    try:
        if order:
            first, rest = order[0], order[1:]
            generation, error = await _ask(chat_model, messages[first], cfg)
            if generation is None:
                if cfg.provider == "openai":
                    raise UserError(f"model {cfg.name!r} at {', '.join(cfg.base_urls)} did not answer the first test question: "
                                    f"{error}\n  fix: check that the server is running, model.base_url, and the "
                                    "model name it serves (GET /v1/models lists them)")
                raise RobustFTError(f"model {cfg.name!r} failed on the first test question: {error}")
            records[first] = record(first, generation, None)
            bar.update(1)
            limit = concurrency if cfg.provider == "openai" else max(concurrency, _batch_size(cfg) * 2)
            sem = asyncio.Semaphore(limit)

            async def limited(i: int) -> None:
                async with sem:
                    await one(i)

            await asyncio.gather(*(limited(i) for i in rest))
    finally:
        bar.close()
    return records  # type: ignore[return-value]


def summarize(records: list[dict[str, Any]]) -> dict[str, int | float]:
    total = len(records)
    correct = sum(1 for r in records if r["correct"])
    failed = sum(1 for r in records if r["response"] is None)
    unanswered = sum(1 for r in records if r["response"] is not None and r["prediction"] is None)
    return {"accuracy": correct / total if total else 0.0, "correct": correct, "total": total,
            "unanswered": unanswered, "failed": failed}


def evaluate(config: RobustFTConfig, *, data: str | Path | None = None, model: str | None = None,
             base_url: str | Sequence[str] | None = None, adapter: str | Path | None = None, out: str | Path | None = None,
             limit: int | None = None, progress: bool = True, chat_model: Any = None,
             write: bool = True) -> EvalResult:
    """Accuracy of a model on the labeled test set `data` (default `config.experiment.test_data`).

    `chat_model` replaces the backend built from the config (tests pass scripted models); `limit`
    takes the first N rows. Writes predictions and the result to `out` (default: `default_out_dir`)
    unless `write` is False.
    """
    from ..backends.registry import build_chat_model
    from .train import load_training_set

    data_path = data if data is not None else config.experiment.test_data
    if data_path is None:
        raise ConfigError("no test data: give `data` (a labeled CSV, JSONL or dataset folder), or set "
                          "experiment.test_data")
    mc = eval_model_config(config, model=model, base_url=base_url, adapter=adapter)
    data_cfg = config.data.model_copy(update={"limit": limit})
    dataset = load_training_set(data_cfg, data_path)
    if dataset.task == "open":
        raise UserError(f"{data_path}: open-ended responses cannot be scored by robustft eval, which compares each "
                        "answer with the label as text; a response worded differently is not wrong. Evaluate the "
                        "fine-tuned model with a judge or a similarity metric of your own, or set data.task to text "
                        "if the answers are short")
    prompts = PromptLibrary(config.denoise.prompts_dir)
    out_dir = Path(out) if out is not None else default_out_dir(data_path, mc.name or "model", mc.options.get("adapter"))

    started = time.monotonic()
    if not progress:
        from .train import quiet_libraries

        quiet_libraries()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        backend = chat_model if chat_model is not None else build_chat_model(mc)
    async def run() -> list[dict[str, Any]]:
        try:
            return await score_samples(dataset, backend, prompts, mc, instruction=config.data.instruction,
                                       concurrency=config.eval.concurrency, tolerance=config.data.numeric_tolerance,
                                       progress=progress)
        finally:
            if chat_model is None and hasattr(backend, "aclose"):
                await backend.aclose()

    try:
        records = asyncio.run(run())
    finally:
        if chat_model is None and hasattr(backend, "close"):
            backend.close()
    result: dict[str, Any] = {
        **summarize(records),
        "task": dataset.task, "data": str(data_path), "limit": limit, "model": mc.name, "provider": mc.provider,
        "base_url": mc.base_url if mc.provider == "openai" else None, "adapter": mc.options.get("adapter"),
        "eval": config.eval.model_dump(mode="json"), "instruction": config.data.instruction,
        "wall_time_s": round(time.monotonic() - started, 2), "robustft_version": __version__,
    }
    if write:
        write_jsonl(out_dir / PREDICTIONS_FILE, records)
        write_json(out_dir / RESULT_FILE, result)
    return EvalResult(out_dir=out_dir if write else None, result=result, predictions=records)


def describe_eval(result: EvalResult) -> str:
    r = result.result
    who = r["model"] + (f" + adapter {r['adapter']}" if r.get("adapter") else "")
    lines = [f"accuracy: {r['accuracy']:.4f} ({r['correct']}/{r['total']} correct) on {r['data']}, model {who}"]
    notes = []
    if r["unanswered"]:
        notes.append(f"{r['unanswered']} replies had no readable answer")
    if r["failed"]:
        notes.append(f"{r['failed']} requests failed")
    if notes:
        lines.append("(" + "; ".join(notes) + "; counted as wrong)")
    if result.out_dir is not None:
        lines.append(f"per-sample predictions: {result.out_dir / PREDICTIONS_FILE}   result: "
                     f"{result.out_dir / RESULT_FILE}")
    return "\n".join(lines)

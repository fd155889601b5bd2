"""A local transformers causal LM, generated in micro-batches (see `batching`).

Like the vLLM backend it uses the micro-batcher in `batching`. `generate` only queues the request and awaits its result; one worker
thread per model takes up to `model.batch_size` queued requests, generates them together in a
single call (`model.generate` on left-padded prompts, or one `LLM.chat` over the list of
conversations) and hands each caller its own `Generation`. The worker is woken with
`loop.call_soon`, after the tasks that are ready on the event loop have run, so requests started
together (`asyncio.gather`, a LangGraph superstep) form one batch; requests arriving while a batch
is running form the next. All model and tokenizer work stays on that one thread, so any number of
asyncio tasks (on any event loop) may call `generate` at once.

Weights are shared: two `TransformersChatModel`s of the same model, device and dtype (roles that
differ only in temperature or max_tokens, say) hold one copy, and take turns on it.

Sampling is plain temperature sampling: temperature 0 is greedy; no top-k, top-p or penalties,
whatever the model's `generation_config.json` suggests, so that a run depends on its config only.

Log-probabilities are those of the model's own next-token distribution (log-softmax of the raw
logits), before temperature scaling: the same number for a token whatever the temperature. This is
what vLLM (V1 engine, so also `vllm serve`) reports by default (`logprobs_mode="raw_logprobs"`:
the original logits, before penalties and temperature). It keeps selection scores comparable
across temperatures and backends, and greedy decoding still gets meaningful logprobs. The
end-of-sequence token, when generated, counts as a completion token and has a logprob (as in
vLLM's `token_ids`); it adds nothing to the text. Tokens are decoded one by one, so a character
whose bytes span several tokens shows as U+FFFD in those tokens' strings.
"""


from __future__ import annotations

import threading
import weakref
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..errors import ConfigError
from .batching import _MicroBatchingModel
from .base import Generation, Messages


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"model.device is {device!r} but no CUDA GPU is available; set device: auto or cpu")
    return device


def _resolve_dtype(dtype: str) -> Any:
    import torch

    if dtype == "auto":
        return "auto"
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ConfigError(f"model.dtype: unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return value


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or Path(name).is_absolute() or name.count("/") > 1


class _TokenLogprobRecorder:
    """A logits processor that records the log-probability of each generated token.

    It is called once per step with the scores of the next token and the sequences so far, so it
    keeps one step's log-softmax (batch x vocab, not the whole generation's logits) and reads the
    probability of the token chosen from it at the next call. The generation kwargs switch off
    the processors that could run before it (penalties, minimum lengths, suppressed tokens), so
    the scores it sees are the raw logits.
    """

    def __init__(self) -> None:
        self.steps: list[Any] = []
        self._last: Any = None

    def __call__(self, input_ids, scores):
        import torch

        self._collect(input_ids[:, -1])
        self._last = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def _collect(self, chosen) -> None:
        if self._last is not None:
            self.steps.append(self._last.gather(-1, chosen[:, None].to(self._last.device))[:, 0])
            self._last = None

    def finish(self, sequences):
        """Per-step logprobs, (batch, generated length), once generation has returned."""
        import torch

        self._collect(sequences[:, -1])
        return torch.stack(self.steps, dim=1) if self.steps else torch.zeros(sequences.shape[0], 0)


# Generation kwargs that make `model.generate` sample from the plain temperature-scaled
# distribution, overriding whatever the checkpoint's generation_config.json suggests: processors
# that apply to greedy decoding too, and the sampling-only warpers.
_NEUTRAL_PROCESSING = dict(repetition_penalty=1.0, encoder_repetition_penalty=1.0, no_repeat_ngram_size=0,
                           min_length=0, min_new_tokens=None, bad_words_ids=None, suppress_tokens=None,
                           begin_suppress_tokens=None, forced_bos_token_id=None, forced_eos_token_id=None,
                           sequence_bias=None, num_beams=1, num_return_sequences=1, guidance_scale=None,
                           stop_strings=None)
_NEUTRAL_SAMPLING = dict(top_k=0, top_p=1.0, min_p=None, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0)


class _Weights:
    """A loaded tokenizer and model, shared by the chat models that use them; `lock` makes them
    take turns (one batch at a time on the device, and the tokenizer used by one thread)."""

    def __init__(self, tokenizer: Any, model: Any) -> None:
        self.tokenizer, self.model = tokenizer, model
        self.lock = threading.Lock()


_LOADED: weakref.WeakValueDictionary[tuple, _Weights] = weakref.WeakValueDictionary()
_LOADING = threading.Lock()


def _model_source(name: str) -> str:
    """The absolute directory for a local model, else the hub name; ConfigError for a missing path."""
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ConfigError(f"model.name {name!r}: {local} holds no config.json, so it is not a "
                              "transformers model directory; pass the directory that save_pretrained wrote")
        return str(local.resolve())
    if _looks_like_path(name):
        raise ConfigError(f"model.name {name!r}: the path does not exist; pass an existing model "
                          "directory (or a Hugging Face hub name such as Qwen/Qwen2.5-0.5B-Instruct)")
    return name


def _load(name: str, source: str, device: str, dtype: Any) -> tuple[Any, Any]:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        AutoConfig.from_pretrained(source)  # one cheap request first: an unreachable hub fails here
        tokenizer = AutoTokenizer.from_pretrained(source)
        # Straight onto the device: a large model never needs a second copy in CPU memory.
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, device_map=device)
    except Exception as e:  # noqa: BLE001 - any load failure is a configuration problem
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if not Path(source).is_dir():
            raise ConfigError(
                f"model.name {name!r}: no such local directory, and it cannot be loaded from the Hugging "
                f"Face hub (the hub is unreachable, or has no such model): {reason}\n"
                "  fix: pass the path of a downloaded model directory, or check the hub name and the "
                "network (HF_HUB_OFFLINE=1 forbids the hub)") from None
        raise ConfigError(f"model.name {name!r}: cannot load {source} as a transformers causal LM: {reason}\n"
                          "  fix: pass a directory written by save_pretrained (config.json, weights, "
                          "tokenizer files)") from None
    model.eval()
    return tokenizer, model


def _apply_adapter(model: Any, path: str, given: str) -> Any:
    """The model with the PEFT LoRA adapter at `path` merged into its weights (as fast as the base)."""
    from peft import PeftModel

    if not (Path(path) / "adapter_config.json").is_file():
        raise ConfigError(f"model.adapter {given!r}: no adapter_config.json there, so it is not a PEFT adapter; "
                          "pass the --out directory of a finished `robustft train` run")
    try:
        model = PeftModel.from_pretrained(model, path).merge_and_unload()
    except Exception as e:  # noqa: BLE001 - a mismatched adapter is a configuration problem
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"model.adapter {given!r}: cannot apply it to this model: {reason}\n"
                          "  fix: pass an adapter trained on this same base model (--model)") from None
    model.eval()
    return model


class TransformersChatModel(_MicroBatchingModel):
    """A local transformers causal LM: `model.name` is a directory, or a hub name when the hub is
    reachable. Prompts use the tokenizer's chat template when it has one, else a plain
    `role: content` transcript ending in `assistant:`.

    Settings used: `temperature` (0 = greedy), `max_tokens`, `seed` (each batch is sampled from
    a fresh generator seeded with it, without touching the global RNG), `logprobs`, `device`
    ("auto" = cuda when available, else cpu), `dtype`, `batch_size` (requests per
    `model.generate` call) and `adapter` (a PEFT LoRA adapter directory, merged into the weights).
    """

    _weights: _Weights

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config.batch_size)
        self.config = config
        if not config.name:
            raise ConfigError("model.name is empty for provider 'transformers': pass --model PATH "
                              "(a local model directory, or a hub name when the hub is reachable)")
        self.name = config.name
        self.device = _resolve_device(config.device)
        dtype = _resolve_dtype(config.dtype)
        source = _model_source(config.name)
        adapter = str(Path(config.adapter).expanduser().resolve()) if config.adapter else None
        with _LOADING:
            key = (source, self.device, str(dtype), adapter)
            self._weights = _LOADED.get(key)
            if self._weights is None:
                tokenizer, model = _load(config.name, source, self.device, dtype)
                if adapter is not None:  # a fresh copy of the base (key differs), so merging touches no other user
                    model = _apply_adapter(model, adapter, config.adapter)
                self._weights = _LOADED[key] = _Weights(tokenizer, model)
        self._tokenizer, self._model = self._weights.tokenizer, self._weights.model
        self._eos_ids = self._eos_token_ids()
        self._pad_id = self._tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = next(iter(sorted(self._eos_ids)), 0)

    def _eos_token_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (self._model.generation_config.eos_token_id, self._tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(int(i) for i in source)
        return ids

    def _encode(self, messages: Messages) -> list[int]:
        tokenizer = self._tokenizer
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            # The template writes the special tokens it wants (as vLLM does, add none on top).
            return tokenizer(text, add_special_tokens=False)["input_ids"]
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return tokenizer(text)["input_ids"]

    def _generate_batch(self, batch: list[Messages]) -> list[Generation | Exception]:
        with self._weights.lock:
            return self._generate_batch_locked(batch)

    def _generate_batch_locked(self, batch: list[Messages]) -> list[Generation | Exception]:
        results: list[Generation | Exception | None] = [None] * len(batch)
        prompts: list[tuple[int, list[int]]] = []
        for i, messages in enumerate(batch):
            try:
                prompts.append((i, self._encode(messages)))
            except Exception as e:  # noqa: BLE001 - a bad prompt fails its own request only
                results[i] = e
        if prompts:
            for (i, _), generation in zip(prompts, self._run([ids for _, ids in prompts])):
                results[i] = generation
        return results  # type: ignore[return-value]

    def _run(self, prompts: list[list[int]]) -> list[Generation]:
        import torch

        cfg = self.config
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[self._pad_id] * (width - len(p)) + p for p in prompts], device=self.device)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        recorder = _TokenLogprobRecorder() if cfg.logprobs else None
        kwargs: dict[str, Any] = dict(_NEUTRAL_PROCESSING, max_new_tokens=cfg.max_tokens,
                                      pad_token_id=self._pad_id, eos_token_id=sorted(self._eos_ids) or None,
                                      do_sample=cfg.temperature > 0, return_dict_in_generate=True)
        if cfg.temperature > 0:
            kwargs.update(_NEUTRAL_SAMPLING, temperature=cfg.temperature)
        if recorder is not None:
            kwargs["logits_processor"] = [recorder]

        with torch.random.fork_rng(devices=[self.device] if self.device.startswith("cuda") else []):
            if cfg.seed is not None and cfg.temperature > 0:
                torch.manual_seed(cfg.seed)
            with torch.inference_mode():
                out = self._model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

        sequences = out.sequences
        completions = sequences[:, width:].tolist()
        logprobs = recorder.finish(sequences).tolist() if recorder is not None else None
        generations = []
        for row, (prompt, completion) in enumerate(zip(prompts, completions)):
            end = next((k + 1 for k, t in enumerate(completion) if t in self._eos_ids), len(completion))
            ids = completion[:end]
            tokens = [self._tokenizer.decode([t], skip_special_tokens=True) for t in ids]
            generations.append(Generation(
                text=self._tokenizer.decode(ids, skip_special_tokens=True),
                token_logprobs=[float(x) for x in logprobs[row][:end]] if logprobs is not None else None,
                tokens=tokens, prompt_tokens=len(prompt), completion_tokens=len(ids)))
        return generations

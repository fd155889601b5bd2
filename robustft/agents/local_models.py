"""In-process chat model backends: a transformers model, or the vLLM engine.

Both share one micro-batcher. `generate` only queues the request and awaits its result; one worker
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

import asyncio
import threading
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..errors import ConfigError
from .models import Generation, Messages


@dataclass
class _Request:
    messages: Messages
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class _MicroBatchingModel:
    """Queues `generate` calls and runs them in batches on one worker thread.

    Subclasses implement `_generate_batch(list of message lists) -> list of Generation or
    Exception` (one per request, in order); an exception raised by it fails the whole batch.
    `batch_calls` counts the batches run (tests and benchmarks read it).
    """

    name: str

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.batch_calls = 0
        self._pending: deque[_Request] = deque()
        self._lock = threading.Lock()
        self._draining = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"robustft-{type(self).__name__}")

    async def generate(self, messages: Messages) -> Generation:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            self._pending.append(_Request(messages, future, loop))
        loop.call_soon(self._wake)
        return await future

    def close(self) -> None:
        """Stop the worker thread once the queued requests are done."""
        self._executor.shutdown(wait=True)

    def _generate_batch(self, batch: list[Messages]) -> list[Generation | Exception]:
        raise NotImplementedError

    def _wake(self) -> None:
        with self._lock:
            if self._draining or not self._pending:
                return
            self._draining = True
        self._executor.submit(self._drain)

    def _take_batch(self) -> list[_Request]:
        with self._lock:
            batch: list[_Request] = []
            while self._pending and len(batch) < self.batch_size:
                request = self._pending.popleft()
                if not request.future.cancelled():
                    batch.append(request)
            if not batch:
                self._draining = False
            return batch

    def _drain(self) -> None:
        try:
            while batch := self._take_batch():
                self.batch_calls += 1
                try:
                    results: list[Any] = self._generate_batch([r.messages for r in batch])
                except Exception as e:  # noqa: BLE001 - handed to every caller of the batch
                    results = [e] * len(batch)
                for request, result in zip(batch, results):
                    _deliver(request, result)
        except BaseException:
            with self._lock:
                self._draining = False
            raise


def _deliver(request: _Request, result: Generation | BaseException) -> None:
    def resolve() -> None:
        if request.future.done():  # the caller was cancelled meanwhile
            return
        if isinstance(result, BaseException):
            request.future.set_exception(result)
        else:
            request.future.set_result(result)

    try:
        request.loop.call_soon_threadsafe(resolve)
    except RuntimeError:  # the caller's event loop is closed: nobody is waiting
        pass


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


class VLLMChatModel(_MicroBatchingModel):
    """The vLLM engine in process (`vllm.LLM`), for fast local generation on a GPU.

    Each batch of queued requests is one `LLM.chat(list of conversations, SamplingParams(...))`
    call; vLLM schedules it internally (continuous batching, paged KV cache), so a larger
    `model.batch_size` (e.g. the run's `denoise.concurrency`) suits it better than the
    transformers default of 8. Logprobs: `SamplingParams(logprobs=0)` returns the sampled
    token's logprob, from the raw distribution by default (vLLM V1 `logprobs_mode`), as the
    transformers backend does.

    Written against vLLM's documented offline API (`LLM`, `LLM.chat` over a list of
    conversations, `SamplingParams`, `RequestOutput.outputs[0].logprobs` as one
    {token_id: Logprob} mapping per generated token); untested here, where there is neither
    vllm nor a GPU.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config.batch_size)
        self.config = config
        try:
            import vllm
        except ImportError:
            raise ConfigError("provider 'vllm' needs the vllm package and a GPU: pip install 'robustft[vllm]' "
                              "(or use provider 'transformers' for a local model on CPU, or serve the model "
                              "with `vllm serve` and use provider 'openai' with --base-url)") from None
        if not config.name:
            raise ConfigError("model.name is empty for provider 'vllm': pass --model PATH_OR_HUB_NAME")
        self.name = config.name
        llm_kwargs: dict[str, Any] = {"model": config.name, "dtype": config.dtype}
        if config.seed is not None:
            llm_kwargs["seed"] = config.seed
        try:
            self._llm = vllm.LLM(**llm_kwargs)
        except Exception as e:  # noqa: BLE001 - engine start-up errors are configuration errors
            raise ConfigError(f"model.name {config.name!r}: vLLM could not load it: {e}\n"
                              "  fix: check the model path or hub name, the GPU and model.dtype") from None
        self._params = vllm.SamplingParams(temperature=config.temperature, max_tokens=config.max_tokens,
                                           logprobs=0 if config.logprobs else None, seed=config.seed)

    def _generate_batch(self, batch: list[Messages]) -> list[Generation | Exception]:
        outputs = self._llm.chat(batch, sampling_params=self._params, use_tqdm=False)
        return [self._to_generation(output) for output in outputs]

    def _to_generation(self, output: Any) -> Generation:
        completion = output.outputs[0]
        token_ids = list(completion.token_ids)
        logprobs = tokens = None
        if completion.logprobs is not None:
            logprobs, tokens = [], []
            for token_id, step in zip(token_ids, completion.logprobs):
                entry = step[token_id]
                logprobs.append(float(entry.logprob))
                tokens.append(entry.decoded_token or "")
        return Generation(text=completion.text, token_logprobs=logprobs, tokens=tokens,
                          prompt_tokens=len(output.prompt_token_ids or []), completion_tokens=len(token_ids))

"""A local transformers causal LM, generated in micro-batches (see `batching`).

Concurrent requests are generated together: one `model.generate` per batch of up to
`model.batch_size` left-padded prompts. Under greedy decoding each request gets the text, tokens,
logprobs and entropies it would get alone (up to float rounding: padding changes the shapes of the
matrix products).

Weights are shared: two `TransformersChatModel`s of the same model, device and dtype (roles that
differ only in temperature or max_tokens, say) hold one copy, and take turns on it. Loading and the
prompt a chat becomes (its chat template, else a plain transcript) live in `hf`, shared with
`robustft train`.

Sampling is plain temperature sampling: temperature 0 is greedy; no top-k, top-p or penalties,
whatever the model's `generation_config.json` suggests, so that a run depends on its config only.
With a `seed`, each batch is sampled from the global generator seeded with it inside
`torch.random.fork_rng` (the caller's random state is left as it was); a sampled answer then
depends on the batch it was generated in, a greedy one never does.

Log-probabilities are those of the model's own next-token distribution (log-softmax of the raw
logits), before temperature scaling: the same number for a token whatever the temperature. This is
what vLLM (V1 engine, so also `vllm serve`) reports by default (`logprobs_mode="raw_logprobs"`:
the original logits, before penalties and temperature). It keeps selection scores comparable
across temperatures and backends, and greedy decoding still gets meaningful logprobs. The entropy
of each step (`token_entropies`) is that of the same full distribution, in nats, computed on the
device in the same pass. The end-of-sequence token, when generated, counts as a completion token
and has a logprob and an entropy (as in vLLM's `token_ids`); it adds nothing to the text. Tokens are
decoded one by one, so a character whose bytes span several tokens shows as U+FFFD in those
tokens' strings.

On the CPU the worker thread uses one core fewer than the process may run on (at least one, and
never more than torch's own setting) for torch's intra-op threads: the event loop needs the other
one, and on a small or shared machine OpenMP threads that wait on each other cost far more than
they give (see benchmarks/results/local_batching.md). Set OMP_NUM_THREADS to choose yourself.
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..errors import ConfigError
from pydantic import Field

from .batching import LocalOptions, _MicroBatchingModel
from .base import Generation, Messages, options_of
from .hf import apply_adapter, load_model, model_source, prompt_ids, resolve_device, resolve_dtype


class _StepRecorder:
    """A logits processor that records, at each generated step, the log-probability of the token
    chosen and the entropy of the whole next-token distribution.

    It is called once per step with the scores of the next token and the sequences so far, so it
    keeps one step's log-softmax (batch x vocab, not the whole generation's logits) and reads the
    probability of the token chosen from it at the next call. The generation kwargs switch off
    the processors that could run before it (penalties, minimum lengths, suppressed tokens), and
    temperature is applied after it, so the scores it sees are the raw logits.
    """

    def __init__(self) -> None:
        self._logprobs: list[Any] = []
        self._entropies: list[Any] = []
        self._last: Any = None

    def __call__(self, input_ids, scores):
        import torch

        self._collect(input_ids[:, -1])
        logp = torch.log_softmax(scores.float(), dim=-1)
        # 0 * log 0 is nan for tokens the logits rule out (-inf): they add nothing to the entropy.
        self._entropies.append(-(logp.exp() * logp).nansum(dim=-1))
        self._last = logp
        return scores

    def _collect(self, chosen) -> None:
        if self._last is not None:
            self._logprobs.append(self._last.gather(-1, chosen[:, None].to(self._last.device))[:, 0])
            self._last = None

    def finish(self, sequences) -> tuple[list[list[float]], list[list[float]]]:
        """Per row, the logprob and the entropy of each generated step, once generation has returned."""
        import torch

        self._collect(sequences[:, -1])
        if not self._logprobs:
            return [[] for _ in range(sequences.shape[0])], [[] for _ in range(sequences.shape[0])]
        both = torch.stack([torch.stack(self._logprobs, dim=1), torch.stack(self._entropies, dim=1)]).tolist()
        return both[0], both[1]


# Generation kwargs that make `model.generate` sample from the plain temperature-scaled
# distribution, overriding whatever the checkpoint's generation_config.json suggests: processors
# that apply to greedy decoding too, and the sampling-only warpers.
_NEUTRAL_PROCESSING = dict(repetition_penalty=1.0, encoder_repetition_penalty=1.0, no_repeat_ngram_size=0,
                           min_length=0, min_new_tokens=None, bad_words_ids=None, suppress_tokens=None,
                           begin_suppress_tokens=None, forced_bos_token_id=None, forced_eos_token_id=None,
                           sequence_bias=None, num_beams=1, num_return_sequences=1, guidance_scale=None,
                           stop_strings=None)
_NEUTRAL_SAMPLING = dict(top_k=0, top_p=1.0, min_p=None, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0)


def cpu_generation_threads() -> int:
    """torch intra-op threads for generating on the CPU: one core fewer than this process may run
    on, at least one, and never more than torch's own setting."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(torch.get_num_threads(), cores - 1))


class _Weights:
    """A loaded tokenizer and model, shared by the chat models that use them; `lock` makes them
    take turns (one batch at a time on the device, and the tokenizer used by one thread)."""

    def __init__(self, tokenizer: Any, model: Any) -> None:
        self.tokenizer, self.model = tokenizer, model
        self.lock = threading.Lock()


_LOADED: weakref.WeakValueDictionary[tuple, _Weights] = weakref.WeakValueDictionary()
_LOADING = threading.Lock()


class TransformersChatModel(_MicroBatchingModel):
    """A local transformers causal LM: `model.name` is a directory, or a hub name when the hub is
    reachable. Prompts use the tokenizer's chat template when it has one, else a plain
    `role: content` transcript ending in `assistant:` (`hf.prompt_ids`).

    Settings used: `temperature` (0 = greedy), `max_tokens`, `seed` (see the module docstring),
    `logprobs` (token logprobs and entropies), `device` ("auto" = cuda when available, else cpu), `dtype`, `batch_size`
    (requests per `model.generate` call) and `adapter` (a PEFT LoRA adapter directory, merged into
    the weights).
    """

    class Options(LocalOptions):
        adapter: str | None = Field(None, description=(
            "A PEFT LoRA adapter directory (what `robustft train` writes) applied on top of the model."))

    _weights: _Weights

    def __init__(self, config: ModelConfig) -> None:
        options = self.options = options_of(config, self.Options)
        super().__init__(options.batch_size)
        self.config = config
        if not config.name:
            raise ConfigError("model.name is empty for provider 'transformers': set it to a local model "
                              "directory, or a hub name when the hub is reachable")
        self.name = config.name
        self.device = resolve_device(options.device)
        dtype = resolve_dtype(options.dtype)
        source = model_source(config.name)
        adapter = str(Path(options.adapter).expanduser().resolve()) if options.adapter else None
        with _LOADING:
            key = (source, self.device, str(dtype), adapter)
            self._weights = _LOADED.get(key)
            if self._weights is None:
                tokenizer, model = load_model(config.name, dtype=dtype, device_map=self.device)
                if adapter is not None:  # a fresh copy of the base (key differs), so merging touches no other user
                    model = apply_adapter(model, adapter, options.adapter)
                self._weights = _LOADED[key] = _Weights(tokenizer, model)
        self._tokenizer, self._model = self._weights.tokenizer, self._weights.model
        self._eos_ids = self._eos_token_ids()
        self._pad_id = self._tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = next(iter(sorted(self._eos_ids)), 0)

    def _worker_started(self) -> None:
        if self.device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            import torch

            torch.set_num_threads(cpu_generation_threads())

    def _eos_token_ids(self) -> set[int]:
        ids: set[int] = set()
        for source in (self._model.generation_config.eos_token_id, self._tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(int(i) for i in source)
        return ids

    def _encode(self, messages: Messages) -> list[int]:
        return prompt_ids(self._tokenizer, messages)

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
            for (i, _), generation in zip(prompts, self._run_fitting([ids for _, ids in prompts])):
                results[i] = generation
        return results  # type: ignore[return-value]

    def _run_fitting(self, prompts: list[list[int]]) -> list[Generation]:
        """`_run`, in halves while a batch does not fit in the device's memory."""
        import torch

        try:
            return self._run(prompts)
        except torch.OutOfMemoryError:
            if len(prompts) == 1:
                raise
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        half = len(prompts) // 2
        return self._run_fitting(prompts[:half]) + self._run_fitting(prompts[half:])

    def _run(self, prompts: list[list[int]]) -> list[Generation]:
        import torch

        cfg = self.config
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[self._pad_id] * (width - len(p)) + p for p in prompts], device=self.device)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        recorder = _StepRecorder() if cfg.logprobs else None
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

        completions = [self._until_eos(row) for row in out.sequences[:, width:].tolist()]
        logprobs, entropies = recorder.finish(out.sequences) if recorder is not None else (None, None)
        texts = self._tokenizer.batch_decode(completions, skip_special_tokens=True)
        pieces = iter(self._tokenizer.batch_decode([[t] for ids in completions for t in ids], skip_special_tokens=True))
        generations = []
        for row, (prompt, ids) in enumerate(zip(prompts, completions)):
            n = len(ids)
            generations.append(Generation(
                text=texts[row], tokens=[next(pieces) for _ in range(n)],
                token_logprobs=logprobs[row][:n] if logprobs is not None else None,
                token_entropies=entropies[row][:n] if entropies is not None else None,
                prompt_tokens=len(prompt), completion_tokens=n))
        return generations

    def _until_eos(self, completion: list[int]) -> list[int]:
        """The generated ids up to and including the first end-of-sequence token (the rest is padding)."""
        end = next((k + 1 for k, t in enumerate(completion) if t in self._eos_ids), len(completion))
        return completion[:end]

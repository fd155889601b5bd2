"""The vLLM engine in process (`vllm.LLM`), generated in micro-batches (see `batching`).

Each batch of queued requests is one `LLM.chat(list of conversations, SamplingParams(...))` call;
vLLM schedules it internally (continuous batching, paged KV cache), so a larger `model.batch_size`
(e.g. the run's `denoise.concurrency`) suits it better than the transformers default of 8.

Logprobs: `SamplingParams(logprobs=k)` returns, per generated token, a `{token_id: Logprob}`
mapping holding the sampled token and the k most likely ones (k or k + 1 entries; `FlatLogprobs`
in recent vLLM, a list of dicts before, both read the same way here). k is `model.top_logprobs`
(0: the sampled token only). The values come from the raw distribution by default (vLLM's
`logprobs_mode="raw_logprobs"`: before temperature, penalties and top-k/top-p), as the
transformers backend and `vllm serve` give them.

Tested here on objects built with vLLM's own field names (`RequestOutput.outputs[0]`,
`CompletionOutput.text/token_ids/logprobs`, `Logprob.logprob/rank/decoded_token`) and a stand-in
`vllm` module; never run against the real engine, which needs a GPU.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..config import ModelConfig
from ..entropy import topk_entropy
from ..errors import ConfigError
from .base import Generation, Messages, options_of
from .batching import LocalOptions, _MicroBatchingModel

INSTALL_HINT = ("provider 'vllm' needs the vllm package and a GPU: pip install -e '.[vllm]' in the robustft clone (or pip install "
                "vllm); or use provider 'transformers' for a local model on CPU, or serve the model with "
                "`vllm serve` and use provider 'openai' with model.base_url")


class VLLMChatModel(_MicroBatchingModel):
    """The vLLM engine in process, for fast local generation on a GPU."""

    class Options(LocalOptions):
        device: str = Field("auto", description="vllm places the model on its GPU itself: any value is ignored.")

    def __init__(self, config: ModelConfig) -> None:
        options = options_of(config, self.Options)
        super().__init__(options.batch_size)
        self.config = config
        try:
            import vllm
        except ImportError:
            raise ConfigError(INSTALL_HINT) from None
        if not config.name:
            raise ConfigError("model.name is empty for provider 'vllm': set it to a local path or a hub name")
        self.name = config.name
        llm_kwargs: dict[str, Any] = {"model": config.name, "dtype": options.dtype}
        if config.seed is not None:
            llm_kwargs["seed"] = config.seed
        try:
            self._llm = vllm.LLM(**llm_kwargs)
        except Exception as e:  # noqa: BLE001 - engine start-up errors are configuration errors
            raise ConfigError(f"model.name {config.name!r}: vLLM could not load it: {e}\n"
                              "  fix: check the model path or hub name, the GPU and model.dtype") from None
        top = config.top_logprobs or 0
        self._entropies = bool(config.logprobs and top)
        self._params = vllm.SamplingParams(temperature=config.temperature, max_tokens=config.max_tokens,
                                           logprobs=top if config.logprobs else None, seed=config.seed)

    def _generate_batch(self, batch: list[Messages]) -> list[Generation | Exception]:
        outputs = self._llm.chat(batch, sampling_params=self._params, use_tqdm=False)
        return [generation_from_output(output, entropies=self._entropies) for output in outputs]


def generation_from_output(output: Any, *, entropies: bool = False) -> Generation:
    """A `Generation` from a vLLM `RequestOutput` (its first completion).

    `entropies`: also the per-token entropy from the top-k alternatives (`robustft.entropy`);
    meaningful only when the request asked for k > 0 of them.
    """
    completion = output.outputs[0]
    token_ids = list(completion.token_ids)
    logprobs = tokens = token_entropies = None
    if completion.logprobs is not None:
        logprobs, tokens = [], []
        token_entropies = [] if entropies else None
        for token_id, step in zip(token_ids, completion.logprobs):
            entry = step[token_id]
            logprobs.append(float(entry.logprob))
            tokens.append(entry.decoded_token or "")
            if token_entropies is not None:
                token_entropies.append(topk_entropy(float(alt.logprob) for alt in step.values()))
    return Generation(text=completion.text, token_logprobs=logprobs, tokens=tokens,
                      prompt_tokens=len(output.prompt_token_ids or []), completion_tokens=len(token_ids),
                      token_entropies=token_entropies)

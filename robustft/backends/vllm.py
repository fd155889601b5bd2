"""The vLLM engine in process (`vllm.LLM`), generated in micro-batches (see `batching`)."""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..errors import ConfigError
from .batching import _MicroBatchingModel
from .models import Generation, Messages


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

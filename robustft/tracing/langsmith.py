"""Model calls as LangSmith LLM runs (imported only when `LANGSMITH_TRACING` is on).

LangGraph reports its own graph and node runs to LangSmith when `LANGSMITH_TRACING=true` (through
langchain-core's tracer). robustft makes its model calls through its own client, which LangChain's
callbacks never see; this adds each call as an `llm` run under the node run that made it, with
the model, the messages, the reply and the token usage (`usage_metadata`), so that LangSmith
shows and counts them as it does a LangChain chat model's.

What LangSmith receives is content by nature (the graph runs carry the samples' states); API keys
are replaced by `***` in what robustft sends, and LangSmith's own `LANGSMITH_HIDE_INPUTS` /
`LANGSMITH_HIDE_OUTPUTS` hide the rest. A call answered from the response store is a run with
`robustft_store_hit` in its metadata and no usage. The runs are sent by the langsmith client's
background thread; `close()` waits for it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from langsmith import run_helpers
from langsmith.run_trees import RunTree

from ..config import ModelConfig, RobustFTConfig
from ..secrets import describe, redact

FLUSH_S = 5.0


class LangSmithTracing:
    """The hooks `ModelCalls` calls (see `robustft.tracing.otel.OtelTracing` for the same interface)."""

    def __init__(self, config: RobustFTConfig):
        self.config = config

    @contextmanager
    def model_call(self, config: ModelConfig, messages: list[dict[str, str]], *,
                   preflight: bool = False) -> Iterator[RunTree]:
        metadata = {"ls_provider": config.provider, "ls_model_name": config.name, "ls_model_type": "chat",
                    "ls_temperature": config.temperature, "ls_max_tokens": config.max_tokens}
        if preflight:
            metadata["robustft_preflight"] = True
        inputs = {"messages": [{"role": m.get("role"), "content": redact(m.get("content"))} for m in messages]}
        parent = run_helpers.get_current_run_tree()
        name = f"chat {config.name}"
        if parent is not None:
            run = parent.create_child(name, run_type="llm", inputs=inputs, extra={"metadata": metadata})
        else:
            run = RunTree(name=name, run_type="llm", inputs=inputs, extra={"metadata": metadata})
        run.post()
        try:
            yield run
        except BaseException as exc:
            run.end(error=redact(describe(exc)) if isinstance(exc, Exception) else type(exc).__name__)
            run.patch()
            raise
        if run.end_time is None:
            run.end()
        run.patch()

    def node(self, name: str, fn: Any) -> Any:
        return fn  # LangGraph reports its nodes to LangSmith itself

    def route(self, fn: Any, end: str) -> Any:
        return fn

    def stored(self, run: RunTree, gen: Any) -> None:
        run.add_metadata({"robustft_store_hit": True})
        run.end(outputs=_outputs(gen, usage=False))

    def paid(self, run: RunTree, gen: Any) -> None:
        run.end(outputs=_outputs(gen, usage=True))

    def failed_attempt(self, error: BaseException, retryable: bool) -> None:
        run = run_helpers.get_current_run_tree()
        if run is not None and run.run_type == "llm":
            run.add_event({"name": "retry" if retryable else "call_failed", "message": redact(describe(error))})

    def close(self) -> None:
        """Wait until the runs sent so far (robustft's and LangGraph's, one shared client) reached
        LangSmith, for at most FLUSH_S: an unreachable endpoint must not hold the run's end."""
        from langchain_core.tracers.langchain import get_client

        get_client().flush(timeout=FLUSH_S)


def _outputs(gen: Any, *, usage: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"messages": [{"role": "assistant", "content": redact(gen.text)}]}
    if usage:
        out["usage_metadata"] = {"input_tokens": gen.prompt_tokens, "output_tokens": gen.completion_tokens,
                                 "total_tokens": gen.prompt_tokens + gen.completion_tokens}
    return out

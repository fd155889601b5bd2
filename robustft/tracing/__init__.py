"""OpenTelemetry traces of a run: a span per run, sample, node and model call (README "Tracing").

Tracing is on when `run.otel` is true, or when it is left unset (None) and either the
standard variables name a collector (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) or the application has already set up the OpenTelemetry SDK
(its global tracer provider is then used). `OTEL_SDK_DISABLED=true` turns it off. It needs the
`otel` extra (`pip install -e '.[otel]' in the robustft clone`).

This module is imported on every run, so it imports nothing of OpenTelemetry: when tracing is
off, a run pays one `is None` test per model call and nothing else (`benchmarks/framework_cost.py
--tracing` measures both). The spans themselves are made in `robustft.tracing.otel`:

    run = start(config)                  # None when off
    with run.run_span(out, samples):     # the root; samples, nodes and calls hang under it
        ...

and reach the call path through thin hooks: `ModelCalls.tracing` (every model call),
`graph.build` (every node, and each sample from its first node until it leaves the graph), the
embedder the runner wraps (embedding batches). Backends deep in the call path report what only
they know (which replica answered, the finish reason, a fail-over) through `reply` and
`failover` below, called only while `state.runs` is above 0.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

from ..errors import ConfigError
from . import state
from .state import INSTALL

if TYPE_CHECKING:
    from ..config import RobustFTConfig
    from .otel import OtelTracing

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def wanted(config: "RobustFTConfig") -> bool:
    """Whether a run with `config` is traced (see the module docstring)."""
    setting = config.run.otel
    if setting is not None:
        return setting
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return True
    # An application that set up the SDK itself (Phoenix's `register()`, its own exporter) has it imported.
    return "opentelemetry.sdk.trace" in sys.modules and _global_sdk_provider() is not None


def start(config: "RobustFTConfig", *, parent: dict[str, str] | None = None) -> "OtelTracing | None":
    """The run's tracing, or None when it is off. `parent`: a W3C trace context (`carrier()` of the
    driver's tracing) that the spans made here continue (a Ray worker's)."""
    if not wanted(config):
        return None
    try:
        from .otel import OtelTracing
    except ImportError as exc:
        raise ConfigError(f"tracing is on ({_why(config)}) but OpenTelemetry is not installed ({exc.name} is "
                          f"missing): {INSTALL}, or set run.otel: false") from None
    return OtelTracing(config, parent=parent)


LANGSMITH_VARIABLES = ("LANGSMITH_TRACING", "LANGSMITH_TRACING_V2", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING")


def langsmith_wanted() -> bool:
    """LangSmith tracing is on (its own variables, as the langsmith client reads them)."""
    return any(os.environ.get(name, "").strip().lower() == "true" for name in LANGSMITH_VARIABLES)


def call_hooks(otel: "OtelTracing | None", config: "RobustFTConfig") -> Any:
    """What `ModelCalls.tracing` gets: the OpenTelemetry spans, LangSmith's LLM runs, both, or None."""
    smith = None
    if langsmith_wanted():
        from .langsmith import LangSmithTracing

        smith = LangSmithTracing(config)
    if otel is not None and smith is not None:
        return Both(otel, smith)
    return otel or smith


class Both:
    """OpenTelemetry spans and LangSmith runs for the same calls; nodes and samples are OpenTelemetry's
    (LangGraph reports its nodes to LangSmith itself)."""

    def __init__(self, otel: Any, smith: Any):
        self.otel, self.smith = otel, smith
        self.node, self.route = otel.node, otel.route

    @contextmanager
    def model_call(self, config: Any, messages: Any, *, preflight: bool = False) -> Iterator[tuple[Any, Any]]:
        with self.otel.model_call(config, messages, preflight=preflight) as span, \
                self.smith.model_call(config, messages, preflight=preflight) as run:
            yield span, run

    def stored(self, handle: tuple[Any, Any], gen: Any) -> None:
        if handle[0] is not None:  # None: a sample OpenTelemetry does not trace (run.otel_sample)
            self.otel.stored(handle[0], gen)
        self.smith.stored(handle[1], gen)

    def paid(self, handle: tuple[Any, Any], gen: Any) -> None:
        if handle[0] is not None:
            self.otel.paid(handle[0], gen)
        self.smith.paid(handle[1], gen)

    def failed_attempt(self, error: BaseException, retryable: bool) -> None:
        self.otel.failed_attempt(error, retryable)
        self.smith.failed_attempt(error, retryable)

    def close(self) -> None:
        self.smith.close()


def _why(config: "RobustFTConfig") -> str:
    if config.run.otel:
        return "run.otel"
    name = next((n for n in ENDPOINT_VARIABLES if os.environ.get(n)), None)
    return f"{name} is set" if name else "the OpenTelemetry SDK is set up in this process"


def _global_sdk_provider() -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    return provider if isinstance(provider, TracerProvider) else None


def reply(url: str, data: Any) -> None:
    """A chat backend's reply from `url` (call only while `state.runs`): the server and finish reason
    go on the model call's span."""
    (_otel or _load_otel()).annotate_reply(url, data)


def failover(url: str, error_type: str) -> None:
    """A replica failed a call (call only while `state.runs`): an event on the call's span; the call
    goes to another replica when one is left."""
    (_otel or _load_otel()).add_failover(url, error_type)


# `robustft.tracing.otel` once a traced run has loaded it: the hooks above run for every model call,
# and an import statement there costs more than the rest of `reply`.
_otel: Any = None


def _load_otel() -> Any:
    global _otel
    from . import otel

    _otel = otel
    return otel

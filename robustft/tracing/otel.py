"""The spans of a traced run (imported only when tracing is on; see `robustft.tracing`).

    robustft.run                       the whole run (the root; with run.otel on a Ray worker, its parent)
      robustft.sample                  one sample's pass through the graph: robustft.sample.id, robustft.phase
        <node>                         base, reasoning, checker, context, reviewer: robustft.node
          chat <model>                 one model call, GenAI conventions (gen_ai.*, server.address)
      embeddings <model>               one batch of embeddings
      chat <model>                     the pre-run check (robustft.preflight)

A sample passes through the graph twice when it is flagged noisy (detection, then relabeling
after the barrier), so it has two sample spans, told apart by `robustft.phase`. A model call
answered from the response store is a span with `robustft.store.hit` and no usage (nothing was
paid); retries and fail-overs to another replica are events on the call's span.

No API key is ever put in a span (server addresses are host and port only; error texts pass
through `secrets.redact`), and no message content unless `run.otel_content`
asks for it, then as `gen_ai.input.messages` / `gen_ai.output.messages`, keys redacted.

The exporter is OTLP over HTTP/protobuf (or gRPC, `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`), configured
by the standard variables (endpoint, headers, timeout), behind a batch processor: spans are
encoded (over HTTP by robustft's own encoder, `encode.py`) and sent from its thread, off the event
loop. With our own provider the spans of samples, nodes and calls take the light path (`_Span`):
each is handed to the batch processor once, when it ends, as the SDK's own spans hand theirs. An
application that set up the SDK itself keeps its provider: robustft's spans go through its tracer
to its exporters, and it is flushed, not shut down.
"""

from __future__ import annotations

import json
import os
import zlib
from contextlib import contextmanager
from contextvars import ContextVar
from time import time_ns
from typing import Any, Awaitable, Callable, Iterator
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .. import __version__
from ..config import ModelConfig, RobustFTConfig
from ..errors import ConfigError
from ..secrets import redact
from . import state

PROTOCOLS = ("http/protobuf", "grpc")
# A run makes thousands of spans a second against a fast server: a queue this long rides out a
# slow collector for a few seconds instead of dropping spans (OTEL_BSP_MAX_QUEUE_SIZE overrides it).
QUEUE = 65536
# Spans per export request (the SDK's default is 512; OTEL_BSP_MAX_EXPORT_BATCH_SIZE overrides it).
BATCH = 2048

_propagator = TraceContextTextMapPropagator()
_set_span = trace.set_span_in_context
_attach, _detach = otel_context.attach, otel_context.detach
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
_NO_PARENT = otel_context.Context()  # an empty context: a new trace
# Variables that set span limits (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
# ...): with one set, spans go through the SDK, which applies them.
_LIMIT_VARIABLES = ("OTEL_SPAN_", "OTEL_ATTRIBUTE_", "OTEL_EVENT_", "OTEL_LINK_")


def _span_context(context: Any) -> SpanContext | None:
    """The span context of the current span in `context` (None for none)."""
    if context is None:
        return None
    found = trace.get_current_span(context).get_span_context()
    return found if found.is_valid else None


class OtelTracing:
    """The spans of one run (or of one Ray worker's share of it)."""

    def __init__(self, config: RobustFTConfig, *, parent: dict[str, str] | None = None):
        self.content = config.run.otel_content
        # Samples whose id hashes below this are traced (crc32: fast, and the same in every process).
        self._sample_below = int(config.run.otel_sample * 2**32)
        self.provider, self.owned, processor = _provider()
        self.tracer = self.provider.get_tracer("robustft", __version__)
        # The spans of samples and embedding batches hang under this: the run's span once it exists.
        self.parent = _propagator.extract(parent) if parent else None
        self._root = _span_context(self.parent)
        # The light path (`_Span`): with our own provider, its default sampler and no span limits
        # asked for, and without content (whose long texts the SDK's limits may have to cut).
        self.light = (processor is not None and not self.content
                      and not any(k.startswith(_LIMIT_VARIABLES) or k == "OTEL_TRACES_SAMPLER" for k in os.environ))
        if self.light:
            self._emit = processor.on_end
            self._resource = self.provider.resource
            self._scope = InstrumentationScope("robustft", __version__)
            self._ids = self.provider.id_generator
        self._samples: dict[str, _Span] = {}
        self._models: dict[int, tuple[ModelConfig, str, dict[str, Any]]] = {}
        self._closed = False
        state.runs += 1

    # --- the run -------------------------------------------------------------------------------

    @contextmanager
    def run_span(self, attributes: dict[str, Any]) -> Iterator[trace.Span]:
        span = self.tracer.start_span("robustft.run", context=self.parent, attributes=attributes)
        self.parent = _set_span(span)
        self._root = span.get_span_context()
        token = _attach(self.parent)
        try:
            yield span
        except BaseException as exc:
            _failed_sdk(span, exc)
            raise
        finally:
            _detach(token)
            self._end_samples()
            span.end()

    def carrier(self) -> dict[str, str]:
        """The run span's context as W3C `traceparent`, for spans made in another process."""
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=self.parent)
        return carrier

    def worker_settings(self) -> dict[str, Any]:
        """What a Ray worker needs to trace its samples under this run: the run span's context, and
        the exporter's variables as this process has them (a worker's node may not)."""
        return {"parent": self.carrier(),
                "env": {k: v for k, v in os.environ.items() if k.startswith("OTEL_") and k != "OTEL_SDK_DISABLED"}}

    async def flush(self) -> None:
        """Export what has ended so far (a Ray worker, after each batch: it may be killed at any time)."""
        import asyncio

        await asyncio.to_thread(self.provider.force_flush)

    def close(self) -> None:
        """Send every span still queued; shut the exporter down if it is ours."""
        if self._closed:
            return
        self._closed = True
        state.runs -= 1
        self._end_samples()
        if self.owned:
            self.provider.shutdown()  # flushes first
        else:
            self.provider.force_flush()

    # --- spans of samples, nodes, model calls and embedding batches -------------------------------

    def _start(self, name: str, parent: SpanContext | None, attributes: dict[str, Any],
               kind: SpanKind = SpanKind.INTERNAL) -> "_Span":
        """A span under `parent` (None: the root of a new trace), started now (see `_Span`)."""
        span = _Span(name, parent, attributes, kind)
        if self.light:
            if parent is not None and parent.is_valid:
                trace_id = parent.trace_id
            else:  # no parent: the root of a new trace
                trace_id, span.parent = self._ids.generate_trace_id(), None
            span.context = SpanContext(trace_id, self._ids.generate_span_id(), False, _SAMPLED)
        else:
            span.sdk = self.tracer.start_span(
                name, context=_set_span(NonRecordingSpan(parent)) if parent is not None else _NO_PARENT,
                kind=kind, attributes=attributes, start_time=span.start)
            span.context = span.sdk.get_span_context()
        return span

    def _end(self, span: "_Span") -> None:
        """Ends `span`: on the light path, the SDK's record of it goes to the batch processor now."""
        end = time_ns()
        if self.light:
            events = [Event(name, attributes, at) for name, attributes, at in span.events] if span.events else ()
            self._emit(ReadableSpan(name=span.name, context=span.context, parent=span.parent, resource=self._resource,
                                    attributes=span.attributes, events=events, kind=span.kind,
                                    status=span.status or _UNSET, start_time=span.start, end_time=end,
                                    instrumentation_scope=self._scope))
            return
        sdk = span.sdk
        if span.late:
            sdk.set_attributes(span.late)
        for name, attributes, at in span.events or ():
            sdk.add_event(name, attributes, at)
        if span.status is not None:
            sdk.set_status(span.status)
        sdk.end(end)

    def _sample(self, state: dict[str, Any]) -> "_Span | None":
        """The sample's span (started at its first node), or None when the sample is not traced."""
        sid = state["id"]
        span = self._samples.get(sid)
        if span is None:
            if self._sample_below < 2**32 and zlib.crc32(str(sid).encode()) >= self._sample_below:
                return None
            phase = "relabel" if state.get("examples") is not None else "detect"
            span = self._samples[sid] = self._start("robustft.sample", self._root,
                                                    {"robustft.sample.id": str(sid), "robustft.phase": phase})
        return span

    def _end_sample(self, state: dict[str, Any]) -> None:
        span = self._samples.pop(state["id"], None)
        if span is None:
            return
        status = state.get("status")
        if status:
            span.set({"robustft.sample.status": status})
        if status == "failed":
            span.status = Status(StatusCode.ERROR, redact(str(state.get("error") or "failed")))
        self._end(span)

    def _end_samples(self) -> None:
        """Samples still in the graph when the run stops (interrupted, or a service down)."""
        for span in self._samples.values():
            span.set({"robustft.sample.status": "unfinished"})
            self._end(span)
        self._samples.clear()

    def node(self, name: str, fn: Callable[[dict], Awaitable[dict]]) -> Callable[[dict], Awaitable[dict]]:
        """`fn` (a node) with a span per step, under its sample's span; model calls made in it go under it."""
        content = self.content

        async def traced(state: dict) -> dict:
            sample = self._sample(state)
            if sample is None:  # not traced: no span in the node, nor in its model calls
                token = _attach(_UNTRACED)
                try:
                    return await fn(state)
                finally:
                    _detach(token)
            span = self._start(name, sample.context, {"robustft.node": name})
            # The node's span is the current one while it runs (another library's spans hang under it).
            token = _attach(_set_span(NonRecordingSpan(span.context) if span.sdk is None else span.sdk))
            try:
                update = await fn(state)
                # Only what is unusual: every attribute costs CPU on each of thousands of spans.
                record = (update.get("nodes") or {}).get(name)
                if isinstance(record, dict):
                    if (record.get("attempts") or 0) > 1:
                        span.set({"robustft.node.attempts": record["attempts"]})
                    if record.get("error"):
                        span.set({"robustft.node.error": redact(str(record["error"]))})
                    if content and record.get("answer") is not None:
                        span.set({"robustft.node.answer": redact(str(record["answer"]))})
                return update
            except BaseException as exc:
                _failed(span, exc)
                raise
            finally:
                _detach(token)
                self._end(span)

        traced.__name__, traced.__doc__ = fn.__name__, fn.__doc__
        return traced

    def route(self, fn: Callable[[dict], str], end: str) -> Callable[[dict], str]:
        """`fn` (a node's route), ending the sample's span when the route leaves the graph."""
        def traced(state: dict) -> str:
            target = fn(state)
            if target == end:
                self._end_sample(state)
            return target

        return traced

    # --- model calls ------------------------------------------------------------------------------

    def _model(self, config: ModelConfig) -> tuple[ModelConfig, str, dict[str, Any]]:
        """A call span's attributes at its start. The sampling settings (the same for every call of a
        model) are on the run span, not repeated on each call: each attribute costs CPU per span."""
        found = self._models.get(id(config))
        if found is None:
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": config.provider,
                "gen_ai.request.model": config.name or ""}
            urls = config.base_urls
            if len(urls) == 1:  # with replicas, the one that answered is set by `annotate_reply`
                attributes.update(server_attributes(urls[0]))
                _only_replica.add(urls[0])
            # The config is kept in the entry, so that its id stays unique.
            found = self._models[id(config)] = (config, f"chat {config.name}", attributes)
        return found

    def model_settings(self, config: ModelConfig) -> dict[str, Any]:
        """The sampling settings of a model, for the run span."""
        settings = {"gen_ai.request.max_tokens": config.max_tokens, "gen_ai.request.temperature": config.temperature}
        if config.seed is not None:
            settings["gen_ai.request.seed"] = config.seed
        return settings

    def model_call(self, config: ModelConfig, messages: list[dict[str, str]], *,
                   preflight: bool = False) -> "_CallSpan":
        """`with`: one model call, whose span is made when it ends (see `_CallSpan`); the backend's
        hooks (`annotate_reply`, `add_failover`) and `failed_attempt` annotate it meanwhile."""
        context = _current_context()
        if not preflight and context.get(_UNTRACED_KEY):
            return _NO_CALL  # a call of a sample that is not traced
        _, name, attributes = self._model(config)
        attributes = dict(attributes)
        if preflight:
            attributes["robustft.preflight"] = True
        if self.content:
            attributes["gen_ai.input.messages"] = _messages_json(messages)
        parent = self._root if preflight else trace.get_current_span(context).get_span_context()
        return _CallSpan(self, self._start(name, parent, attributes, SpanKind.CLIENT))

    def stored(self, call: "_Span", gen: Any) -> None:
        """The call was answered from the response store: no usage (nothing was paid)."""
        call.set({"robustft.store.hit": True})
        if self.content:
            call.set({"gen_ai.output.messages": _reply_json(gen.text)})

    def paid(self, call: "_Span", gen: Any) -> None:
        call.set({"gen_ai.usage.input_tokens": gen.prompt_tokens, "gen_ai.usage.output_tokens": gen.completion_tokens})
        if self.content:
            call.set({"gen_ai.output.messages": _reply_json(gen.text)})

    def failed_attempt(self, error: BaseException, retryable: bool) -> None:
        """An attempt of the current call failed (it is retried when `retryable` and tries are left)."""
        call = _current_call.get()
        if call is not None:
            call.event("robustft.retry" if retryable else "robustft.call_failed",
                       {"error.type": type(error).__name__, "robustft.error": redact(str(error))[:500]})

    # --- embeddings ---------------------------------------------------------------------------------

    def embedder(self, inner: Any) -> "TracedEmbedder":
        return TracedEmbedder(inner, self)

    def embeddings(self, model: str, texts: int) -> "_CallSpan":
        """`with`: a span for one batch of texts embedded (under the current span, else the run's)."""
        current = trace.get_current_span().get_span_context()
        return _CallSpan(self, self._start(f"embeddings {model}", current if current.is_valid else self._root,
                                           {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": model,
                                            "robustft.embedding.texts": texts}, SpanKind.CLIENT))


class _NoCallSpan:
    """The call of a sample that is not traced: no span (`ModelCalls` skips its hooks for None)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        pass


_NO_CALL = _NoCallSpan()
# The context a node of an untraced sample runs in: no current span, so the backends' hooks and the
# retry events annotate nothing, and a marker that its model calls make no span.
_UNTRACED_KEY = otel_context.create_key("robustft-untraced")
_UNTRACED = otel_context.set_value(_UNTRACED_KEY, True, trace.set_span_in_context(trace.INVALID_SPAN))
_current_context = otel_context.get_current


class _Span:
    """A span of a sample, node, model call or embedding batch, from its start to its end.

    `context` is its id (the parent of the spans made meanwhile). On the light path
    (`OtelTracing.light`: robustft's own provider, which exports through the SDK's batch processor)
    nothing of the SDK's is made until the span ends: then one `ReadableSpan`, the record the SDK's
    own spans hand their processors when they end, goes to the processor, with every attribute,
    event and status at once. That costs a third of an SDK span's CPU (no attribute checks, locks,
    sampler, bounded lists, nor the copy `Span.end` makes), and a run makes about 8.5 a sample;
    the attributes are robustft's own, of the types OTLP takes. Otherwise (an application's
    provider, a sampler or span limits set by the variables, content on) `sdk` is the SDK's span,
    started at once, its processors and limits applying as to any other.
    (A class with slots: this runs for every span.)"""

    __slots__ = ("name", "parent", "attributes", "kind", "start", "context", "sdk", "late", "events", "status")

    def __init__(self, name: str, parent: SpanContext | None, attributes: dict[str, Any], kind: SpanKind):
        self.name, self.parent, self.attributes, self.kind = name, parent, attributes, kind
        self.start = time_ns()
        self.sdk: Any = None
        self.late: dict[str, Any] | None = None  # set after the start, on the SDK path
        self.events: list[tuple[str, dict[str, Any], int]] | None = None
        self.status: Status | None = None

    def set(self, attributes: dict[str, Any]) -> None:
        if self.sdk is None:
            self.attributes.update(attributes)
        elif self.late is None:
            self.late = dict(attributes)
        else:
            self.late.update(attributes)

    def event(self, name: str, attributes: dict[str, Any]) -> None:
        if self.events is None:
            self.events = []
        self.events.append((name, attributes, time_ns()))


class _CallSpan:
    """`with`: one model call or embedding batch, the current call (`_current_call`) until it ends,
    which the backends' hooks annotate (reply, fail-overs, retries). It is not OpenTelemetry's
    current span: spans another library makes during the call (an instrumented HTTP client) hang
    under the node's. (A class: cheaper than a generator, and this runs for every model call.)"""

    __slots__ = ("tracing", "span", "token")

    def __init__(self, tracing: "OtelTracing", span: _Span):
        self.tracing, self.span = tracing, span

    def __enter__(self) -> _Span:
        self.token = _current_call.set(self.span)
        return self.span

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        _current_call.reset(self.token)
        if exc is not None:
            _failed(self.span, exc)
        self.tracing._end(self.span)


# The model call (or embedding batch) running in this task, if it is traced.
_current_call: ContextVar[_Span | None] = ContextVar("robustft_current_call", default=None)


class TracedEmbedder:
    """An embedder whose `embed` batches are spans; everything else is the embedder's."""

    def __init__(self, inner: Any, tracing: OtelTracing):
        self._inner = inner
        self._tracing = tracing
        self._model = getattr(inner, "model_name", None) or str(getattr(inner, "identity", "embeddings"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def embed(self, texts: Any) -> Any:
        with self._tracing.embeddings(self._model, len(texts)):
            return await self._inner.embed(texts)


# --- what backends report (robustft.tracing.reply / failover) ----------------------------------------

_servers: dict[str, dict[str, Any]] = {}
# URLs that are the only replica of their model: the call span has their address from its start.
_only_replica: set[str] = set()


def server_attributes(url: str) -> dict[str, Any]:
    """`server.address` and `server.port` of a base URL: host and port only, never its credentials."""
    found = _servers.get(url)
    if found is None:
        parts = urlsplit(url)
        found = {"server.address": parts.hostname or ""}
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80 if parts.scheme == "http" else None)
        except ValueError:
            port = None
        if port:
            found["server.port"] = port
        _servers[url] = found
    return found


def annotate_reply(url: str, data: Any) -> None:
    """`robustft.tracing.reply` while tracing is on."""
    call = _current_call.get()
    if call is None:
        return
    if url not in _only_replica:
        call.set(server_attributes(url))
    if isinstance(data, dict):
        choices = data.get("choices")
        if isinstance(choices, list):
            reasons = [c.get("finish_reason") for c in choices if isinstance(c, dict)]
            if reasons and all(isinstance(r, str) for r in reasons):
                call.set({"gen_ai.response.finish_reasons": reasons})


def add_failover(url: str, error_type: str) -> None:
    """`robustft.tracing.failover` while tracing is on."""
    call = _current_call.get()
    if call is not None:
        call.event("robustft.replica_failed", {**server_attributes(url), "error.type": error_type})



# --- helpers -----------------------------------------------------------------------------------------


def _failed(span: _Span, exc: BaseException) -> None:
    import asyncio

    if isinstance(exc, (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt)):
        span.set({"robustft.cancelled": True})
        return
    message = redact(str(exc))[:1000]
    span.set({"error.type": type(exc).__name__})
    span.event("exception", {"exception.type": type(exc).__name__, "exception.message": message})
    span.status = Status(StatusCode.ERROR, message)


def _failed_sdk(span: trace.Span, exc: BaseException) -> None:
    """`_failed` for an SDK span (the run's)."""
    failure = _Span("", None, {}, SpanKind.INTERNAL)
    _failed(failure, exc)
    span.set_attributes(failure.attributes)
    for name, attributes, at in failure.events or ():
        span.add_event(name, attributes, at)
    if failure.status is not None:
        span.set_status(failure.status)


def _messages_json(messages: list[dict[str, str]]) -> str:
    return json.dumps([{"role": m.get("role"), "parts": [{"type": "text", "content": redact(m.get("content"))}]}
                       for m in messages], ensure_ascii=False)


def _reply_json(text: str) -> str:
    return json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": redact(text)}]}],
                      ensure_ascii=False)


def _provider() -> tuple[Any, bool, Any]:
    """The application's SDK provider when it set one up; else ours, exporting over OTLP, and our
    batch processor."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current, False, None
    # Every span of a run is sampled unless OTEL_TRACES_SAMPLER says otherwise; ALWAYS_ON is the
    # default's decision for robustft's own root, without looking up a parent for each span.
    sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else ALWAYS_ON
    provider = TracerProvider(resource=_resource(), sampler=sampler)
    queue = {} if "OTEL_BSP_MAX_QUEUE_SIZE" in os.environ else {"max_queue_size": QUEUE}
    if "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" not in os.environ:
        # Fewer, larger requests: each costs a wake-up of the exporter thread and an HTTP round trip.
        queue["max_export_batch_size"] = BATCH
    processor = BatchSpanProcessor(_exporter(), **queue)
    provider.add_span_processor(processor)
    return provider, True, processor


class _Resource(Resource):
    """A Resource whose hash is computed once: the OTLP encoder groups every span by its resource,
    and `Resource.__hash__` serialises the attributes to JSON each time (about 10 % of encoding)."""

    def __init__(self, resource: Resource):
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or super().__eq__(other)


def _resource() -> Resource:
    detected = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    name = str(detected.attributes.get("service.name", ""))
    if not name or name.startswith("unknown_service"):
        detected = detected.merge(Resource({"service.name": "robustft"}))
    return _Resource(detected)


def _exporter() -> Any:
    protocol = (os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip()
    if protocol == "http/protobuf":
        module = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
        package = "opentelemetry-exporter-otlp-proto-http"
    elif protocol == "grpc":
        module = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"
        package = "opentelemetry-exporter-otlp-proto-grpc"
    else:
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: robustft exports traces "
                          f"over {' or '.join(PROTOCOLS)} (unset it for http/protobuf)")
    import importlib

    try:
        exporter = importlib.import_module(module).OTLPSpanExporter
    except ImportError:
        raise ConfigError(f"traces over {protocol} need {package}: pip install {package} "
                          f"(or {state.INSTALL} for http/protobuf)") from None
    if protocol == "http/protobuf":
        from .export import fast_exporter

        return fast_exporter(exporter)
    return exporter()

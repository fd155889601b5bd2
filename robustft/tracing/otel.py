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
encoded and sent from its thread, off the event loop. An application that set up the SDK itself
keeps its provider: robustft's spans go to its exporters, and it is flushed, not shut down.
"""

from __future__ import annotations

import json
import os
import zlib
from contextlib import contextmanager
from typing import Any, Awaitable, Callable, Iterator
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind, Status, StatusCode
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


class OtelTracing:
    """The spans of one run (or of one Ray worker's share of it)."""

    def __init__(self, config: RobustFTConfig, *, parent: dict[str, str] | None = None):
        self.content = config.run.otel_content
        # Samples whose id hashes below this are traced (crc32: fast, and the same in every process).
        self._sample_below = int(config.run.otel_sample * 2**32)
        self.provider, self.owned = _provider()
        self.tracer = self.provider.get_tracer("robustft", __version__)
        # The spans of samples and embedding batches hang under this: the run's span once it exists.
        self.parent = _propagator.extract(parent) if parent else None
        self._samples: dict[str, trace.Span] = {}
        self._models: dict[int, tuple[ModelConfig, str, dict[str, Any]]] = {}
        self._closed = False
        state.runs += 1

    # --- the run -------------------------------------------------------------------------------

    @contextmanager
    def run_span(self, attributes: dict[str, Any]) -> Iterator[trace.Span]:
        span = self.tracer.start_span("robustft.run", context=self.parent, attributes=attributes)
        self.parent = _set_span(span)
        token = _attach(self.parent)
        try:
            yield span
        except BaseException as exc:
            _failed(span, exc)
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

    # --- samples and nodes -----------------------------------------------------------------------

    def _sample(self, state: dict[str, Any]) -> trace.Span | None:
        """The sample's span (started at its first node), or None when the sample is not traced."""
        sid = state["id"]
        span = self._samples.get(sid)
        if span is None:
            if self._sample_below < 2**32 and zlib.crc32(str(sid).encode()) >= self._sample_below:
                return None
            phase = "relabel" if state.get("examples") is not None else "detect"
            span = self._samples[sid] = self.tracer.start_span(
                "robustft.sample", context=self.parent, attributes={"robustft.sample.id": str(sid),
                                                                     "robustft.phase": phase})
        return span

    def _end_sample(self, state: dict[str, Any]) -> None:
        span = self._samples.pop(state["id"], None)
        if span is None:
            return
        status = state.get("status")
        if status:
            span.set_attribute("robustft.sample.status", status)
        if status == "failed":
            span.set_status(Status(StatusCode.ERROR, redact(str(state.get("error") or "failed"))))
        span.end()

    def _end_samples(self) -> None:
        """Samples still in the graph when the run stops (interrupted, or a service down)."""
        for span in self._samples.values():
            span.set_attribute("robustft.sample.status", "unfinished")
            span.end()
        self._samples.clear()

    def node(self, name: str, fn: Callable[[dict], Awaitable[dict]]) -> Callable[[dict], Awaitable[dict]]:
        """`fn` (a node) with a span per step, under its sample's span; model calls made in it go under it."""
        tracer, content = self.tracer, self.content

        async def traced(state: dict) -> dict:
            sample = self._sample(state)
            if sample is None:  # not traced: no span in the node, nor in its model calls
                token = _attach(_UNTRACED)
                try:
                    return await fn(state)
                finally:
                    _detach(token)
            span = tracer.start_span(name, context=_set_span(sample), attributes={"robustft.node": name})
            token = _attach(_set_span(span))
            try:
                update = await fn(state)
                # Only what is unusual: every attribute costs CPU on each of thousands of spans.
                record = (update.get("nodes") or {}).get(name)
                if isinstance(record, dict):
                    if (record.get("attempts") or 0) > 1:
                        span.set_attribute("robustft.node.attempts", record["attempts"])
                    if record.get("error"):
                        span.set_attribute("robustft.node.error", redact(str(record["error"])))
                    if content and record.get("answer") is not None:
                        span.set_attribute("robustft.node.answer", redact(str(record["answer"])))
                return update
            except BaseException as exc:
                _failed(span, exc)
                raise
            finally:
                _detach(token)
                span.end()

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
        """A span around one model call (made current: the backend's hooks annotate it)."""
        if not preflight and _current_context().get(_UNTRACED_KEY):
            return _NO_CALL  # a call of a sample that is not traced
        _, name, attributes = self._model(config)
        if preflight or self.content:
            attributes = dict(attributes)
            if preflight:
                attributes["robustft.preflight"] = True
            if self.content:
                attributes["gen_ai.input.messages"] = _messages_json(messages)
        return _CallSpan(self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes,
                                                context=self.parent if preflight else None))

    def stored(self, span: trace.Span, gen: Any) -> None:
        """The call was answered from the response store: no usage (nothing was paid)."""
        attributes: dict[str, Any] = {"robustft.store.hit": True}
        if self.content:
            attributes["gen_ai.output.messages"] = _reply_json(gen.text)
        _set_at_end(span, attributes)

    def paid(self, span: trace.Span, gen: Any) -> None:
        attributes = {"gen_ai.usage.input_tokens": gen.prompt_tokens,
                      "gen_ai.usage.output_tokens": gen.completion_tokens}
        if self.content:
            attributes["gen_ai.output.messages"] = _reply_json(gen.text)
        _set_at_end(span, attributes)

    def failed_attempt(self, error: BaseException, retryable: bool) -> None:
        """An attempt of the current call failed (it is retried when `retryable` and tries are left)."""
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event("robustft.retry" if retryable else "robustft.call_failed",
                           {"error.type": type(error).__name__, "robustft.error": redact(str(error))[:500]})

    # --- embeddings ---------------------------------------------------------------------------------

    def embedder(self, inner: Any) -> "TracedEmbedder":
        return TracedEmbedder(inner, self)

    def embeddings(self, model: str, texts: int) -> "_CallSpan":
        """`with`: a span for one batch of texts embedded, the current one until it ends."""
        current = trace.get_current_span()
        return _CallSpan(self.tracer.start_span(
            f"embeddings {model}", kind=SpanKind.CLIENT,
            context=None if current.is_recording() else self.parent,
            attributes={"gen_ai.operation.name": "embeddings", "gen_ai.request.model": model,
                        "robustft.embedding.texts": texts}))


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


# The attributes a call span gets while it runs (reply, usage, store hit), by id of the span: set in
# one `set_attributes` when it ends, since each call of it takes the span's lock and walks the SDK's
# attribute checks again.
_at_end: dict[int, dict[str, Any]] = {}


def _set_at_end(span: trace.Span, attributes: dict[str, Any]) -> None:
    """`attributes` on `span`: when it ends if it is one of our call spans, else now."""
    pending = _at_end.get(id(span))
    if pending is None:
        span.set_attributes(attributes)
    else:
        pending.update(attributes)


class _CallSpan:
    """`with`: the call's span is the current one until it ends (a class: cheaper than a generator,
    and this runs for every model call)."""

    __slots__ = ("span", "token", "key")

    def __init__(self, span: trace.Span):
        self.span = span

    def __enter__(self) -> trace.Span:
        self.key = id(self.span)
        _at_end[self.key] = {}
        self.token = _attach(_set_span(self.span))
        return self.span

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        _detach(self.token)
        attributes = _at_end.pop(self.key, None)
        if attributes:
            self.span.set_attributes(attributes)
        if exc is not None:
            _failed(self.span, exc)
        self.span.end()


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
    span = trace.get_current_span()
    if not span.is_recording():
        return
    attributes = {} if url in _only_replica else dict(server_attributes(url))
    if isinstance(data, dict):
        choices = data.get("choices")
        if isinstance(choices, list):
            reasons = [c.get("finish_reason") for c in choices if isinstance(c, dict)]
            if reasons and all(isinstance(r, str) for r in reasons):
                attributes["gen_ai.response.finish_reasons"] = reasons
    if attributes:
        _set_at_end(span, attributes)


def add_failover(url: str, error_type: str) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event("robustft.replica_failed", {**server_attributes(url), "error.type": error_type})


# --- helpers -----------------------------------------------------------------------------------------


def _failed(span: trace.Span, exc: BaseException) -> None:
    import asyncio

    if isinstance(exc, (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt)):
        span.set_attribute("robustft.cancelled", True)
        return
    message = redact(str(exc))[:1000]
    span.set_attribute("error.type", type(exc).__name__)
    span.add_event("exception", {"exception.type": type(exc).__name__, "exception.message": message})
    span.set_status(Status(StatusCode.ERROR, message))


def _messages_json(messages: list[dict[str, str]]) -> str:
    return json.dumps([{"role": m.get("role"), "parts": [{"type": "text", "content": redact(m.get("content"))}]}
                       for m in messages], ensure_ascii=False)


def _reply_json(text: str) -> str:
    return json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": redact(text)}]}],
                      ensure_ascii=False)


def _provider() -> tuple[Any, bool]:
    """The application's SDK provider when it set one up; else ours, exporting over OTLP."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current, False
    # Every span of a run is sampled unless OTEL_TRACES_SAMPLER says otherwise; ALWAYS_ON is the
    # default's decision for robustft's own root, without looking up a parent for each span.
    sampler = None if os.environ.get("OTEL_TRACES_SAMPLER") else ALWAYS_ON
    provider = TracerProvider(resource=_resource(), sampler=sampler)
    queue = {} if "OTEL_BSP_MAX_QUEUE_SIZE" in os.environ else {"max_queue_size": QUEUE}
    if "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" not in os.environ:
        # Fewer, larger requests: each costs a wake-up of the exporter thread and an HTTP round trip.
        queue["max_export_batch_size"] = BATCH
    provider.add_span_processor(BatchSpanProcessor(_exporter(), **queue))
    return provider, True


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
    return exporter()

"""OTLP trace requests encoded straight to protobuf bytes, for robustft's own exporter.

The OTLP/HTTP exporter of opentelemetry-python builds an `ExportTraceServiceRequest` message
object by object (a `Span`, a `KeyValue` and an `AnyValue` per attribute, ...) and then
serialises it: with ~9 spans per sample, that was about a third of what tracing cost a run
(`benchmarks/results/framework_cost_tracing.md`). This writes the same wire format directly, and
keeps the bytes of what repeats from span to span (an attribute such as `gen_ai.request.model`
with its value, the resource, the scope, the trace id).

The output is the request the SDK's `encode_spans` builds, field for field (tests/test_tracing.py
decodes both with opentelemetry-proto and compares them); only the order of the fields on the wire
may differ, which protobuf allows. Field numbers: opentelemetry/proto/trace/v1/trace.proto and
common/v1/common.proto.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

_logger = logging.getLogger(__name__)

_fixed64 = struct.Struct("<Q").pack
_fixed32 = struct.Struct("<I").pack
_double = struct.Struct("<d").pack

# Span flags (trace.proto SpanFlags), as the SDK sets them: whether the parent is remote is known.
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_FLAGS_LOCAL = b"\x85\x01" + _fixed32(_HAS_IS_REMOTE)            # field 16, fixed32
_FLAGS_REMOTE = b"\x85\x01" + _fixed32(_HAS_IS_REMOTE | _IS_REMOTE)
_INT64 = 2**63


def _varint_slow(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Most lengths and counts are small: their varints are looked up, not computed.
_SMALL = [_varint_slow(i) for i in range(4096)]


def _varint(n: int) -> bytes:
    return _SMALL[n] if n < 4096 else _varint_slow(n)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    n = len(payload)
    return tag + (_SMALL[n] if n < 4096 else _varint_slow(n)) + payload


def _string(tag: bytes, text: str) -> bytes:
    return _field(tag, text.encode("utf-8", "surrogatepass"))


def _any_value(value: Any) -> bytes:
    """The bytes of an AnyValue (common.proto), for the types the SDK's encoder accepts."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _string(b"\x0a", value)
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise ValueError(f"{value} does not fit in an int64")
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(b"\x32", b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"invalid type {type(value).__name__} of value {value!r}")


def _key_value(key: str, value: Any) -> bytes:
    return _string(b"\x0a", key) + _field(b"\x12", _any_value(value))


# Attributes with their values, as the field of a message that holds them (tag 0x0a... differs by
# message, so the cache keeps the KeyValue's own bytes). Keyed by the value's type too: True == 1.
_kv_cache: dict[tuple[str, type, Any], bytes] = {}
_KV_CACHE_MAX = 16384
_CACHED_TYPES = (str, int, bool, float)


def _attributes(tag: bytes, attributes: Any) -> list[bytes]:
    """The KeyValue fields of `attributes`; one that cannot be encoded is left out and logged (as the
    SDK's encoder does)."""
    out = []
    cache = _kv_cache
    for key, value in attributes.items():
        kind = type(value)
        if kind in _CACHED_TYPES:
            entry = (key, kind, value)
            kv = cache.get(entry)
            if kv is None:
                try:
                    kv = _key_value(key, value)
                except Exception as error:  # noqa: BLE001 - one bad attribute must not lose the batch
                    _logger.exception("Failed to encode key %s: %s", key, error)
                    continue
                if len(cache) >= _KV_CACHE_MAX:
                    cache.clear()
                cache[entry] = kv
        else:
            try:
                kv = _key_value(key, value)
            except Exception as error:  # noqa: BLE001
                _logger.exception("Failed to encode key %s: %s", key, error)
                continue
        n = len(kv)
        out.append(tag + (_SMALL[n] if n < 4096 else _varint_slow(n)) + kv)
    return out


_trace_ids: dict[int, bytes] = {}


def _trace_id(trace_id: int) -> bytes:
    found = _trace_ids.get(trace_id)
    if found is None:
        if len(_trace_ids) > 256:
            _trace_ids.clear()
        found = _trace_ids[trace_id] = trace_id.to_bytes(16, "big")
    return found


def _span(span: Any) -> bytes:
    """The bytes of one Span message (trace.proto) for an SDK `ReadableSpan`."""
    context = span.context
    parent = span.parent
    name = span.name.encode("utf-8", "surrogatepass")
    n = len(name)
    parts = [b"\x0a\x10", _trace_id(context.trace_id), b"\x12\x08", context.span_id.to_bytes(8, "big"),
             b"\x2a", _SMALL[n] if n < 4096 else _varint_slow(n), name,
             b"\x30", _SMALL[span.kind.value + 1],  # SpanKind INTERNAL (0) is SPAN_KIND_INTERNAL (1), ...
             b"\x39", _fixed64(span.start_time), b"\x41", _fixed64(span.end_time)]
    state = context.trace_state
    if state:
        parts.append(_string(b"\x1a", ",".join(f"{k}={v}" for k, v in state.items())))
    if parent is not None:
        parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"), _FLAGS_REMOTE if parent.is_remote else _FLAGS_LOCAL)
    else:
        parts.append(_FLAGS_LOCAL)
    attributes = span.attributes
    if attributes:
        parts += _attributes(b"\x4a", attributes)
    if span.dropped_attributes:
        parts += (b"\x50", _varint(span.dropped_attributes))
    for event in span.events:
        fields = [b"\x09", _fixed64(event.timestamp), _string(b"\x12", event.name)]
        if event.attributes:
            fields += _attributes(b"\x1a", event.attributes)
        if event.dropped_attributes:
            fields += (b"\x20", _varint(event.dropped_attributes))
        parts.append(_field(b"\x5a", b"".join(fields)))
    if span.dropped_events:
        parts += (b"\x60", _varint(span.dropped_events))
    for link in span.links:
        linked = link.context
        fields = [b"\x0a\x10", _trace_id(linked.trace_id), b"\x12\x08", linked.span_id.to_bytes(8, "big"),
                  b"\x35", _fixed32(_HAS_IS_REMOTE | (_IS_REMOTE if linked.is_remote else 0))]
        if link.attributes:
            fields += _attributes(b"\x22", link.attributes)
        if link.dropped_attributes:
            fields += (b"\x28", _varint(link.dropped_attributes))
        parts.append(_field(b"\x6a", b"".join(fields)))
    if span.dropped_links:
        parts += (b"\x70", _varint(span.dropped_links))
    status = span.status
    code = status.status_code.value
    if code == 0 and not status.description:
        parts.append(b"\x7a\x00")  # the SDK always sets the (empty) status
    else:
        body = (_string(b"\x12", status.description) if status.description else b"") + \
            (b"\x18" + _varint(code) if code else b"")
        parts.append(_field(b"\x7a", body))
    return b"".join(parts)


# Resources and scopes, by identity (every span of a provider shares its objects): their encoding
# and the objects themselves, so that an id is not reused while its entry is here.
_encoded: dict[int, tuple[Any, bytes]] = {}


def _resource(resource: Any) -> bytes:
    found = _encoded.get(id(resource))
    if found is None or found[0] is not resource:
        body = _field(b"\x0a", b"".join(_attributes(b"\x0a", resource.attributes)))
        if resource.schema_url:
            body += _string(b"\x1a", resource.schema_url)
        found = _encoded[id(resource)] = (resource, body)
    return found[1]


def _scope(scope: Any) -> bytes:
    found = _encoded.get(id(scope))
    if found is None or found[0] is not scope:
        if scope is None:
            body = _field(b"\x0a", b"")
        else:
            fields = _string(b"\x0a", scope.name) if scope.name else b""
            if scope.version:
                fields += _string(b"\x12", scope.version)
            if scope.attributes:
                fields += b"".join(_attributes(b"\x1a", scope.attributes))
            body = _field(b"\x0a", fields)
            if scope.schema_url:
                body += _string(b"\x1a", scope.schema_url)
        found = _encoded[id(scope)] = (scope, body)
    return found[1]


def encode_spans(spans: Sequence[Any]) -> bytes:
    """An ExportTraceServiceRequest with `spans` (SDK ReadableSpans), serialised."""
    groups: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
    for span in spans:
        resource, scope = span.resource, span.instrumentation_scope or None
        scopes = groups.get(id(resource))
        if scopes is None:
            scopes = groups[id(resource)] = (resource, {})
        found = scopes[1].get(id(scope))
        if found is None:
            found = scopes[1][id(scope)] = (scope, [])
        encoded = _span(span)
        n = len(encoded)
        found[1].append(b"\x12" + (_SMALL[n] if n < 4096 else _varint_slow(n)) + encoded)
    out = []
    for resource, scopes in groups.values():
        body = [_resource(resource)]
        for scope, encoded_spans in scopes.values():
            body.append(_field(b"\x12", _scope(scope) + b"".join(encoded_spans)))
        out.append(_field(b"\x0a", b"".join(body)))
    return b"".join(out)

"""The OTLP/HTTP span exporter of opentelemetry-python, with robustft's encoder (`encode.py`).

Everything but the encoding is the SDK's: endpoint, headers, timeout, compression, TLS and retries
come from the same variables and go through the same HTTP client. The SDK's `export` builds the
request as protobuf message objects; this one writes the same bytes directly, about 3.5 times
less CPU per span (tests/test_tracing.py compares the two requests field for field;
benchmarks/results/framework_cost_tracing.md has what it saves a run). It needs the exporter's
internals as opentelemetry-exporter-otlp-proto-http 1.40+ has them (`_client`, `_metrics`): with
another version, the SDK's own `export` is used unchanged.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from .encode import encode_spans

_logger = logging.getLogger(__name__)
_NEEDS = ("_client", "_metrics", "_shutdown", "_max_request_size")


def fast_exporter(sdk_exporter: type) -> Any:
    """An exporter of class `sdk_exporter` (the SDK's OTLPSpanExporter for HTTP), made from the
    standard variables, whose requests are encoded by `encode_spans`."""
    global _too_large, _TooLarge, _Result
    exporter = _subclass(sdk_exporter)()
    try:
        from opentelemetry.exporter.otlp.proto.http._common import RequestPayloadTooLargeError, _is_request_too_large
        from opentelemetry.sdk.trace.export import SpanExportResult
    except ImportError:
        exporter.fast = False
        return exporter
    _too_large, _TooLarge, _Result = _is_request_too_large, RequestPayloadTooLargeError, SpanExportResult
    if not all(hasattr(exporter, name) for name in _NEEDS):
        exporter.fast = False
    return exporter


_too_large: Any = None
_TooLarge: Any = None
_Result: Any = None


_classes: dict[type, type] = {}


def _subclass(base: type) -> type:
    found = _classes.get(base)
    if found is None:
        found = _classes[base] = type("RobustftSpanExporter", (base,), {"export": _export, "fast": True,
                                                                         "__doc__": __doc__})
    return found


def _export(self: Any, spans: Sequence[Any]) -> Any:
    """The SDK's `export`, but for the encoding (its steps, its logs, its metrics)."""
    if not self.fast or self._shutdown:
        return super(type(self), self).export(spans)
    with self._metrics.export_operation(len(spans)) as result:
        try:
            data = encode_spans(spans)
        except Exception as error:  # noqa: BLE001 - as the SDK: a batch that cannot be encoded fails alone
            _logger.error("Failed to encode span batch: %s", error)
            result.error = error
            return _Result.FAILURE
        if _too_large(data, self._max_request_size):
            _logger.warning("Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                            len(data), self._max_request_size)
            result.error = _TooLarge(f"Serialized span request size {len(data)} bytes exceeds "
                                                       f"max_request_size {self._max_request_size} bytes.")
            return _Result.FAILURE
        sent = self._client.export(data)
        if not sent.success:
            result.error = sent.error
            result.error_attrs = ({"http.response.status_code": sent.status_code}
                                  if sent.status_code is not None else None)
            return _Result.FAILURE
    return _Result.SUCCESS

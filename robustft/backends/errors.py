"""The one error type a backend raises for a failed call, with what a retry loop needs to know."""

from __future__ import annotations

# 4xx answers other than these are the request's own fault (a wrong model name or key, a prompt
# too long): sending it again cannot help.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})


class BackendError(Exception):
    """A model or embedding call that failed.

    `status_code`: the HTTP status, or None for a transport failure or a malformed reply.
    `retry_after`: seconds the server asked us to wait (`Retry-After` on 429/503), else None.
    `retryable`: whether sending the same request again may succeed.
    `server_down`: whether the failure says the server is unreachable or overloaded (no connection,
    a timeout, 502/503/504, every replica resting) rather than that this request got a bad answer
    (a 500, a malformed reply): only the first keeps a call waiting through an outage.
    """

    def __init__(self, message: str, *, status_code: int | None = None, retry_after: float | None = None,
                 retryable: bool | None = None, server_down: bool | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after
        self.retryable = is_retryable_status(status_code) if retryable is None else retryable
        self.server_down = (status_code is None or status_code in (502, 503, 504)) if server_down is None \
            else server_down


def is_retryable_status(status: int | None) -> bool:
    if status is not None and 400 <= status < 500:
        return status in RETRYABLE_4XX
    return True

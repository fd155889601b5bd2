"""A server the test starts as its own process group (`start_new_session=True`): a free port to
give it, and a stop that reaches whatever it started (langgraph dev's workers, Phoenix's)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the process's group, SIGKILL when it has not exited within `grace_s`."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:  # the group is gone already
        process.wait()
        return
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

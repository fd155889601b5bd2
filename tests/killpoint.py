"""Run a robustft command and SIGKILL it at its Nth write in a folder: deterministic, no timing.

    python tests/killpoint.py N FOLDER robustft-args...

A Python audit hook (PEP 578) sees every file opened for writing, every rename/replace, removal,
truncation and chmod the process makes; the Nth of these under FOLDER kills the process on the
spot (before that operation happens), as a power cut or `kill -9` would. Exit code: the command's,
or -9 (killed). With N larger than the command's writes it runs to the end; `KILLPOINT_COUNT=FILE`
makes it write how many writes it saw there (so a test can kill at each one in turn).
"""

from __future__ import annotations

import os
import signal
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def main() -> int:
    target, folder, argv = int(sys.argv[1]), os.path.realpath(sys.argv[2]), sys.argv[3:]
    seen = 0

    def inside(path: object) -> bool:
        if isinstance(path, bytes):
            path = path.decode(errors="replace")
        if not isinstance(path, str):
            return False
        return os.path.realpath(os.path.abspath(path)).startswith(folder + os.sep)

    def hook(event: str, args: tuple) -> None:
        nonlocal seen
        if event == "open":
            path, mode, flags = args
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & WRITE_FLAGS)
            hit = writes and inside(path)
        elif event in ("os.rename", "os.replace"):
            hit = inside(args[0]) or inside(args[1])
        elif event in ("os.remove", "os.unlink", "os.truncate", "os.chmod", "os.rmdir", "shutil.rmtree"):
            hit = inside(args[0])
        else:
            return
        if hit:
            seen += 1
            if seen == target:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    from robustft.cli import main as robustft

    code = robustft(argv)
    count_file = os.environ.get("KILLPOINT_COUNT")
    if count_file:
        with open(count_file, "w") as fh:  # outside FOLDER: not counted
            fh.write(str(seen))
    return code


if __name__ == "__main__":
    sys.exit(main())

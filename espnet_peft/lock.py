"""An exclusive lock on a file in a directory: one training run per output directory."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import PeftError


class DirLock:
    """An exclusive, non-blocking lock on a file in a directory (released when the process ends)."""

    def __init__(self, path: Path, what: str):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "another process"
            self.fh.close()
            raise PeftError(f"{what} is in use: {holder} holds {path}; wait for it to finish or stop it") from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        self.fh.flush()

    def release(self):
        self.fh.close()


"""One writer per --out folder.

``vaebench run`` and ``vaebench evaluate`` hold an exclusive lock on
``<out>/.vaebench.lock`` (filelock, an OS file lock) while they write there, and
note their pid beside it. A second process is refused with the holder's pid. The
OS releases the lock when its holder dies, even by ``kill -9``, so a stale lock
file is simply taken over.
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock, Timeout

from vaebench.errors import UsageError

LOCK_FILE = ".vaebench.lock"
PID_FILE = ".vaebench.pid"


class OutLock:
    def __init__(self, out: Path):
        self.out = Path(out)
        self._lock: FileLock | None = None

    def acquire(self) -> None:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create --out {self.out} ({exc.strerror}); choose a folder you can write to") from None
        lock = FileLock(str(self.out / LOCK_FILE), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            holder = _read_pid(self.out / PID_FILE)
            who = f"process {holder}" if holder else "another process"
            raise UsageError(
                f"{self.out} is in use by another vaebench ({who}); wait for it to finish, or choose another --out"
            ) from None
        except OSError as exc:
            raise UsageError(f"cannot lock --out {self.out} ({exc.strerror}); choose a folder you can write to") from None
        self._lock = lock
        try:
            (self.out / PID_FILE).write_text(f"{os.getpid()}\n")
        except OSError:
            pass  # the lock holds without the note

    def release(self) -> None:
        if self._lock is not None:
            try:
                (self.out / PID_FILE).unlink(missing_ok=True)
            except OSError:
                pass
            self._lock.release()
            self._lock = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None

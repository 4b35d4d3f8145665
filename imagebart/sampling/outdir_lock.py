"""One writer per output folder: an ``flock`` on ``<outdir>/.lock`` that names its holder.

Sampling and editing runs resume in place, so two runs writing the same folder would interleave
their files; the second is refused with a message that says who holds the folder.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class OutdirLocked(ValueError):
    """Another run is writing to the same output folder."""


class OutdirLock:
    """``with OutdirLock(outdir):`` one writer per output folder.

    An ``flock`` on ``<outdir>/.lock``: the kernel drops it when the holder dies, so a lock left by
    a killed run never blocks. The file records the holder (pid, host, start, command) for the
    message the next run shows; it is never deleted, as deleting it would let two runs lock two
    different files of the same name.
    """

    def __init__(self, outdir, name: str = "--outdir"):
        self.outdir, self.name, self.fd = Path(outdir), name, None

    def __enter__(self) -> "OutdirLock":
        try:
            import fcntl
        except ImportError:  # not POSIX: run unlocked rather than not at all
            logger.warning("no file locking on this system: make sure no other run writes to %s", self.outdir)
            return self
        path = self.outdir / LOCK_NAME
        try:
            self.outdir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ValueError(f"{self.name} {self.outdir}: cannot create {path} ({err.strerror or err})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 4096).decode(errors="replace")
            os.close(fd)
            raise OutdirLocked(f"{self.name} {self.outdir} is in use by another run ({describe_holder(holder)}); "
                               f"wait for it to finish, or choose another {self.name}") from None
        self._remove_stale_temporaries()
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "command": " ".join(sys.argv)[:300]}).encode())
        self.fd = fd
        return self

    def _remove_stale_temporaries(self) -> None:
        """Temporary files a killed writer left (``.<name>.<random>.tmp``): only the lock holder may remove them."""
        for stale in self.outdir.rglob(".*.tmp"):
            logger.info("removing %s, left by an interrupted run", stale)
            stale.unlink(missing_ok=True)

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)  # releases the flock
            self.fd = None


def describe_holder(text: str) -> str:
    """The lock file's record as words, saying whether its process still runs on this host."""
    try:
        holder = json.loads(text)
        pid, host = int(holder["pid"]), str(holder["host"])
    except (ValueError, KeyError, TypeError):
        return "its holder left no record yet"
    words = f"process {pid} on {host}, started {holder.get('started', '?')}: {holder.get('command', '?')}"
    if host == socket.gethostname() and not pid_alive(pid):
        words += f"; process {pid} has ended, so a child process of it still holds the lock"
    return words


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True

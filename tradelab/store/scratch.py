"""A reader's scratch directory, and a view of a store on media it cannot write.

Readers are RocksDB secondaries: RocksDB keeps their info log and state in a directory of their
own, and rocksdict writes ``rocksdict-config.json`` into *the store's* directory on every open.
So a reader needs

* a scratch directory under the system's temporary directory, never inside the store, named
  ``tradelab-reader-{pid}-…`` so that the scratch of a reader killed before it could remove it
  is removed by the next reader that opens (:func:`remove_orphans`: the pid is no longer
  alive);
* on read-only media (a read-only mount, an immutable directory, a directory this user may not
  write), a *view* of the store (:func:`sync_view`): a directory in the scratch directory that
  holds one symbolic link per store file. RocksDB reads the files through the links; rocksdict
  writes its config file next to them, in the scratch. A writer elsewhere keeps adding files
  (a flush, a compaction): the reader re-syncs the view before it catches up.

Why: docs/storage-layout.md, "Processes" and "Failures".
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from tradelab.logs import get_logger

__all__ = [
    "SCRATCH_PREFIX",
    "new_scratch_dir",
    "pid_alive",
    "remove_orphans",
    "store_writable",
    "sync_view",
]

log = get_logger("tradelab.store")

SCRATCH_PREFIX = "tradelab-reader-"
_OWNED = re.compile(re.escape(SCRATCH_PREFIX) + r"(\d+)-")
_NOT_IN_VIEW = {"LOCK", "rocksdict-config.json"}  # rocksdict writes its own config there


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists on this host (signal 0: nothing is sent)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def remove_orphans(tmp: str | None = None) -> int:
    """Remove the scratch directories of readers whose process is gone; how many went.

    A directory named ``tradelab-reader-{pid}-…`` whose pid no longer exists belonged to a
    reader that was killed before it could clean up. Directories of live processes (and of
    this one) stay.
    """
    base = tmp or tempfile.gettempdir()
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            m = _OWNED.match(entry.name)
            if not m or not entry.is_dir(follow_symlinks=False):
                continue
            pid = int(m.group(1))
            if pid == os.getpid() or pid_alive(pid):
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    if removed:
        log.debug("Removed %d scratch directories of readers that were killed", removed)
    return removed


def new_scratch_dir() -> str:
    """A new scratch directory for a reader of this process."""
    return tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-")


def store_writable(p: Path) -> bool:
    """Whether this process may create files in the store directory (rocksdict must)."""
    return os.access(p, os.W_OK)


def sync_view(store: Path, view: Path) -> Path:
    """Make ``view`` a directory of symbolic links to every file of ``store`` (but the lock
    and rocksdict's config); links to files that went are removed. Returns ``view``."""
    view.mkdir(exist_ok=True)
    names = {e.name for e in os.scandir(store) if e.name not in _NOT_IN_VIEW}
    present = {e.name for e in os.scandir(view) if e.is_symlink()}
    for name in names - present:
        with contextlib.suppress(FileExistsError):
            os.symlink(store / name, view / name)
    for name in present - names:
        with contextlib.suppress(OSError):
            (view / name).unlink()
    return view

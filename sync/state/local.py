"""State in a local directory (the default). Atomic replace via os.replace;
locks via O_CREAT|O_EXCL, which the filesystem guarantees only one creator wins;
compare-and-delete under an flock of a sidecar file. Files are 0600 in 0700
directories: snapshots hold endpoint ids. Durable: a file is fsynced before it is
renamed or linked into place, and its folder after (and a new folder's parent),
so a pointer or in-doubt record that was written survives a power loss.

Temporary files are hidden (``.<name>.<pid>@<host>.<random>.tmp``, see
``sync.core.owners``) and removed when a write fails (a full disk); those a
killed process left are collected by the next run (``collect_debris``)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from sync.core import owners
from sync.state.base import StateStore


class LocalStateStore(StateStore):
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def _location(self, key: str) -> str:
        return str(self._path(key))

    def _read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        self._mkdir(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owners.tag()}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def _create(self, key: str, data: bytes) -> bool:
        # Written in full to a temp file, then linked into place: link() fails if the name
        # exists, so one creator wins, and a kill can never leave an empty lock behind.
        path = self._path(key)
        self._mkdir(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owners.tag()}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)
        _fsync_dir(path.parent)
        return True

    def _delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    @contextlib.contextmanager
    def _unchanged(self, key: str, expected: bytes) -> Iterator[bool]:
        """Under the key's sidecar flock (compare-and-delete and compare-and-replace take the same one):
        whether the file still holds exactly ``expected``."""
        path = self._path(key)
        if not path.parent.exists():
            yield False
            return
        mutex = path.with_name(f".{path.name}.mutex")
        fd = os.open(mutex, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = path.read_bytes() == expected
            except FileNotFoundError:
                same = False
            yield same
        finally:
            os.close(fd)

    def _delete_if_unchanged(self, key: str, expected: bytes) -> bool:
        with self._unchanged(key, expected) as same:
            if same:
                self._path(key).unlink()
            return same

    def _replace_if_unchanged(self, key: str, expected: bytes, data: bytes) -> bool:
        with self._unchanged(key, expected) as same:
            if same:
                self._write(key, data)  # atomic replace
            return same

    def _mkdir(self, path: Path) -> None:
        """Make ``path`` and every missing parent 0700 (``mkdir(parents=True)`` gives parents the umask's mode)."""
        missing = []
        while not path.exists():
            missing.append(path)
            path = path.parent
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)
            _fsync_dir(folder.parent)

    def _list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.exists():
            return []
        return [str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file() and not p.name.startswith(".")]

    def _upload(self, key: str, path: Path) -> None:
        dest = self._path(key)
        self._mkdir(dest.parent)
        tmp = dest.with_name(f".{dest.name}.{owners.tag()}.{uuid.uuid4().hex[:6]}.tmp")
        try:
            shutil.copyfile(path, tmp)
            os.chmod(tmp, 0o600)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:  # a full disk: no half-copied temporary file stays behind
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(dest.parent)

    def collect_debris(self, is_dead: Callable[[dict], bool], max_age_seconds: float) -> list[str]:
        """Remove temporary files a dead process left (a kill mid-write); returns their keys.

        A file goes when its owner (in its name) ran on this host and is gone, or when it is older than
        ``max_age_seconds`` (longer than any run lasts); a live run's files are left alone.
        """
        if not self.root.is_dir():
            return []
        cutoff, removed = time.time() - max_age_seconds, []
        for path in self.root.rglob(".*.tmp"):
            with contextlib.suppress(OSError):  # gone meanwhile (its writer finished): nothing to do
                owner = owners.temp_owner(path.name)
                if (owner is not None and is_dead(owner)) or path.lstat().st_mtime < cutoff:
                    path.unlink()
                    removed.append(str(path.relative_to(self.root)))
        return removed

    def _download(self, key: str, path: Path) -> bool:
        src = self._path(key)
        if not src.exists():
            return False
        shutil.copyfile(src, path)
        os.chmod(path, 0o600)
        return True


def _fsync_dir(path: Path) -> None:
    """Make the names in ``path`` (a rename, link or new folder in it) survive a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""The files destination: a delivery appears whole in <path>/<run_id>/<segment>/, or not at all."""

from __future__ import annotations

import errno
import shutil

import pytest

from sync.destinations.files import FilesDestination
from tests.destinations.test_pinpoint import RUN_ID, delivery, write_csv

SEGMENT = "seg_email_clickers"


def test_an_interrupted_copy_leaves_no_half_delivery_in_sight(tmp_path, monkeypatch):
    """Guards issue 15 behaviour 13: files are staged and the segment folder appears with one rename, so an interrupted
    copy leaves no half delivery; verified to fail on a broken copy (sync/destinations/files.py:FilesDestination.deliver
    copying straight into the final folder)."""
    # Given a delivery of three import files, and a disk that fills up while the second one is copied
    files = [write_csv(tmp_path / "import" / f"part-{n:05d}.csv", rows=5) for n in range(3)]
    dest = FilesDestination(tmp_path / "exports")
    dest.preflight()
    copy = shutil.copyfile
    copied = []

    def disk_full_on_the_second_file(src, dst, *args, **kwargs):
        copied.append(src)
        if len(copied) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return copy(src, dst, *args, **kwargs)

    # When it is delivered
    with monkeypatch.context() as m:
        m.setattr(shutil, "copyfile", disk_full_on_the_second_file)
        with pytest.raises(OSError, match="No space left"):
            dest.deliver(delivery(files, segment=SEGMENT))
    # Then nothing of it is in sight: no run folder holds part of the segment
    final = tmp_path / "exports" / RUN_ID / SEGMENT
    assert not final.exists()
    assert [p.name for p in (tmp_path / "exports").iterdir()] == [".incoming"]
    # And delivered again, the segment folder appears whole, with its receipt
    result = dest.deliver(delivery(files, segment=SEGMENT))
    assert result.confirmed and result.location == str(final)
    assert sorted(p.name for p in final.iterdir()) == ["_delivery.json", *(f.name for f in files)]
    assert all((final / f.name).read_bytes() == f.read_bytes() for f in files)

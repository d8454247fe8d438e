"""
Local storage: an upload's data file keeps its bytes exact while the
kernel writes it out behind the appends, and the page cache holds no more
of it than the disk may be behind (util-linux's fincore counts its pages
in memory).
"""

import os
import subprocess
import threading

from incoming.storage.local import LocalStorage
from incoming.storage.writeback import WriteBehind

WINDOW = WriteBehind.window
BEHIND = WriteBehind.behind_limit


def pages_in_memory(path):
    """
    How many bytes of C{path} the page cache holds.
    """
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    return int(out.strip())


def on_a_disk(path):
    filesystem = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True).stdout
    assert "tmpfs" not in filesystem, f"{path} must be on a disk-backed filesystem, not {filesystem}"


def appended(stored, data, piece):
    for start in range(0, len(data), piece):
        stored.append([data[start : start + piece]])


def test_an_upload_holds_no_more_memory_than_the_disk_may_be_behind(tmp_path):
    on_a_disk(tmp_path)
    storage = LocalStorage(tmp_path)
    data = os.urandom(2 * BEHIND + 12345)
    stored = storage.open("u1")
    appended(stored, data, 256 * 1024 + 7)

    assert pages_in_memory(storage.path("u1")) <= BEHIND + WINDOW + 4096
    stored.sync()
    assert pages_in_memory(storage.path("u1")) == 0
    stored.close()
    assert storage.path("u1").read_bytes() == data


def test_appends_after_a_cut_and_a_reopening_keep_the_bytes_exact(tmp_path):
    storage = LocalStorage(tmp_path)
    data = os.urandom(6 * WINDOW)
    stored = storage.open("u1")
    appended(stored, data[: 4 * WINDOW], 1 << 20)
    # A chunk that failed its checksum is cut off again.
    stored.truncate(3 * WINDOW - 100)
    appended(stored, data[3 * WINDOW - 100 : 5 * WINDOW], 300_001)
    stored.close()
    # The next request opens the file at the upload's offset.
    stored = storage.open_at("u1", 5 * WINDOW)
    appended(stored, data[5 * WINDOW :], 1 << 20)
    stored.sync()
    stored.close()
    assert storage.path("u1").read_bytes() == data


def test_appends_go_on_when_the_file_is_removed_meanwhile(tmp_path):
    """
    A cancelled upload's file is removed while a request may still be
    writing: its appends neither fail nor wait for a disk the write-behind
    can no longer watch.
    """
    storage = LocalStorage(tmp_path)
    stored = storage.open("u1")
    storage.remove("u1")
    writer = threading.Thread(target=appended, args=(stored, os.urandom(2 * BEHIND), 1 << 20))
    writer.start()
    writer.join(timeout=60)
    assert not writer.is_alive(), "the appends are stuck"
    assert stored.size == 2 * BEHIND
    stored.close()


def test_a_file_appended_by_requests_in_turn_is_flushed_as_it_grows(tmp_path, monkeypatch):
    """
    A chunked upload's file is opened by each request in turn; each one
    flushes the disk for its own part, so the fsync before the handover
    does not have the whole upload to flush.
    """
    flushed = []
    fdatasync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (flushed.append(fd), fdatasync(fd)))
    path = tmp_path / "u1.data"
    piece = os.urandom(WriteBehind.flush_every)
    requests = []
    for n in range(6):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT)
        write_behind = WriteBehind(fd, path, n * len(piece))
        os.pwrite(fd, piece, n * len(piece))
        write_behind.appended((n + 1) * len(piece))
        write_behind.finished((n + 1) * len(piece))
        os.close(fd)
        requests.append(write_behind)
    for write_behind in requests:
        write_behind.caught_up()

    assert len(flushed) == 6
    assert pages_in_memory(path) == 0
    assert path.read_bytes() == piece * 6

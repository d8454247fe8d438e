"""
Uploads stored as files in one local directory (or a filesystem shared with
the backend), named by upload id so that nothing the browser sends ever
becomes part of a path.
"""

import errno
import os
from pathlib import Path

from zope.interface import implementer

from . import IStorage, IStoredFile
from .writeback import WriteBehind

DATA_SUFFIX = ".data"

# writev takes at most this many buffers at once (IOV_MAX on Linux).
_MAX_BUFFERS = 1024


@implementer(IStorage)
class LocalStorage:
    def __init__(self, directory):
        self.directory = Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, upload_id):
        return self.directory / (upload_id + DATA_SUFFIX)

    def open(self, upload_id):
        return LocalFile(self.path(upload_id))

    def open_at(self, upload_id, offset):
        return LocalFile(self.path(upload_id), offset)

    def size(self, upload_id):
        try:
            return self.path(upload_id).stat().st_size
        except FileNotFoundError:
            return 0

    def location(self, upload_id):
        return str(self.path(upload_id))

    def remove(self, upload_id):
        try:
            self.path(upload_id).unlink()
        except FileNotFoundError:
            pass

    def concatenate(self, upload_id, part_ids):
        with open(self.path(upload_id), "wb") as target:
            for part_id in part_ids:
                try:
                    part = open(self.path(part_id), "rb")
                except FileNotFoundError:
                    continue  # a part of 0 bytes never got a file
                with part:
                    _copy(part.fileno(), target.fileno(), os.fstat(part.fileno()).st_size)

    def upload_ids(self):
        return [
            entry.name[: -len(DATA_SUFFIX)]
            for entry in os.scandir(self.directory)
            if entry.name.endswith(DATA_SUFFIX)
        ]


@implementer(IStoredFile)
class LocalFile:
    """
    An upload's data file, appended to from a worker thread.

    Appends go through the page cache, and the kernel writes them out behind
    the upload as it arrives (L{WriteBehind}), so memory stays flat and the
    fsync before the handover has little left to write. Every append is
    complete on return: nothing is held back in memory between calls.
    """

    def __init__(self, path, offset=None):
        self._path = path
        self._fd = None
        self._write_behind = None
        self.size = None
        self._offset = offset
        if offset is None:
            self._open()

    def _open(self):
        """
        Open the file (at once, or for L{LocalStorage.open_at} with the first
        call, in the worker thread: creating a file costs the reactor thread
        a tenth of its time when hundreds of uploads start at once).
        """
        if self._fd is None:
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self.size = os.fstat(self._fd).st_size
            self._write_behind = WriteBehind(self._fd, self._path, self.size)
            if self._offset is not None and self.size != self._offset:
                self.truncate(self._offset)

    def append(self, buffers):
        self._open()
        before = self.size
        try:
            self._write_all([memoryview(b).cast("B") for b in buffers])
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                # Keep the file exactly as it was: the chunk was not taken.
                self.truncate(before)
            raise
        self._write_behind.appended(self.size)

    def _write_all(self, views):
        """
        Write C{views} at the end of the file.
        """
        for start in range(0, len(views), _MAX_BUFFERS):
            batch = views[start : start + _MAX_BUFFERS]
            while batch:
                written = os.pwritev(self._fd, batch, self.size)
                self.size += written
                # pwritev may stop short; go on from where it stopped.
                while batch and written >= len(batch[0]):
                    written -= len(batch[0])
                    batch.pop(0)
                if batch and written:
                    batch[0] = batch[0][written:]

    def truncate(self, size):
        self._open()
        os.ftruncate(self._fd, size)
        self.size = size
        self._write_behind.truncated(size)

    def sync(self):
        self._open()
        os.fsync(self._fd)
        self._write_behind.synced()

    def read(self, chunk_size):
        with open(self._path, "rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def close(self):
        if self._fd is not None and self._fd >= 0:
            self._write_behind.finished(self.size)
            os.close(self._fd)
        self._fd = -1


def _copy(source, target, count):
    """
    Copy C{count} bytes in the kernel (a reflink where the filesystem can),
    falling back to reading and writing where it cannot.
    """
    try:
        while count:
            copied = os.copy_file_range(source, target, count)
            if copied == 0:
                raise OSError(errno.EIO, "source ended early")
            count -= copied
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
        while count and (chunk := os.read(source, min(count, 1 << 20))):
            os.write(target, chunk)
            count -= len(chunk)

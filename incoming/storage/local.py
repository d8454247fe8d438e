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
    def __init__(self, path):
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._path = path
        self.size = os.fstat(self._fd).st_size
        os.lseek(self._fd, self.size, os.SEEK_SET)

    def append(self, buffers):
        before = self.size
        try:
            for start in range(0, len(buffers), _MAX_BUFFERS):
                self._write_all(buffers[start : start + _MAX_BUFFERS])
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                # Keep the file exactly as it was: the chunk was not taken.
                self.truncate(before)
            raise

    def _write_all(self, buffers):
        views = [memoryview(b) for b in buffers]
        while views:
            written = os.writev(self._fd, views)
            self.size += written
            # writev may stop short; go on from where it stopped.
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if views and written:
                views[0] = views[0][written:]

    def truncate(self, size):
        os.ftruncate(self._fd, size)
        os.lseek(self._fd, size, os.SEEK_SET)
        self.size = size

    def sync(self):
        os.fsync(self._fd)

    def read(self, chunk_size):
        with open(self._path, "rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def close(self):
        if self._fd >= 0:
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

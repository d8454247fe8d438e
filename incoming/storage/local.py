"""
Uploads stored as files in one local directory (or a filesystem shared with
the backend), named by upload id so that nothing the browser sends ever
becomes part of a path.
"""

import errno
import mmap
import os
import threading
from pathlib import Path

from zope.interface import implementer

from . import IStorage, IStoredFile

DATA_SUFFIX = ".data"

# writev takes at most this many buffers at once (IOV_MAX on Linux).
_MAX_BUFFERS = 1024

# Direct writes: offsets, lengths and memory must be multiples of the
# device's logical block size; 4096 suits every common device. Appends
# smaller than _DIRECT_MIN are not worth the detour and stay buffered.
_BLOCK = 4096
_DIRECT_MIN = 64 * 1024


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

    Large appends bypass the page cache (C{O_DIRECT}): on the virtual
    machines Incoming!! was measured on, copying into the page cache costs
    more CPU than everything else on the hot path together (1.2 to 2 CPU
    seconds per GiB, half of the server's CPU time), while a direct
    write costs 0.1 and leaves nothing for the final fsync to flush. See
    docs/performance.rst. Direct writes need block-aligned memory, offsets
    and lengths, so each append goes in three parts: a few buffered bytes up
    to the next block boundary, whole blocks copied through an aligned
    staging buffer and written directly, and the remaining partial block
    buffered again. Every append is complete on return: nothing is held
    back between calls. Where the filesystem refuses C{O_DIRECT} (tmpfs,
    some network filesystems) every write is buffered, as before.
    """

    # Direct writes go in whole blocks: an append that ends on a block
    # boundary leaves no partial block for the next one to finish through
    # the page cache.
    block_size = _BLOCK

    def __init__(self, path, offset=None):
        self._path = path
        self._fd = None
        # The descriptor for direct writes is opened by the first large
        # append.
        self._direct = None
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
            if self._offset is not None and self.size != self._offset:
                self.truncate(self._offset)

    def append(self, buffers):
        self._open()
        before = self.size
        try:
            views = [memoryview(b).cast("B") for b in buffers]
            total = sum(map(len, views))
            if total >= _DIRECT_MIN and self._direct is None:
                self._direct = _open_direct(self._path)
            if total >= _DIRECT_MIN and self._direct >= 0:
                self._append_direct(views, total)
            else:
                self._write_all(views)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                # Keep the file exactly as it was: the chunk was not taken.
                self.truncate(before)
            raise

    def _append_direct(self, views, total):
        head = -self.size % _BLOCK
        self._write_all(_take(views, head))
        body = (total - head) // _BLOCK * _BLOCK
        staging = _staging.take()
        try:
            while body:
                n = _fill(staging, views, min(body, len(staging)))
                self._write_direct(memoryview(staging)[:n])
                body -= n
        finally:
            _staging.give(staging)
        self._write_all(views)

    def _write_direct(self, view):
        while view:
            try:
                written = os.pwrite(self._direct, view, self.size)
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                # The filesystem took O_DIRECT at open but not for writing:
                # buffered from now on.
                os.close(self._direct)
                self._direct = -1
                self._write_all([view])
                return
            self.size += written
            view = view[written:]
            if view and written % _BLOCK:
                # A short write that left the offset unaligned: finish buffered.
                self._write_all([view])
                return

    def _write_all(self, views):
        """
        Buffered writes of C{views} at the end of the file (consumed).
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
        del views[:]

    def truncate(self, size):
        self._open()
        os.ftruncate(self._fd, size)
        self.size = size

    def sync(self):
        # Direct writes skip the page cache, but only fsync makes the
        # device's own cache and the file's size durable.
        self._open()
        os.fsync(self._fd)

    def read(self, chunk_size):
        with open(self._path, "rb") as f:
            while chunk := f.read(chunk_size):
                yield chunk

    def close(self):
        if self._fd is not None and self._fd >= 0:
            os.close(self._fd)
        self._fd = -1
        if self._direct is not None and self._direct >= 0:
            os.close(self._direct)
        self._direct = -1


def _open_direct(path):
    """
    A second descriptor of C{path} for direct writes, or -1 where the
    filesystem does not do them.
    """
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return -1
    try:
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC | flag)
    except OSError as e:
        if e.errno in (errno.EINVAL, errno.EOPNOTSUPP):
            return -1
        raise


def _take(views, count):
    """
    The first C{count} bytes of the memoryviews C{views}, removed from it.
    """
    taken = []
    while count and views:
        view = views[0]
        if len(view) <= count:
            taken.append(views.pop(0))
            count -= len(view)
        else:
            taken.append(view[:count])
            views[0] = view[count:]
            count = 0
    return taken


def _fill(staging, views, count):
    """
    Copy the first C{count} bytes of C{views} (removing them) into
    C{staging}; returns C{count}.
    """
    position = 0
    for view in _take(views, count):
        staging[position : position + len(view)] = view
        position += len(view)
    return position


class _StagingBuffers:
    """
    Page-aligned buffers for direct writes (anonymous mmaps are aligned),
    shared by all files: one per writing thread at most, reused, so memory
    does not grow with the number of uploads.
    """

    size = 1 << 20

    def __init__(self):
        self._free = []
        self._lock = threading.Lock()

    def take(self):
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, self.size)

    def give(self, buffer):
        with self._lock:
            self._free.append(buffer)


_staging = _StagingBuffers()


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

"""
Write-behind for files appended to in a stream: the kernel writes an
upload's data out as it arrives, and the pages it has written are dropped
from the page cache.

Left to itself, the kernel keeps what a server appends dirty in memory until
its dirty limits are reached (gigabytes on a large machine), so the fsync
before a handover had the whole upload to write and the page cache grew
into fresh memory, which a virtual machine pays for with a fault on every
page. Writing with C{O_DIRECT} instead waits for the disk on every write,
one write at a time. Here the kernel is asked to start writing each window
of the file as soon as it is appended (C{sync_file_range}), and what it has
written is dropped (C{posix_fadvise}): the disk always has work in flight,
an upload holds little of the page cache, its pages are reused for the
next windows, and the final fsync has little left to write.

Written out is not yet durable: a virtual disk with a write cache (the
host's page cache) takes the writes at once and makes them durable only
when the guest flushes it, which the final fsync does. Flushing 1 GiB at
the end took 0.4-0.8 s on the machine Incoming!! was measured on, on top
of the time the upload took to arrive. So every C{flush_every} bytes
written out, the file is fdatasynced while the upload goes on, and the
final fsync has little left to flush. See docs/performance.rst,
hot path.
"""

import ctypes
import ctypes.util
import errno
import os
import threading
from concurrent.futures import ThreadPoolExecutor

# sync_file_range(2) flags.
_WAIT_BEFORE = 1
_WRITE = 2
_WAIT_AFTER = 4

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _load_sync_file_range():
    """
    The C library's C{sync_file_range} (Linux only: Python has no binding),
    or None. Called through ctypes, it releases the GIL like any call of a
    C{CDLL} function.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()

# The threads that wait for the disk on the writers' behalf. Few: each
# waits for the disk most of the time, and a flush empties the disk's whole
# write cache, so flushes at once for several files wait for each other.
_catchers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="incoming-writeback")


class WriteBehind:
    """
    Write-behind for one open file that grows by appends, from one writer
    thread.

    The writer only starts the writeback of each window; waiting for it,
    dropping it and flushing happen in a thread of L{_catchers}, so the
    writer goes on with the next batch (and its hashing) meanwhile. Done in
    the writer, each wait for the disk held up the hash of the batch beside
    it, and the two costs added up instead of overlapping. The writer waits
    only when the disk is more than C{behind_limit} bytes behind it.

    @ivar window: how many bytes are left to the kernel's writeback at a
        time. 2 MiB: a 1 GiB upload took the same time with windows of 1, 2
        and 4 MiB (and 4 to 32 MiB in a loop outside the server), and among
        500 uploads of 4 MiB at once a small window starts each upload's
        writeback before its end.
    @ivar behind_limit: how far the disk may be behind the writer. It
        must cover a flush: while the disk flushes its cache, writes wait,
        and at 800 MB/s 25-50 ms of flush are 20-40 MiB. 1 GiB in one
        PATCH went in at 710 MB/s with 32 MiB, 804 with 48, 822 with 64
        and 811 with 128 (4 interleaved rounds).
    @ivar flush_every: a flush is started each time the bytes written out
        pass a multiple of this offset (counted from the file's start, so
        that a file appended to by many requests in turn is flushed as
        often as one appended to by one). Small flushes keep the disk's
        cache small, and each flush short: with 8 MiB instead of 32, 1 GiB
        in one PATCH went in at 771 against 686 MB/s and in 8 MiB PATCHes
        at 713 against 612 (5 interleaved rounds); 64 MiB was slower
        still. Uploads of less than 8 MiB are flushed by their fsync
        alone.
    """

    window = 2 << 20
    behind_limit = 64 << 20
    flush_every = 8 << 20

    def __init__(self, fd, path, size):
        """
        @param size: the file's size now. What was appended before is the
            business of whoever appended it (see L{finished}).
        """
        self._fd = fd
        self._path = path
        # Everything before _started has been handed to writeback (by the
        # writer); everything before _dropped has been written and dropped
        # (by the catching-up thread).
        self._started = self._dropped = self._flushed = size - size % _PAGE
        # Whether a job of the catching-up thread runs; with _started and
        # _dropped, under _lock.
        self._lock = threading.Lock()
        self._running = False
        self._catching_up = None
        self._supported = _sync_file_range is not None

    def appended(self, size):
        """
        The file is now C{size} bytes long: once a window's worth is new,
        start writing it out, and have the catching-up thread wait for it.
        """
        end = size - size % _PAGE
        if not self._supported or end - self._started < self.window:
            return
        if not self._start_writeback(end):
            return
        self._catch_up()
        if self._started - self._dropped > self.behind_limit:
            self.caught_up()

    def finished(self, size):
        """
        No more appends come through this descriptor, and the file is
        C{size} bytes long: what is left is written out and dropped in the
        background. Never blocks.
        """
        if not self._supported:
            return
        self._started = max(self._started, size - size % _PAGE)
        self._catch_up()

    def caught_up(self):
        """
        Wait until the catching-up thread has done all it was given.
        """
        if self._catching_up is not None:
            self._catching_up.result()

    def _start_writeback(self, end):
        if _sync_file_range(self._fd, self._started, end - self._started, _WRITE) != 0:
            error = ctypes.get_errno()
            if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ESPIPE):
                # A file or filesystem that does not do it: leave the
                # writing to the kernel.
                self._supported = False
                return False
            raise OSError(error, os.strerror(error))
        self._started = end
        return True

    def _catch_up(self):
        """
        Have the catching-up thread go on to L{_started}: a job of its own,
        unless one runs, which then takes it in (L{_next_span} decides that
        under the lock, so nothing started is left behind).
        """
        with self._lock:
            if self._running or self._started <= self._dropped:
                return
            self._running = True
        self._catching_up = _catchers.submit(self._wait_and_drop)

    def _next_span(self):
        """
        The next span to wait for and drop, or None, when the job ends.
        """
        with self._lock:
            if self._dropped >= self._started:
                self._running = False
                return None
            return self._dropped, self._started

    def _wait_and_drop(self):
        """
        In a thread of L{_catchers}: wait until what was started is written,
        drop it from the page cache, and flush when one more C{flush_every}
        is written. Through a descriptor of its own: the writer's may be
        closed meanwhile, and an error met here is still reported to the
        writer's by the final fsync (Linux reports a writeback error once to
        each open file).
        """
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            # Removed meanwhile (a cancelled upload): nothing to wait for,
            # and the writer must not wait for this thread any more.
            self._give_up()
            return
        try:
            while (span := self._next_span()) is not None:
                start, end = span
                _sync_file_range(fd, start, end - start, _WAIT_BEFORE | _WRITE | _WAIT_AFTER)
                os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
                self._dropped = end
                if end // self.flush_every > self._flushed // self.flush_every:
                    self._flushed = end
                    os.fdatasync(fd)
        except OSError:
            self._give_up()  # the final fsync reports it
        finally:
            os.close(fd)

    def _give_up(self):
        with self._lock:
            self._supported = False
            self._dropped = self._started
            self._running = False

    def truncated(self, size):
        """
        The file was cut back to C{size} bytes.
        """
        self.caught_up()
        self._started = min(self._started, size - size % _PAGE)
        self._dropped = min(self._dropped, self._started)
        self._flushed = min(self._flushed, size)

    def synced(self):
        """
        The whole file is on disk (after an fsync): drop it from the page
        cache, whose pages then serve the next uploads.
        """
        os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)

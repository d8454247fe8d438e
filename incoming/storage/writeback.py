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
of the file as soon as it is appended (C{sync_file_range}), and the window
before it is waited for and dropped (C{posix_fadvise}): the disk always has
a window in flight, at most two windows of an upload are in memory, their
pages are reused for the next ones, and the final fsync writes out less
than two windows. See docs/performance.rst, hot path.
"""

import ctypes
import ctypes.util
import errno
import os

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


class WriteBehind:
    """
    Write-behind for one open file that grows by appends.

    @ivar window: how many bytes are left to the kernel's writeback at a
        time. 2 MiB: a 1 GiB upload took the same time with windows of 1 to
        32 MiB (the disk is what it waits for), and among 500 uploads of
        4 MiB at once a small window starts each upload's writeback before
        its end.
    """

    window = 2 << 20

    def __init__(self, fd):
        self._fd = fd
        # Everything before _started has been handed to writeback;
        # everything before _dropped has been written and dropped.
        self._started = 0
        self._dropped = 0
        self._supported = _sync_file_range is not None

    def appended(self, size):
        """
        The file is now C{size} bytes long: once a window's worth is new,
        start writing it, then wait for the window before it and drop it.
        """
        end = size - size % _PAGE
        if not self._supported or end - self._started < self.window:
            return
        if not self._call(self._started, end - self._started, _WRITE):
            return
        if self._started > self._dropped:
            self._call(self._dropped, self._started - self._dropped, _WAIT_BEFORE | _WRITE | _WAIT_AFTER)
            os.posix_fadvise(self._fd, self._dropped, self._started - self._dropped, os.POSIX_FADV_DONTNEED)
            self._dropped = self._started
        self._started = end

    def truncated(self, size):
        """
        The file was cut back to C{size} bytes.
        """
        self._started = min(self._started, size - size % _PAGE)
        self._dropped = min(self._dropped, self._started)

    def synced(self):
        """
        The whole file is on disk (after an fsync): drop it from the page
        cache, whose pages then serve the next uploads.
        """
        os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def _call(self, offset, count, flags):
        if _sync_file_range(self._fd, offset, count, flags) == 0:
            return True
        error = ctypes.get_errno()
        if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ESPIPE):
            # A file or filesystem that does not do it: leave the writing
            # to the kernel.
            self._supported = False
            return False
        raise OSError(error, os.strerror(error))

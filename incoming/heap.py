"""
How the read buffers of uploads use the C heap (glibc's malloc).

Each socket read of an upload is a new byte string of up to a few hundred
KiB, freed once it is written. Two things matter for them: that a read does
not cost fresh pages every time (L{keep_freed_memory}), and that the memory
kept for them goes back to the kernel once uploads stop (L{IdleTrim}).
Elsewhere than glibc, both do nothing.
"""

import ctypes


def _glibc():
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return libc


_libc = _glibc()


def keep_freed_memory():
    """
    Have glibc's malloc keep and reuse freed blocks of a few MiB instead of
    returning them to the kernel at once.

    By default glibc serves blocks over 128 KiB with a fresh mmap and gives
    the memory back when they are freed (and trims the heap top above
    128 KiB), so every read landed in new pages that the kernel must fault
    in and zero: in profiles, a tenth of the server's CPU time. Raising both
    thresholds to a few MiB lets the same memory serve read after read. The
    memory kept while uploads come in is bounded by what the receivers may
    hold (L{incoming.receive._ReadTurns}: its limit, plus a few MiB for each
    upload reading); the trim threshold is twice the limit so that the heap
    is not trimmed and regrown while many uploads come in at once.
    """
    if _libc is None:
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    _libc.mallopt(M_MMAP_THRESHOLD, 4 << 20)
    _libc.mallopt(M_TRIM_THRESHOLD, 32 << 20)


class IdleTrim:
    """
    Hands the memory kept for freed read buffers back to the kernel once
    no upload has read for L{delay} seconds.

    Reads of every size (a request's last ones are short) leave freed
    blocks that do not fit the next read, so the heap that
    L{keep_freed_memory} keeps grows, ever more slowly, with the uploads a
    server has taken: 7 MiB over a dozen uploads of 1 GiB, with each
    upload's peak higher than the one before. Trimmed when the uploads stop
    (C{malloc_trim}, under a millisecond), the server is back at its idle
    size between them. The chunks of a chunked upload come milliseconds
    apart, so their reads keep the memory from one chunk to the next.

    @ivar delay: seconds without an upload reading before the trim.
    """

    delay = 1.0

    def __init__(self, clock, trim=None):
        """
        @param clock: an L{IReactorTime}.
        @param trim: called with 0 to trim; glibc's C{malloc_trim} unless
            given (nothing where there is no glibc).
        """
        self._clock = clock
        self._trim = trim if trim is not None else getattr(_libc, "malloc_trim", None)
        self._call = None

    def busy(self):
        """
        An upload reads (or waits to): no trim until the uploads are idle.
        """
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def idle(self):
        """
        No upload reads or waits to: trim after L{delay}, unless one comes.
        """
        if self._call is None and self._trim is not None:
            self._call = self._clock.callLater(self.delay, self._run)

    def _run(self):
        self._call = None
        self._trim(0)

"""
The memory kept for upload read buffers (incoming/heap.py): kept while
uploads read, handed back to the kernel once they stop.
"""

import os

from twisted.internet.task import Clock

from incoming import heap
from incoming.receive import BodyReceiver, _ReadTurns

MiB = 1 << 20


def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Reader:
    """
    Stands in for a BodyReceiver in the turns: only told when to wait.
    """

    def wait_turn(self):
        pass

    def start_turn(self):
        pass


def test_freed_read_buffers_are_kept_then_handed_back_by_the_trim():
    heap.keep_freed_memory()
    reads = [os.urandom(BodyReceiver.read_size) for _ in range(256)]
    # Every other read is written and freed; the others, still held, keep
    # the freed ones apart (and from the heap's top, which would be
    # trimmed at once past the threshold).
    held, written = reads[1::2], reads[0::2]
    del reads
    before_free = resident_bytes()
    del written
    kept = resident_bytes()
    clock = Clock()
    trim = heap.IdleTrim(clock)

    trim.idle()
    clock.advance(trim.delay)

    # Kept for the next reads while uploads come in; the 128 reads freed
    # are 32 MiB, and most of it goes back at the trim.
    assert before_free - kept < 4 * MiB
    assert kept - resident_bytes() > 24 * MiB
    del held


def test_the_trim_comes_a_delay_after_the_last_upload_stops_reading():
    clock = Clock()
    trims = []
    turns = _ReadTurns(heap.IdleTrim(clock, trims.append))
    first, second = Reader(), Reader()

    turns.join(first)
    turns.join(second)
    turns.leave(first)
    clock.advance(2 * heap.IdleTrim.delay)
    assert trims == []  # the second still reads

    turns.leave(second)
    clock.advance(heap.IdleTrim.delay / 2)
    assert trims == []

    # The next chunk of an upload comes before the delay is over: the
    # memory stays for its reads.
    third = Reader()
    turns.join(third)
    clock.advance(2 * heap.IdleTrim.delay)
    assert trims == []

    turns.leave(third)
    clock.advance(heap.IdleTrim.delay)
    assert trims == [0]
    clock.advance(10 * heap.IdleTrim.delay)
    assert trims == [0]  # once per idle spell

"""
The threads that write and hash upload data run at a lower CPU priority than
the reactor thread, which answers every request (incoming/priority.py).
"""

import os

from harness import random_file, sha256_of

from incoming.priority import BULK_NICENESS


def thread_niceness(pid):
    """
    The nice value of each thread of process C{pid}, by thread id.
    """
    values = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            # Field 19 is the nice value; the command name before it, in
            # parentheses, may hold spaces.
            fields = f.read().rsplit(")", 1)[1].split()
        values[int(tid)] = int(fields[16])
    return values


def test_writer_and_hasher_threads_yield_to_the_reactor(server, backend, tus, tmp_path):
    source = random_file(tmp_path / "f.bin", 3 * 1024 * 1024)
    ticket = server.new_ticket(backend)
    tus.upload_file(ticket, source)
    assert backend.next_call()["sha256"] == sha256_of(source)

    pid = server.process.pid
    niceness = thread_niceness(pid)
    reactor = niceness.pop(pid)
    bulk = [tid for tid, value in niceness.items() if value == min(19, reactor + BULK_NICENESS)]
    # One upload alone: one writer thread appends, one hasher digests beside it.
    assert len(bulk) >= 2, niceness
    assert reactor == os.getpriority(os.PRIO_PROCESS, 0)

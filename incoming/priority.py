"""
The CPU priority of the threads that do bulk work: appending upload data
to files and hashing it.

The reactor thread answers every request (HEAD, the state URL, the backend
API) and reads every socket; bulk threads only make progress on bytes the
reactor has read. Run at the same priority, on a machine whose cores are
busy, the reactor waits its turn behind them and a HEAD answer takes tens of
milliseconds longer. Bulk threads therefore run at a higher nice value: the
reactor goes first whenever it has something to do, and the bulk threads
take every core it leaves idle. Throughput does not suffer, because the
reactor stops reading once the writers are behind (see receive.py), and
then does not compete for a core. docs/performance.rst has the figures.
"""

import os
import sys
import threading

# Added to the process's nice value for bulk threads (Linux caps it at 19).
BULK_NICENESS = 10


def lower_priority():
    """
    Give the calling thread the priority of bulk work.

    Only on Linux, where the nice value belongs to each thread (POSIX has it
    per process, and there it would slow down the reactor too). Raising it
    needs no privilege; where it is refused anyway, the thread stays as it
    was.
    """
    if not sys.platform.startswith("linux"):
        return
    thread = threading.get_native_id()
    try:
        # Relative to the main thread's: a thread starts with the value of
        # the thread that started it, which may be a bulk thread already.
        wanted = os.getpriority(os.PRIO_PROCESS, os.getpid()) + BULK_NICENESS
        if os.getpriority(os.PRIO_PROCESS, thread) < wanted:
            os.setpriority(os.PRIO_PROCESS, thread, wanted)
    except OSError:
        pass


class BulkThread(threading.Thread):
    """
    A thread that runs at the priority of bulk work (a L{ThreadPool}'s
    C{threadFactory}).
    """

    def run(self):
        lower_priority()
        super().run()

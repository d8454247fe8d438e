"""
The upload journal (incoming/registry/files.py), read back as a restarted
server reads it.
"""

import time

from harness import Turns
from incoming.registry.files import JOURNAL, WAKE_SLICE, FileRegistry


def registry(directory):
    # Not started: saves are written at once, in this thread.
    return FileRegistry(directory, reactor=None)


def records(directory):
    return {record["id"]: record for record in registry(directory).load_all().result}


def test_the_newest_record_of_each_upload_stands(tmp_path):
    first = registry(tmp_path)
    first.save({"id": "a", "offset": 1}, durable=True)
    first.save({"id": "b", "offset": 7}, durable=False)
    first.save({"id": "a", "offset": 2}, durable=False)
    first.remove("b")
    assert records(tmp_path) == {"a": {"id": "a", "offset": 2}}


def test_the_journal_is_rewritten_once_mostly_superseded(tmp_path):
    journal = registry(tmp_path)
    padding = "x" * 1000
    for offset in range(3000):
        journal.save({"id": "a", "offset": offset, "padding": padding}, durable=False)
    journal.save({"id": "b", "offset": 0}, durable=True)
    # 3 MB of records were appended; only two are current.
    assert (tmp_path / JOURNAL).stat().st_size < 1 << 20
    assert records(tmp_path) == {
        "a": {"id": "a", "offset": 2999, "padding": padding},
        "b": {"id": "b", "offset": 0},
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == [JOURNAL]


def test_the_waiters_of_a_batch_are_woken_a_slice_at_a_time(tmp_path):
    """
    Hundreds of saves written in one batch do not hold the reactor thread
    while every waiter goes on: each turn wakes waiters for about
    WAKE_SLICE, in order, and the registry stops only once all are woken.
    """
    turns = Turns()
    journal = FileRegistry(tmp_path, turns)
    journal.startService()
    count = 20
    try:
        wake_in_turns(journal, turns, count)
    finally:
        if journal._pool.started:  # stopped by stopService, unless a step failed
            journal._pool.stop()  # else pytest would wait for its thread
    assert set(records(tmp_path)) == {"first"} | {str(i) for i in range(count)}


def wake_in_turns(journal, turns, count):
    journal.save({"id": "first"}, durable=False)  # written at once
    woken = []

    def work(_, i):
        woken.append(i)
        time.sleep(WAKE_SLICE / 3)  # what a waiter does next, on the reactor thread

    for i in range(count):
        journal.save({"id": str(i)}, durable=False).addCallback(work, i)  # the next batch
    turns.from_thread()  # the first save is written
    turns.turn()  # its waiter is woken, and the next batch starts
    turns.from_thread()  # the next batch is written
    assert woken == []
    turns.turn()
    assert 1 <= len(woken) <= 6, woken
    stopped = journal.stopService()
    while len(woken) < count:
        assert not stopped.called
        turns.turn()
    assert woken == list(range(count))
    assert stopped.called

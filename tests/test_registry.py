"""
The upload journal (incoming/registry/files.py), read back as a restarted
server reads it.
"""

from incoming.registry.files import JOURNAL, FileRegistry


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

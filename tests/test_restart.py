"""
A server killed with SIGKILL at any point and started again carries on:
uploads resume from the bytes on disk, handovers are delivered, tickets and
'wait' confirmations stay valid.
"""

import base64
import hashlib
import json
import threading

from harness import journal_records, open_patch, random_file, sha256_of


def sha256_of_bytes(data):
    return hashlib.sha256(data).hexdigest()


def test_tickets_survive_a_restart(server, backend, tus):
    ticket = server.new_ticket(backend)
    server.restart()
    url = tus.create(ticket, 3)
    assert tus.patch(url, 0, b"abc").status_code == 204
    assert backend.next_call()["received_sha256"] == sha256_of_bytes(b"abc")


def test_killed_mid_upload_resumes_from_the_bytes_on_disk(server, backend, tus, tmp_path):
    size = 8 * 1024 * 1024
    source = random_file(tmp_path / "f.bin", size, seed=7)
    data = source.read_bytes()
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, size)
    acknowledged = 3 * 1024 * 1024
    assert tus.patch(url, 0, data[:acknowledged]).status_code == 204

    # More bytes arrive on a connection that is still open when the server
    # dies: they may or may not have reached the disk.
    sock = open_patch(url, acknowledged, size - acknowledged, data[acknowledged : acknowledged + 2 * 1024 * 1024])
    server.kill()
    sock.close()
    server.start()

    offset = tus.offset(url)
    stored = (server.storage / f"{ticket}.data").read_bytes()
    assert offset == len(stored)
    assert acknowledged <= offset <= acknowledged + 2 * 1024 * 1024
    assert stored == data[:offset]

    assert tus.patch(url, offset, data[offset:]).status_code == 204
    call = backend.next_call()
    assert call["sha256"] == call["received_sha256"] == sha256_of(source)


def test_a_verified_chunk_and_a_declared_length_survive_a_kill_right_after_their_answer(server, backend, tus):
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, None)
    checksum = "sha1 " + base64.b64encode(hashlib.sha1(b"01234").digest()).decode()
    assert tus.patch(url, 0, b"01234", **{"Upload-Checksum": checksum}).status_code == 204
    assert tus.patch(url, 5, b"567", **{"Upload-Length": "10"}).status_code == 204
    server.kill()
    server.start()
    response = tus.head(url)
    assert (response.headers["Upload-Offset"], response.headers["Upload-Length"]) == ("8", "10")
    assert tus.patch(url, 8, b"89").status_code == 204
    assert backend.next_call()["received_sha256"] == sha256_of_bytes(b"0123456789")


def test_the_offset_a_head_reports_is_in_the_journal(server, backend, tus):
    # A chunk's new offset is saved a moment after its answer; a HEAD has it
    # saved before answering, so what it reports is what a restart finds.
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 10)
    assert tus.patch(url, 0, b"01234").status_code == 204
    assert tus.offset(url) == 5
    assert journal_records(server.storage)[ticket]["offset"] == 5


def test_a_clean_stop_saves_the_offsets_still_to_be_saved(server, backend, tus):
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 10)
    assert tus.patch(url, 0, b"01234").status_code == 204
    server.stop()
    assert journal_records(server.storage)[ticket]["offset"] == 5
    server.start()
    assert tus.patch(url, 5, b"56789").status_code == 204
    assert backend.next_call()["received_sha256"] == sha256_of_bytes(b"0123456789")


def test_killed_mid_handover_hands_over_after_start(server, backend, tus):
    release = threading.Event()

    def answer(fields):
        if len(backend.all_calls) == 1:
            release.wait(30)  # the first call hangs until the server is gone
        return "done"

    backend.answer = answer
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 5)
    assert tus.patch(url, 0, b"hello").status_code == 204
    first = backend.next_call()
    server.kill()
    release.set()
    server.start()

    second = backend.next_call()
    assert second["id"] == first["id"] == ticket
    assert second["sha256"] == first["sha256"] == sha256_of_bytes(b"hello")
    assert second["received_sha256"] == sha256_of_bytes(b"hello")
    assert tus.wait_until_over(url)["state"] == "finished"


def test_killed_after_wait_still_accepts_finish_upload(server, backend, tus):
    backend.answer = "wait"
    ticket = server.new_ticket(backend, backendSecret="s")
    url = tus.create(ticket, 5)
    assert tus.patch(url, 0, b"hello").status_code == 204
    backend.next_call()
    assert tus.state(url, known="handing_over")["state"] == "awaiting_confirmation"
    server.kill()
    server.start()

    assert tus.state(url)["state"] == "awaiting_confirmation"
    response = server.backend_call("finish_upload", id=ticket, backendSecret="s")
    assert (response.status_code, response.text) == (200, "ok")
    assert tus.state(url)["state"] == "finished"


def test_interrupted_state_write_leaves_the_old_record(server, backend, tus):
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 10)
    assert tus.patch(url, 0, b"01234").status_code == 204
    server.kill()
    # What a crash in the middle of appending a record leaves.
    journal = server.storage / "uploads.journal"
    with open(journal, "ab") as f:
        f.write(b'{"id":"' + ticket.encode() + b'","state":"finis')
    server.start()
    assert tus.offset(url) == 5
    assert journal.read_bytes().endswith(b"\n")
    assert tus.patch(url, 5, b"56789").status_code == 204
    assert backend.next_call()["received_sha256"] == sha256_of_bytes(b"0123456789")


def test_records_of_earlier_versions_are_moved_into_the_journal(server, backend, tus):
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 10)
    assert tus.patch(url, 0, b"01234").status_code == 204
    server.kill()
    # Earlier versions kept each record in a file of its own.
    record = journal_records(server.storage)[ticket]
    (server.storage / "uploads.journal").unlink()
    (server.storage / f"{ticket}.json").write_text(json.dumps(record))
    server.start()
    assert tus.offset(url) == 5
    assert not (server.storage / f"{ticket}.json").exists()
    assert journal_records(server.storage)[ticket]["state"] == "receiving"
    assert tus.patch(url, 5, b"56789").status_code == 204
    assert backend.next_call()["received_sha256"] == sha256_of_bytes(b"0123456789")

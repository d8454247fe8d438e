"""
The whole flow over real sockets: ticket, tus upload, handover.
"""

import hashlib
import json

from harness import TusClient, random_file, sha256_of


def test_50_mb_upload_arrives_intact_and_is_handed_over(server, backend, tus, tmp_path):
    source = random_file(tmp_path / "big.bin", 50 * 1024 * 1024, seed=1)
    ticket = server.new_ticket(backend, backendSecret="s3cret")

    url = tus.upload_file(ticket, source, filename="holiday video.mp4")

    call = backend.next_call()
    assert call["id"] == ticket
    assert call["cancelled"] == "no"
    assert call["backendSecret"] == "s3cret"
    assert call["filenameFromBrowser"] == "holiday video.mp4"
    assert call["size"] == str(50 * 1024 * 1024)
    assert call["sha256"] == sha256_of(source)
    assert call["received_sha256"] == sha256_of(source)
    assert call["received_size"] == 50 * 1024 * 1024
    assert tus.wait_until_over(url)["state"] == "finished"


def test_backend_answering_wait_finishes_only_on_finish_upload(server, backend, tus, tmp_path):
    backend.answer = "wait"
    source = random_file(tmp_path / "f.bin", 300_000)
    ticket = server.new_ticket(backend, backendSecret="k")
    url = tus.upload_file(ticket, source)

    assert backend.next_call()["received_sha256"] == sha256_of(source)
    status = tus.state(url, known="handing_over")
    assert status["state"] == "awaiting_confirmation"

    response = server.backend_call("finish_upload", id=ticket, backendSecret="k")
    assert response.status_code == 200
    assert response.text == "ok"
    assert tus.state(url, known="awaiting_confirmation")["state"] == "finished"
    # Asking again is harmless.
    assert server.backend_call("finish_upload", id=ticket, backendSecret="k").text == "ok"


def test_file_is_removed_once_finished_by_default(server, backend, tus, tmp_path):
    source = random_file(tmp_path / "f.bin", 1000)
    ticket = server.new_ticket(backend)
    url = tus.upload_file(ticket, source)
    stored = backend.next_call()["filename"]
    assert tus.wait_until_over(url)["state"] == "finished"
    assert not (server.storage / f"{ticket}.data").exists()
    assert stored == str(server.storage / f"{ticket}.data")


def test_file_stays_when_backend_asks_to_keep_it(server, backend, tus, tmp_path):
    source = random_file(tmp_path / "f.bin", 1000)
    ticket = server.new_ticket(backend, removeFileWhenFinished="false")
    url = tus.upload_file(ticket, source)
    stored = backend.next_call()["filename"]
    assert tus.wait_until_over(url)["state"] == "finished"
    assert sha256_of(stored) == sha256_of(source)


def test_handover_carries_metadata_and_mimetype(server, backend, tus):
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 5, filename="a.txt", filetype="text/plain", album="Summer ☀")
    assert tus.patch(url, 0, b"hello").status_code == 204
    call = backend.next_call()
    assert call["mimetype"] == "text/plain"
    assert call["filenameFromBrowser"] == "a.txt"
    assert json.loads(call["metadata"]) == {"album": "Summer ☀"}
    assert call["sha256"] == hashlib.sha256(b"hello").hexdigest()


def test_empty_file_is_handed_over_at_once(server, backend, tus):
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 0)
    call = backend.next_call()
    assert call["size"] == "0"
    assert call["sha256"] == hashlib.sha256(b"").hexdigest()
    assert tus.wait_until_over(url)["state"] == "finished"


def test_no_digest_hands_over_without_sha256(start_server, backend):
    server = start_server("--no-digest")
    tus = TusClient(server)
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 5)
    assert tus.patch(url, 0, b"hello").status_code == 204
    call = backend.next_call()
    assert call["sha256"] == ""
    assert call["received_sha256"] == hashlib.sha256(b"hello").hexdigest()


def test_handover_reaches_a_backend_named_by_host_name(server, backend, tus):
    # Addresses are connected to directly; names go through resolution.
    by_name = backend.url.replace("127.0.0.1", "localhost")
    ticket = server.new_ticket(None, signalFinishURL=by_name)
    url = tus.create(ticket, 5)
    assert tus.patch(url, 0, b"hello").status_code == 204
    call = backend.next_call()
    assert (call["id"], call["received_size"]) == (ticket, 5)
    assert tus.wait_until_over(url)["state"] == "finished"


def test_a_cookie_from_the_backend_is_not_sent_with_other_handovers(server, backend, tus):
    # Handovers of different users' uploads must not share a session: a
    # cookie set in the answer to one is not sent back with the next.
    backend.answer_headers = {"Set-Cookie": "session=first-upload; Path=/"}
    for _ in range(2):
        ticket = server.new_ticket(backend)
        url = tus.create(ticket, 5)
        assert tus.patch(url, 0, b"hello").status_code == 204
        call = backend.next_call()
        assert (call["id"], call["cookie"]) == (ticket, "")

"""
The timeouts of the original server, made short through the options, and
retries of a handover whose backend is down or slow.
"""

import threading

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import Resource

from harness import TestBackend, TusClient, free_port, journal_records, open_patch, random_file, sha256_of
from incoming.receive import BodyReceiver
from incoming.service import UploadSite


def test_idle_upload_is_cancelled_and_its_file_removed(start_server, backend, tmp_path):
    server = start_server("--idle-timeout", "1s")
    tus = TusClient(server)
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 100)
    assert tus.patch(url, 0, b"x" * 10).status_code == 204

    call = backend.next_call()
    assert (call["id"], call["cancelled"], call["cancelReason"]) == (ticket, "yes", "idle timeout")
    assert not (server.storage / f"{ticket}.data").exists()
    assert tus.state(url)["state"] == "cancelled"
    assert tus.patch(url, 10, b"y").status_code == 410
    server.log.wait_for(f"upload {ticket}: cancelled (idle timeout)")


def test_unclaimed_ticket_expires(start_server, backend):
    server = start_server("--idle-timeout", "1s")
    ticket = server.new_ticket(backend)
    call = backend.next_call()
    assert (call["id"], call["cancelled"], call["cancelReason"]) == (ticket, "yes", "ticket expired")
    assert server.status(ticket)["state"] == "cancelled"


def test_confirmation_timeout_cancels(start_server):
    backend = TestBackend(answer="wait")
    try:
        server = start_server("--confirmation-timeout", "1s")
        tus = TusClient(server)
        ticket = server.new_ticket(backend)
        url = tus.create(ticket, 2)
        tus.patch(url, 0, b"ab")
        assert backend.next_call()["cancelled"] == "no"
        notice = backend.next_call()
        assert notice["cancelled"] == "yes"
        assert notice["cancelReason"] == "backend did not call finish_upload in time"
        assert tus.state(url)["state"] == "cancelled"
        assert server.backend_call("finish_upload", id=ticket).status_code == 410
    finally:
        backend.close()


def test_slow_handover_request_counts_as_failed_and_is_retried(start_server):
    release = threading.Event()

    def answer(fields):
        if len(backend.all_calls) == 1:
            release.wait(30)  # the first attempt takes far too long
        return "done"

    backend = TestBackend(answer=answer)
    try:
        server = start_server("--handover-timeout", "1s")
        tus = TusClient(server)
        ticket = server.new_ticket(backend)
        url = tus.create(ticket, 2)
        tus.patch(url, 0, b"ab")
        server.log.wait_for(f"upload {ticket}: handover attempt 1 failed (backend did not answer within 1 s)")
        second = backend.next_call(), backend.next_call()
        assert [call["id"] for call in second] == [ticket, ticket]
        assert tus.wait_until_over(url)["state"] == "finished"
    finally:
        release.set()
        backend.close()


def test_handover_is_delivered_once_the_backend_comes_back(start_server, tmp_path):
    server = start_server()
    tus = TusClient(server)
    port = free_port()
    ticket = server.new_ticket(None, signalFinishURL=f"http://127.0.0.1:{port}/done")
    source = random_file(tmp_path / "f.bin", 100_000)
    url = tus.upload_file(ticket, source)
    server.log.wait_for(f"upload {ticket}: handover attempt 2 failed (backend unreachable")
    assert tus.state(url)["state"] == "handing_over"
    assert (server.storage / f"{ticket}.data").exists()

    backend = TestBackend(port=port)
    try:
        call = backend.next_call()
        assert call["received_sha256"] == sha256_of(source)
        assert tus.wait_until_over(url)["state"] == "finished"
    finally:
        backend.close()


def test_handover_that_never_succeeds_fails_and_tells_everyone(start_server):
    server = start_server("--handover-retry-period", "2s")
    tus = TusClient(server)
    port = free_port()
    ticket = server.new_ticket(None, signalFinishURL=f"http://127.0.0.1:{port}/done")
    url = tus.create(ticket, 2)
    tus.patch(url, 0, b"ab")
    status = tus.wait_until_over(url)
    assert status["state"] == "failed"
    assert status["cancelReason"].startswith("handover gave up after")
    assert not (server.storage / f"{ticket}.data").exists()

    # The cancel notice reaches the backend once it is back.
    backend = TestBackend(port=port)
    try:
        notice = backend.next_call()
        assert (notice["id"], notice["cancelled"]) == (ticket, "yes")
        assert notice["cancelReason"].startswith("handover gave up after")
    finally:
        backend.close()


def test_backend_answering_nonsense_is_retried(start_server):
    answers = iter([500, "maybe", "done"])
    backend = TestBackend(answer=lambda fields: next(answers))
    try:
        server = start_server()
        tus = TusClient(server)
        ticket = server.new_ticket(backend)
        url = tus.create(ticket, 1)
        tus.patch(url, 0, b"a")
        assert tus.wait_until_over(url)["state"] == "finished"
        assert len(backend.all_calls) == 3
        server.log.wait_for("backend answered HTTP 500")
        server.log.wait_for("backend answered 'maybe', not 'done' or 'wait'")
    finally:
        backend.close()


def test_handovers_share_a_connection_and_one_closed_under_a_handover_is_replaced_at_once(start_server):
    # The backend closes a kept-alive connection when a second request comes
    # in on it, without answering: what a client sees when the server closes
    # an idle connection just as a request goes out on it.
    backend = TestBackend(keep_alive=True, answer=lambda fields: None if fields["request"] == 2 else "done")
    try:
        server = start_server()
        tus = TusClient(server)
        first, second = server.new_ticket(backend), server.new_ticket(backend)
        for ticket in (first, second):
            url = tus.create(ticket, 2)
            tus.patch(url, 0, b"ab")
            assert tus.wait_until_over(url)["state"] == "finished"

        # The second handover went out on the first one's connection, which
        # the backend closed; it was sent again on a new one at once, not
        # after the wait between failed attempts.
        calls = [backend.next_call() for _ in range(3)]
        assert [(call["connection"], call["request"], call["id"]) for call in calls] == [
            (1, 1, first),
            (1, 2, second),
            (2, 1, second),
        ]
        assert "handover attempt" not in server.log.text()
    finally:
        backend.close()


def test_client_that_stops_sending_is_dropped_and_its_bytes_kept(start_server, backend):
    server = start_server("--receive-timeout", "1s")
    tus = TusClient(server)
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 1000)
    with open_patch(url, 0, 1000, b"z" * 300) as sock:
        sock.settimeout(30)
        # The server gives up on the silent client and closes.
        while sock.recv(65536):
            pass
    assert tus.offset(url) == 300
    assert tus.patch(url, 300, b"z" * 700).status_code == 204
    assert backend.next_call()["received_size"] == 1000


class HeldUpload:
    """
    An upload request coming in on a frontend connection (L{UploadSite},
    L{UploadRequest}, L{BodyReceiver}) with --receive-timeout
    L{TIMEOUT}, its time from a task.Clock. Its claim is never done, so
    its body stays in the receiver; the test holds and releases the
    connection as the read turns do.
    """

    TIMEOUT = 10.0

    def __init__(self, monkeypatch):
        self.clock = Clock()
        monkeypatch.setattr(BodyReceiver, "clock", self.clock)
        self.receiver = None

        def route_body(request, method, path, length):
            self.receiver = BodyReceiver(Deferred())
            return self.receiver

        site = UploadSite(Resource(), route_body, timeout=self.TIMEOUT)
        site.reactor = self.clock
        self.channel = site.buildProtocol(None)
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)
        self.channel.dataReceived(b"PATCH /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        self.send()

    def send(self):
        self.channel.dataReceived(b"z" * 10)

    def wait(self, seconds):
        # In small steps, as time passes for a real reactor: a timer set
        # while the clock advances is due from the time it was set.
        steps = round(seconds * 10)
        self.clock.pump([0.1] * steps)

    @property
    def dropped(self):
        return self.transport.disconnecting

    def close(self):
        self.channel.connectionLost(Failure(ConnectionDone()))


@pytest.fixture
def held_upload(monkeypatch):
    upload = HeldUpload(monkeypatch)
    yield upload
    upload.close()


def test_a_silent_client_is_dropped_after_the_receive_timeout(held_upload):
    held_upload.wait(held_upload.TIMEOUT - 0.5)
    held_upload.send()
    held_upload.wait(held_upload.TIMEOUT - 0.5)
    assert not held_upload.dropped
    held_upload.wait(1)
    assert held_upload.dropped


def test_time_the_server_holds_the_connection_is_not_the_clients_silence(held_upload):
    timeout = held_upload.TIMEOUT
    held_upload.wait(4)
    held_upload.receiver.wait_turn()  # many others read first
    assert held_upload.transport.producerState == "paused"
    held_upload.wait(2.8 * timeout)
    assert not held_upload.dropped
    held_upload.receiver.start_turn()
    # Silent for 4 s before the hold: it has 6 s left from now.
    held_upload.wait(timeout - 4 - 0.1)
    assert not held_upload.dropped
    held_upload.wait(0.2)
    assert held_upload.dropped


def test_a_client_that_sends_after_a_hold_keeps_its_connection(held_upload):
    held_upload.receiver.wait_turn()
    held_upload.wait(2.5 * held_upload.TIMEOUT)
    held_upload.receiver.start_turn()
    held_upload.wait(held_upload.TIMEOUT - 1)
    held_upload.send()
    held_upload.wait(held_upload.TIMEOUT - 1)
    assert not held_upload.dropped
    held_upload.wait(2)
    assert held_upload.dropped


def test_sweep_forgets_ended_uploads_and_removes_orphans(start_server, backend, tmp_path):
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "OrphanedUploadData0001.data").write_bytes(b"left behind")
    # A record that no upload can be restored from.
    (storage / "uploads.journal").write_text('{"id":"OrphanedUploadState001","state":"no such state"}\n')
    server = start_server("--retention", "1s", "--sweep-interval", "1s", storage=storage)
    tus = TusClient(server)
    server.log.wait_for("removed orphaned data of upload OrphanedUploadData0001")
    server.log.wait_for("removed orphaned state of upload OrphanedUploadState001")
    assert sorted(p.name for p in storage.iterdir()) == ["uploads.journal"]
    assert journal_records(storage) == {}

    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 1)
    tus.patch(url, 0, b"a")
    assert tus.wait_until_over(url)["state"] == "finished"
    server.log.wait_for(f"upload {ticket}: record removed after retention")
    assert ticket not in journal_records(storage)
    assert tus.head(url).status_code == 404


def test_sweep_never_removes_a_file_the_backend_kept(start_server, backend):
    server = start_server("--retention", "1s", "--sweep-interval", "1s")
    tus = TusClient(server)
    kept = server.new_ticket(backend, removeFileWhenFinished="false")
    url = tus.create(kept, 4)
    tus.patch(url, 0, b"mine")
    assert tus.wait_until_over(url)["state"] == "finished"
    # A second upload, ended after the first: once the sweep has forgotten
    # it, it has looked at the first one too.
    other = server.new_ticket(backend)
    url = tus.create(other, 1)
    tus.patch(url, 0, b"x")
    assert tus.wait_until_over(url)["state"] == "finished"
    server.log.wait_for(f"upload {other}: record removed after retention")
    assert (server.storage / f"{kept}.data").read_bytes() == b"mine"

"""
A burst of creations starts a few per turn of the reactor
(incoming/pacing.py, UploadSite.paced_per_turn): every one is still
answered, in order, and one whose client left while it waited is dropped
without harm. A creation that carries data claims its ticket at that pace. The frontend's default listen queue holds a burst of
connections.
"""

import hashlib
import socket
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString

from harness import Turns, b64
from incoming.config import Config
from incoming.pacing import TurnPacer
from incoming.receive import UploadRequest
from incoming.service import Listener, UploadSite, build

BURST = 5 * UploadSite.paced_per_turn


def paced_calls(per_turn, count):
    """
    A pacer on a L{Turns} reactor, given C{count} calls that note their
    number in C{started}.
    """
    reactor = Turns()
    pacer = TurnPacer(reactor, per_turn)
    started = []
    for i in range(count):
        pacer.start(lambda i=i: started.append(i))
    return reactor, pacer, started


def test_at_most_per_turn_start_in_a_turn_and_the_rest_in_order():
    reactor, pacer, started = paced_calls(3, 8)
    assert started == [0, 1, 2]
    reactor.turn()
    assert started == [0, 1, 2, 3, 4, 5]
    reactor.turn()
    assert started == list(range(8))
    assert pacer.waiting == 0


def test_a_new_turn_has_room_again():
    reactor, pacer, started = paced_calls(2, 2)
    reactor.turn()
    pacer.start(lambda: started.append("next turn"))
    assert started == [0, 1, "next turn"]


def test_a_call_that_raises_does_not_strand_the_others():
    reactor = Turns()
    pacer = TurnPacer(reactor, 1)
    started = []

    def fails():
        raise RuntimeError("a request's processing failed")

    pacer.start(lambda: started.append("first"))
    pacer.start(fails)
    pacer.start(lambda: started.append("after the failure"))
    with pytest.raises(RuntimeError):
        reactor.turn()
    reactor.turn()
    assert started == ["first", "after the failure"]


def send_creations(server, tickets, data=b""):
    """
    One raw connection per ticket, each with a creation request (of a
    1000-byte upload, carrying C{data}) sent before any answer is read: the
    burst arrives at once.
    """
    parts = urlsplit(server.uploads_url)
    connections = []
    for ticket in tickets:
        sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
        request = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Length: 1000\r\nUpload-Metadata: ticket {b64(ticket)}\r\n"
            + ("Content-Type: application/offset+octet-stream\r\n" if data else "")
            + f"Content-Length: {len(data)}\r\n\r\n"
        )
        sock.sendall(request.encode() + data)
        connections.append(sock)
    return connections


def answer_head(sock):
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = sock.recv(4096)
        assert data, f"connection closed after {answer!r}"
        answer += data
    status_line, *header_lines = answer.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {name.lower(): value for name, value in headers.items()}


def test_a_burst_of_creations_is_answered_whole(server, backend, tus):
    tickets = [server.new_ticket(backend) for _ in range(BURST)]
    connections = send_creations(server, tickets)
    answers = []
    for sock in connections:
        answers.append(answer_head(sock))
        sock.close()

    assert [status for status, _ in answers] == [201] * BURST
    for ticket, (_, headers) in zip(tickets, answers):
        assert headers["location"].endswith("/" + ticket)
        head = tus.head(headers["location"])
        assert (head.status_code, head.headers["Upload-Offset"]) == (200, "0")


def test_a_creation_with_data_starts_its_claim_at_the_pacers_pace():
    reactor = Turns()
    site = SimpleNamespace(pacer=TurnPacer(reactor, 2))
    requests = [SimpleNamespace(_disconnected=False, channel=SimpleNamespace(site=site)) for _ in range(5)]
    started = []

    async def claim(i):
        started.append(i)
        return f"claimed {i}"

    ready = [UploadRequest.paced_start(request, lambda i=i: claim(i)) for i, request in enumerate(requests)]
    assert started == [0, 1]
    requests[3]._disconnected = True  # its client leaves while it waits
    reactor.turn()
    reactor.turn()
    assert started == [0, 1, 2, 4]
    results = []
    for d in ready:
        d.addCallbacks(results.append, lambda f: results.append(f.value.message))
    assert results == ["claimed 0", "claimed 1", "claimed 2",
                       "the client left before its creation was processed", "claimed 4"]


def test_a_burst_of_creations_with_data_is_stored_whole(server, backend):
    """
    Creations that carry their upload claim their tickets at the pacer's
    pace while their bodies wait; every one is stored and handed over.
    """
    data = bytes(range(250)) * 4
    tickets = [server.new_ticket(backend) for _ in range(BURST)]
    connections = send_creations(server, tickets, data)
    answers = []
    for sock in connections:
        answers.append(answer_head(sock))
        sock.close()

    assert [(status, headers["upload-offset"]) for status, headers in answers] == [(201, "1000")] * BURST
    calls = {call["id"]: call for call in (backend.next_call() for _ in tickets)}
    assert sorted(calls) == sorted(tickets)
    assert {call["sha256"] for call in calls.values()} == {hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("data", [b"", b"x" * 1000], ids=["without data", "with data"])
def test_creations_whose_clients_left_while_waiting_are_dropped(server, backend, tus, data):
    tickets = [server.new_ticket(backend) for _ in range(BURST)]
    connections = send_creations(server, tickets, data)
    # The later half of the burst leaves before its turn comes.
    staying, leaving = connections[: BURST // 2], connections[BURST // 2 :]
    for sock in leaving:
        sock.close()

    assert [answer_head(sock)[0] for sock in staying] == [201] * len(staying)
    for sock in staying:
        sock.close()
    # Each ticket is still there to claim (again), and the server is well.
    for ticket in tickets:
        assert tus.create(ticket, 1000).endswith("/" + ticket)
    tracebacks = [line for line in server.log.lines if line and "Traceback" in line]
    assert not tracebacks, server.log.text()


def sites(config):
    service = build(config)
    return {listener.name: listener.factory for listener in service if isinstance(listener, Listener)}


def test_the_frontend_paces_creations_and_nothing_else(tmp_path):
    built = sites(Config(storage=tmp_path))
    frontend, backend = built["frontend"], built["backend"]
    assert frontend.pacer.per_turn == UploadSite.paced_per_turn
    uploads = b"/incoming/frontend/uploads/"
    assert frontend.is_paced(b"POST", uploads)
    assert frontend.is_paced(b"POST", uploads.rstrip(b"/"))
    assert not frontend.is_paced(b"PATCH", uploads + b"abc")
    assert not frontend.is_paced(b"HEAD", uploads + b"abc")
    assert not frontend.is_paced(b"POST", uploads + b"abc")
    assert not frontend.is_paced(b"GET", b"/incoming/frontend/incoming.js")
    assert backend.is_paced is None and backend.pacer is None


def test_the_default_frontend_keeps_a_long_listen_queue(tmp_path):
    # With Twisted's default of 50, most of hundreds of browsers connecting
    # at once would wait a second for a SYN retransmit (README, Options).
    # The default listens on port 4000 of every interface, which a test may
    # not take: the endpoint it describes is checked instead.
    frontend = next(listener for listener in build(Config(storage=tmp_path))
                    if isinstance(listener, Listener) and listener.name == "frontend")
    assert frontend.description == Config().frontend
    assert serverFromString(reactor, frontend.description)._backlog == 1024

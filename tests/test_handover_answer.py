"""
The backend's answer to a handover is "done" or "wait": a longer one (a
large error page, an endless stream) is read no further than a small limit,
the connection it comes on is closed, and the attempt fails and is retried
like any other bad answer.
"""

import itertools
import queue
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

import pytest

from harness import TusClient, serve_on_loopback

MAX_ANSWER = 64 * 1024  # the longest answer the server reads (README)
STREAMED = 64 << 20  # far more than that


class ScriptedBackend:
    """
    A backend on loopback whose answers the test writes byte by byte: each
    handover POST is answered by the next function of C{answers}, called
    with the POST's fields and the request handler; what it returns says
    how the answer went (L{outcome}).
    """

    def __init__(self, answers):
        self.calls = queue.Queue()
        self._outcomes = {}
        self._outcome_told = threading.Condition()
        answers = iter(answers)
        numbers = itertools.count(1)
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length).decode()
                fields = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
                with backend._outcome_told:
                    number, answer = next(numbers), next(answers)
                backend.calls.put(fields)
                outcome = answer(fields, self)
                with backend._outcome_told:
                    backend._outcomes[number] = outcome
                    backend._outcome_told.notify_all()

            def log_message(self, *args):
                pass

        self.server = serve_on_loopback(Handler)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/upload_finished"

    def next_call(self, timeout=60):
        return self.calls.get(timeout=timeout)

    def outcome(self, number, timeout=60):
        """
        How the answer to the C{number}th call (counted from 1) went, once
        it is over.
        """
        with self._outcome_told:
            assert self._outcome_told.wait_for(lambda: number in self._outcomes, timeout), number
            return self._outcomes[number]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def plain(body):
    """
    Answer 200 with C{body} (bytes) and its length.
    """

    def answer(fields, handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        return "sent"

    return answer


def stream(total=STREAMED, say_length=True):
    """
    Answer 200 with C{total} bytes, sent 64 KiB at a time, their length
    said in a Content-Length or (C{say_length} false) not, the answer then
    ending when the connection does; the outcome says whether the server
    closed the connection before all was sent, and how much was sent.
    """

    def answer(fields, handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        if say_length:
            handler.send_header("Content-Length", str(total))
        handler.end_headers()
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < total:
                handler.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            return ("closed", sent)
        return ("sent all", sent)

    return answer


def stall(start):
    """
    Answer 200 with the first bytes C{start} of a 100-byte body, then send
    nothing more and wait for the server to close the connection.
    """

    def answer(fields, handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", "100")
        handler.end_headers()
        handler.wfile.write(start)
        handler.connection.settimeout(20)
        try:
            while handler.connection.recv(65536):
                pass
        except TimeoutError:
            return "still open"
        except OSError:
            pass
        return "closed"

    return answer


def gated(gate, then):
    """
    Wait until C{gate} (an event) is set, then answer as C{then}.
    """

    def answer(fields, handler):
        assert gate.wait(30)
        return then(fields, handler)

    return answer


def upload_two_bytes(server, backend):
    tus = TusClient(server)
    ticket = server.new_ticket(None, signalFinishURL=backend.url)
    url = tus.create(ticket, 2)
    assert tus.patch(url, 0, b"ab").status_code == 204
    return tus, ticket, url


@pytest.mark.parametrize("say_length", [True, False], ids=["with Content-Length", "ending with the connection"])
def test_long_answer_is_cut_off_and_the_handover_retried(start_server, say_length):
    gate = threading.Event()
    backend = ScriptedBackend([stream(say_length=say_length), gated(gate, plain(b"done"))])
    try:
        server = start_server()
        tus, ticket, url = upload_two_bytes(server, backend)

        # The server closed the connection long before the answer's end.
        outcome, sent = backend.outcome(1)
        assert outcome == "closed" and sent < STREAMED, (outcome, sent)
        line = server.log.wait_for(f"upload {ticket}: handover attempt 1 failed")
        assert f"backend's answer is too long: HTTP 200 with more than {MAX_ANSWER} bytes" in line

        # The attempt did not finish the upload; the next one, once the
        # backend answers "done", does.
        assert backend.next_call()["id"] == ticket
        assert tus.state(url)["state"] == "handing_over"
        assert server.status(ticket)["state"] == "handing_over"
        gate.set()
        assert tus.wait_until_over(url)["state"] == "finished"
    finally:
        gate.set()
        backend.close()


def test_done_padded_past_the_limit_is_not_taken_but_up_to_it_is(start_server):
    # Spaces around the word are allowed, but not past the limit.
    too_long = b"done" + b" " * (MAX_ANSWER - 3)
    just_so = b"done" + b" " * (MAX_ANSWER - 4)
    backend = ScriptedBackend([plain(too_long), plain(just_so)])
    try:
        server = start_server()
        tus, ticket, url = upload_two_bytes(server, backend)
        line = server.log.wait_for(f"upload {ticket}: handover attempt 1 failed")
        assert "backend's answer is too long" in line
        assert tus.wait_until_over(url)["state"] == "finished"
        assert backend.calls.qsize() == 2
    finally:
        backend.close()


def test_handover_always_answered_at_length_fails_as_other_bad_answers_do(start_server):
    streamed = queue.Queue()

    def answer(fields, handler):
        if fields["cancelled"] == "yes":
            return plain(b"done")(fields, handler)
        streamed.put(stream()(fields, handler))

    backend = ScriptedBackend(iter(lambda: answer, None))
    try:
        server = start_server("--handover-retry-period", "2s")
        tus, ticket, url = upload_two_bytes(server, backend)
        status = tus.wait_until_over(url)
        assert status["state"] == "failed"
        assert status["cancelReason"].startswith("handover gave up after")
        assert "backend's answer is too long" in status["cancelReason"]
        assert not (server.storage / f"{ticket}.data").exists()

        calls = [backend.next_call() for _ in range(backend.calls.qsize())]
        handovers = [call for call in calls if call["cancelled"] == "no"]
        outcomes = [streamed.get(timeout=60) for _ in handovers]
        assert len(handovers) >= 2
        assert all(outcome == "closed" and sent < STREAMED for outcome, sent in outcomes), outcomes
    finally:
        backend.close()


def test_answer_that_stops_coming_is_dropped_at_the_timeout(start_server):
    # An answer trickling in (or stalled) past --handover-timeout fails the
    # attempt, and its connection is closed rather than read on.
    backend = ScriptedBackend([stall(b"do"), plain(b"done")])
    try:
        server = start_server("--handover-timeout", "1s")
        tus, ticket, url = upload_two_bytes(server, backend)
        server.log.wait_for(f"upload {ticket}: handover attempt 1 failed (backend did not answer within 1 s)")
        assert backend.outcome(1) == "closed"
        assert tus.wait_until_over(url)["state"] == "finished"
    finally:
        backend.close()


def test_answer_that_is_not_text_is_no_answer(start_server):
    backend = ScriptedBackend([plain(b"\xff\xfed\x00o\x00n\x00e\x00"), plain(b"done")])
    try:
        server = start_server()
        tus, ticket, url = upload_two_bytes(server, backend)
        line = server.log.wait_for(f"upload {ticket}: handover attempt 1 failed")
        assert "not 'done' or 'wait'" in line
        assert "unreachable" not in line
        assert tus.wait_until_over(url)["state"] == "finished"
    finally:
        backend.close()

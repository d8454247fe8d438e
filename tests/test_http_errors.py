"""
Requests that Twisted's HTTP parser refuses get, on either listener, a 400
with a one-line plain-text message (as the README promises for every
error), once, and then the connection is closed; never a bare status line,
no answer at all, or a traceback in the log.
"""

import socket
from urllib.parse import urlsplit

import pytest

from harness import TusClient

UPLOAD = b"PATCH /incoming/frontend/uploads/nope HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\n"
GET = b"GET /incoming/frontend/incoming.js HTTP/1.1\r\nHost: localhost\r\n"
HEADERS = "malformed request line or header"


def exchange(port, request):
    """
    Everything the server answers to C{request} until it closes the
    connection.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    return answer


def assert_plain_error(answer, status, message):
    """
    C{answer} is one response: C{status}, and C{message} as its whole
    plain-text body.
    """
    head, separator, body = answer.partition(b"\r\n\r\n")
    assert separator, answer[:300]
    status_line, *header_lines = head.split(b"\r\n")
    assert status_line == status, answer[:300]
    headers = {name.lower(): value for name, value in (line.split(b": ", 1) for line in header_lines)}
    # The whole rest of the stream: no second answer after it.
    assert body == message.encode(), answer[-300:]
    assert headers.get(b"content-type") == b"text/plain; charset=utf-8", head
    assert headers.get(b"content-length") == b"%d" % len(body), head
    assert headers.get(b"connection") == b"close", head


def test_content_length_of_thousands_of_digits_is_400(server):
    # int() refuses more than 4300 digits.
    request = UPLOAD + b"Content-Length: " + b"9" * 5000 + b"\r\n\r\n"
    for port in (server.frontend_port, server.backend_port):
        answer = exchange(port, request)
        assert answer, "no answer at all"
        assert_plain_error(answer, b"HTTP/1.1 400 Bad Request", HEADERS)
    server.stop()
    server.log.wait_for("Main loop terminated")
    assert "Unhandled Error" not in server.log.text()
    assert "Traceback" not in server.log.text()


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(UPLOAD + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", id="two-content-lengths"),
        pytest.param(
            UPLOAD + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            id="content-length-and-chunked",
        ),
        pytest.param(UPLOAD + b"Content-Length: +3\r\n\r\nabc", id="signed-content-length"),
        pytest.param(
            UPLOAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", id="unknown-transfer-coding"
        ),
        pytest.param("GET /incoming/frontend/é HTTP/1.1\r\nHost: localhost\r\n\r\n".encode(), id="utf8-request-line"),
        pytest.param(b"GET /incoming/frontend/incoming.js HTTP/2.0\r\nHost: localhost\r\n\r\n", id="http2-request-line"),
        # The bad header is not the last: only the first fault is answered.
        pytest.param(GET + b"X-Name : value\r\nno colon\r\n\r\n", id="space-after-header-name"),
    ],
)
def test_request_line_or_header_twisted_refuses_is_400(server, request_bytes):
    for port in (server.frontend_port, server.backend_port):
        assert_plain_error(exchange(port, request_bytes), b"HTTP/1.1 400 Bad Request", HEADERS)


def test_too_many_headers_is_400(server):
    request = GET + b"".join(b"X-%d: a\r\n" % i for i in range(600)) + b"\r\n"
    assert_plain_error(
        exchange(server.frontend_port, request), b"HTTP/1.1 400 Bad Request", "more than 500 request headers"
    )


def test_header_block_over_the_limit_is_400(server):
    # Each line is within the 16384 bytes of a line; all together are not.
    request = GET + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(20)) + b"\r\n"
    assert_plain_error(
        exchange(server.frontend_port, request),
        b"HTTP/1.1 400 Bad Request",
        "request line and headers longer than 16384 bytes in all",
    )


@pytest.mark.parametrize("expect_continue", [False, True], ids=["plain", "100-continue"])
def test_malformed_chunk_in_an_upload_body_is_400(server, backend, expect_continue):
    # The parser fails after a first chunk has gone to the upload; the
    # interim 100 Continue is no response yet, the 400 still comes.
    url = TusClient(server).create(server.new_ticket(backend), 10)
    parts = urlsplit(url)
    request = (
        f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        "Transfer-Encoding: chunked\r\n"
    ).encode()
    if expect_continue:
        request += b"Expect: 100-continue\r\n"
    request += b"\r\n3\r\nabc\r\nzz\r\ndefg\r\n0\r\n\r\n"
    answer = exchange(server.frontend_port, request)
    if expect_continue:
        interim = b"HTTP/1.1 100 Continue\r\n\r\n"
        assert answer.startswith(interim), answer[:300]
        answer = answer[len(interim) :]
    assert_plain_error(answer, b"HTTP/1.1 400 Bad Request", "malformed request body")


def test_malformed_multipart_form_is_400(server):
    request = (
        b"POST /incoming/backend/new_upload HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 4\r\n\r\njunk"
    )
    assert_plain_error(exchange(server.backend_port, request), b"HTTP/1.1 400 Bad Request", "malformed request body")


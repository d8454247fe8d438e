"""
Property-based tests against a live server ("Nothing lost").

Hypothesis throws random sequences of tus requests at one real
``twistd -n incoming`` process, a fresh ticket for each example: claims
(valid, repeated, with the wrong length, with bad or missing tickets,
malformed metadata, junk lengths, creation-with-upload), PATCHes (right and
wrong offsets, random chunk sizes, bodies past the length, chunked bodies,
right, wrong and malformed checksums, deferred lengths set later,
connections dropped mid-body, a refused PATCH followed by a HEAD on the
same connection), partial uploads and final ones (concatenation), HEAD,
DELETE, X-HTTP-Method-Override, the state URL, OPTIONS, junk in header
values and junk in paths. After every step the upload is compared with a
model of what the server acknowledged:

- no answer is a 5xx (the only documented one, 507, needs a full disk);
- every error is a 4xx with a one-line plain-text message (no traceback,
  no HTML), and every request is answered within a timeout;
- the offset never goes backwards and never past the length;
- the upload's data file always holds exactly the prefix of the true
  content that the server acknowledged, and after the last byte the
  backend is handed a file whose sha256 is that of the true content.

A second test sends single requests with any bytes at all (not UTF-8,
not ASCII) in the tus headers; a last one reads the server's log for
tracebacks left by all of it.
"""

import base64
import hashlib
import http.client
import itertools
import json
import queue
import random
import socket
import time

import pytest
from harness import IncomingServer, TestBackend
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

# One live server for the module; each example gets a fresh ticket. The
# numbers keep the whole module at about 30 s when the server behaves; short
# sequences (15 steps) also keep a failing one quick to shrink.
settings.register_profile(
    "incoming-live-server",
    deadline=None,
    max_examples=300,
    stateful_step_count=15,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LIVE = settings.get_profile("incoming-live-server")

UPLOADS = "/incoming/frontend/uploads/"
OFFSET_TYPE = "application/offset+octet-stream"
TUS = ("Tus-Resumable", "1.0.0")

# Any single request that takes longer than this counts as a hang.
TIMEOUT = 15.0
# The true content of each example's upload: lengths are at most this.
CONTENT = 48 * 1024
# The server's default Tus-Max-Size: a longer Upload-Length is 413.
SERVER_MAX = 64 << 30


# The live server, one for the whole module


class Live:
    def __init__(self, server, backend):
        self.server = server
        self.backend = backend
        self.stash = {}

    def call_for(self, upload_id, timeout=20.0):
        """
        The next backend call (handover or cancel notice) about
        C{upload_id}; calls about other uploads (notices still arriving
        from earlier examples) are kept for their own turn.
        """
        deadline = time.monotonic() + timeout
        while not self.stash.get(upload_id):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"the backend got no call about upload {upload_id} within {timeout} s")
            call = self.backend.next_call(timeout=remaining)
            self.stash.setdefault(call["id"], []).append(call)
        return self.stash[upload_id].pop(0)

    def more_calls_for(self, upload_id):
        self._drain()
        return self.stash.get(upload_id, [])

    def _drain(self):
        while True:
            try:
                call = self.backend.calls.get_nowait()
            except queue.Empty:
                return
            self.stash.setdefault(call["id"], []).append(call)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    backend = TestBackend()
    server = IncomingServer(tmp_path_factory.mktemp("properties") / "storage").start()
    yield Live(server, backend)
    server.stop()
    backend.close()


# Raw HTTP: any bytes in any header, chunked bodies, dropped connections


class Reply:
    def __init__(self, request, method, status, headers, body):
        self.request = request
        self.method = method
        self.status = status
        self.headers = {name.lower(): value for name, value in headers}
        self.body = body

    def header(self, name):
        return self.headers.get(name.lower())

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return f"<{self.status} {self.body[:200]!r} to {self.request}>"


def _bytes(value):
    return value if isinstance(value, bytes) else value.encode("utf-8")


def request_bytes(method, target, headers, body=None, chunks=None, close=True):
    lines = [method.encode() + b" " + _bytes(target) + b" HTTP/1.1"]
    if not any(_bytes(name).lower() == b"host" for name, _ in headers):
        lines.append(b"Host: 127.0.0.1")
    lines += [_bytes(name) + b": " + _bytes(value) for name, value in headers]
    if chunks is not None:
        lines.append(b"Transfer-Encoding: chunked")
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n"
    else:
        if body is not None:
            lines.append(b"Content-Length: %d" % len(body))
        payload = body or b""
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def describe(method, target, headers, body=None, chunks=None):
    shown = ", ".join(f"{_bytes(n).decode()}: {_bytes(v)[:60]!r}" for n, v in headers)
    size = sum(map(len, chunks)) if chunks is not None else len(body or b"")
    how = "chunked" if chunks is not None else "Content-Length"
    return f"{method} {_bytes(target)[:120]!r} [{shown}] with {size} body bytes ({how})"


def exchange(sock, method, data, what):
    """
    Send one request on C{sock} and read its answer, which must come.
    """
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server may have answered early and closed; read that answer
    response = http.client.HTTPResponse(sock, method=method)
    try:
        response.begin()
        body = response.read()
    except TimeoutError:
        raise AssertionError(f"server hung: no answer within {TIMEOUT} s to {what}") from None
    except (http.client.HTTPException, OSError) as e:
        raise AssertionError(f"server dropped the connection without an answer to {what}: {e!r}") from None
    return Reply(what, method, response.status, response.getheaders(), body)


def connect(server):
    return socket.create_connection(("127.0.0.1", server.frontend_port), timeout=TIMEOUT)


def send(server, method, target, headers=(), body=None, chunks=None):
    headers = list(headers)
    what = describe(method, target, headers, body, chunks)
    with connect(server) as sock:
        reply = exchange(sock, method, request_bytes(method, target, headers, body, chunks), what)
    check_reply(reply, headers)
    return reply


def check_reply(reply, headers=()):
    """
    What every answer of the frontend must be: not a server error, the tus
    version, and for an error a one-line message.
    """
    assert reply.status < 500, f"server error: {reply!r}"
    assert reply.header("tus-resumable") == "1.0.0", f"no Tus-Resumable in {reply!r}"
    if reply.status >= 400:
        assert reply.status < 500
        check_error_message(reply, headers)


def check_error_message(reply, headers):
    content_type = (reply.header("content-type") or "").lower()
    wants_json = any(
        _bytes(n).lower() == b"accept" and b"application/json" in _bytes(v).lower() for n, v in headers
    )
    if reply.method == "HEAD":
        assert not reply.body
        message = reply.header("incoming-error")
        assert message, f"HEAD error without an Incoming-Error message: {reply!r}"
        assert content_type.startswith(("text/plain", "application/json")), reply
    elif wants_json and content_type.startswith("application/json"):
        message = json.loads(reply.body)["error"]
    else:
        assert content_type.startswith("text/plain"), f"error answer is not plain text: {reply!r}"
        message = reply.body.decode("utf-8")
    message = message.rstrip("\r\n")
    assert message.strip(), f"empty error message: {reply!r}"
    assert "\n" not in message and "\r" not in message, f"multi-line error message: {reply!r}"
    assert "Traceback" not in message and "<html" not in message.lower(), f"not a one-line message: {reply!r}"


def check_refused_or_redirected(reply, also):
    """
    An answer to a URL that is not quite an upload's: a 4xx, a redirect
    that says where to, or one of C{also}.
    """
    if reply.status in (301, 302, 307, 308):
        assert reply.header("location"), f"a redirect that does not say where to: {reply!r}"
    else:
        assert 400 <= reply.status < 500 or reply.status in also, reply


# Header values


def b64(data):
    return base64.b64encode(_bytes(data)).decode()


def is_count(value):
    """
    Whether C{value} is a valid tus count (a non-negative decimal integer,
    optional whitespace around it).
    """
    value = value.strip(" \t")
    return value.isascii() and value.isdigit()


# Text that may appear in a header value: printable ASCII, tabs, and UTF-8
# text beyond ASCII (raw non-UTF-8 bytes are thrown in test_junk_requests).
JUNK = st.text(
    alphabet=st.one_of(st.characters(min_codepoint=0x20, max_codepoint=0x7E), st.sampled_from("\té٣５中😀ß")),
    max_size=24,
)
# For headers that must not change the answer.
ASCII_JUNK = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=24)
JUNK_COUNTS = st.one_of(
    st.sampled_from(["-1", "-0", "+5", "1.0", "1e3", "0x10", "5 6", "5,6", "", "  ", "٣", "５", "١٢", "NaN", "∞"]),
    st.integers(-(10**30), -1).map(str),
    JUNK,
).filter(lambda v: not is_count(v))


def count_text(n):
    """
    C{n} as a valid count, perhaps padded as HTTP allows.
    """
    return st.sampled_from([str(n), str(n), f" {n}", f"{n}\t", f"0{n}"])


def refusal(value, code):
    """
    How a header value that is wrong may be refused: with C{code}, or, if
    it is not even ASCII, as malformed (400).
    """
    return {code} if value.isascii() else {code, 400}


def tus_header(draw):
    """
    A Tus-Resumable header (or none), and the codes it may be refused with
    (none if it is the right one).
    """
    kind = draw(st.sampled_from(["right"] * 12 + ["missing", "old", "junk"]))
    if kind == "right":
        return [TUS], set()
    if kind == "missing":
        return [], {412}
    value = draw(st.sampled_from(["0.2.2", "1.0", "1.0.0.0", "2.0.0", "1.0.0,0.2.2"]) if kind == "old" else JUNK)
    return [("Tus-Resumable", value)], set() if value.strip(" \t") == "1.0.0" else refusal(value, 412)


EXTRA_NAMES = [
    "Origin",
    "Accept",
    "Forwarded",
    "X-Forwarded-Host",
    "Upload-Expires",
    "Cookie",
    "X-Requested-With",
    "Access-Control-Request-Method",
    "Cache-Control",
    "X-Junk",
]


def extra_headers(draw):
    """
    Headers that must not change the answer: CORS, Accept, ones the server
    does not know, with junk values.
    """
    names = draw(st.lists(st.sampled_from(EXTRA_NAMES), max_size=3, unique=True))
    headers = []
    for name in names:
        if name == "Origin":
            value = draw(st.one_of(st.just("https://app.example"), ASCII_JUNK))
        elif name == "Accept":
            value = draw(st.sampled_from(["application/json", "text/html", "*/*", "text/plain"]))
        else:
            value = draw(st.one_of(ASCII_JUNK, st.sampled_from(["9" * 40, "-5", "  ", "x" * 1000])))
        headers.append((name, value))
    return headers


def checksum_header(draw, sent, true_bytes, careful=False):
    """
    An Upload-Checksum header for a chunk whose true bytes are
    C{true_bytes}, of which C{sent} arrive; returns the headers, whether the
    header is malformed (400), and whether it must be a mismatch (460).
    """
    kinds = ["none"] * 4 + ["right", "right", "mismatch"]
    kind = draw(st.sampled_from(kinds if careful else kinds + ["unknown", "bad-b64", "size", "bare"]))
    if kind == "none":
        return [], False, False
    algorithm = draw(st.sampled_from(["sha1", "sha256", "md5", "SHA1", "Sha256"]))
    digest = hashlib.new(algorithm.lower(), true_bytes).digest()
    if kind == "right":
        value = f"{algorithm} {b64(digest)}"
    elif kind == "mismatch":
        value = f"{algorithm} {b64(hashlib.new(algorithm.lower(), true_bytes + b'!').digest())}"
    elif kind == "unknown":
        value = f"{draw(st.sampled_from(['crc32', 'sha512', 'blake2b', 'x']))} {b64(digest)}"
    elif kind == "bad-b64":
        value = f"{algorithm} {draw(st.sampled_from(['***', 'abc', '====', 'é']))}"
    elif kind == "size":
        value = f"{algorithm} {b64(digest[:-1])}"
    else:
        value = algorithm
    malformed = kind in ("unknown", "bad-b64", "size", "bare")
    mismatch = kind == "mismatch" or (kind == "right" and sent != true_bytes)
    return [("Upload-Checksum", value)], malformed, mismatch


def split(draw, data):
    """
    C{data} cut into chunks for a chunked body.
    """
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def junk_ids(ticket):
    return st.one_of(
        st.sampled_from(
            [
                "..",
                "%2e%2e",
                "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
                "..%2F..%2Fetc%2Fpasswd",
                ".",
                "%00",
                "%ff%fe",
                "%E2%80%AE",
                "~",
                "-1",
                "null",
                ticket[:-1],
                ticket + "A",
                ticket + "%00",
                ticket + "%2F..",
                ticket + "%2Fstate",
                ticket + "%2F",
                "a%2Fb",
                "%2F",
                "x" * 15,
            ]
        ),
        st.integers(65, 8000).map(lambda n: "a" * n),
        st.text(alphabet="abcXYZ019-_.%~!$&'()*+,;=:@", min_size=1, max_size=40).filter(
            lambda s: s not in (ticket, ".", "..") and "/" not in s
        ),
    )


# The model: one upload, what the server acknowledged, and the true content


class Part:
    """
    A partial upload (tus concatenation) as the model knows it.
    """

    def __init__(self, part_id, length, content):
        self.id = part_id
        self.length = length
        self.offset = 0
        self.content = content

    def __repr__(self):
        return f"<part {self.id}: {self.offset} of {self.length}>"


class TusSessions(RuleBasedStateMachine):
    """
    One upload per example, driven by a client that may be buggy or
    hostile; the server's view must always match what it acknowledged.

    C{state} is the model's: ticketed, receiving, finished (handover
    observed and confirmed) or cancelled.
    """

    live = None  # set by the test

    def __init__(self):
        super().__init__()
        self.server = self.live.server
        self.ticket = None

    # Helpers

    def send(self, method, target, headers=(), body=None, chunks=None):
        return send(self.server, method, target, headers, body, chunks)

    @property
    def url_path(self):
        return UPLOADS + self.ticket

    @property
    def data_file(self):
        return self.server.storage / f"{self.ticket}.data"

    def true_bytes(self, start, count):
        """
        What the client means to send at C{start}: the true content there
        (beyond it, bytes that are in no upload).
        """
        data = self.content[start : start + count]
        return data + b"\xa5" * (count - len(data))

    def room(self):
        if self.length is not None:
            return self.length - self.offset
        return CONTENT - self.offset  # what the client has; the server takes more

    def chunk_size(self, draw):
        room = max(self.room(), 0)
        kind = draw(st.sampled_from(["rest", "rest", "small", "part", "past", "zero", "zero"]))
        if kind == "rest":
            return room
        if kind == "small":
            size = draw(st.integers(1, 16))
            # Without a length, the client has no more than its content.
            return size if self.length is not None else min(size, room)
        if kind == "part":
            return draw(st.integers(0, room))
        if kind == "past" and self.length is not None:
            return room + draw(st.integers(1, 2000))
        return 0

    def method_or_override(self, draw, method):
        """
        C{method}, or POST with X-HTTP-Method-Override (tus, for clients
        that cannot send PATCH or DELETE).
        """
        if draw(st.integers(0, 4)):
            return method, []
        value = draw(st.sampled_from([method, method.lower(), f" {method} "]))
        return "POST", [("X-HTTP-Method-Override", value)]

    def expect(self, reply, allowed):
        assert reply.status in allowed, f"expected {sorted(allowed)}, got {reply!r}"

    def head(self):
        return self.send("HEAD", self.url_path, [TUS])

    def server_view(self):
        """
        (offset, length) as HEAD says, for an upload that exists.
        """
        reply = self.head()
        assert reply.status == 200, reply
        offset = int(reply.header("upload-offset"))
        if reply.header("upload-length") is not None:
            return offset, int(reply.header("upload-length"))
        assert reply.header("upload-defer-length") == "1", reply
        return offset, None

    def adopt(self, offsets, lengths):
        """
        After a request whose effect the model allows in more than one way,
        take the server's word, within C{offsets} and C{lengths}.
        """
        offset, length = self.server_view()
        assert offset in offsets, f"offset {offset} after the request, expected one of {sorted(offsets)}"
        assert length in lengths, f"length {length} after the request, expected one of {lengths}"
        self.offset, self.length = offset, length
        if length is not None and offset == length:
            self.handed_over()

    def handed_over(self):
        """
        All bytes are in: the backend must get the true content, then the
        upload must be finished.
        """
        status = json.loads(self.send("GET", f"{self.url_path}/state", [TUS]).body)
        assert status["state"] != "receiving", (
            f"all {self.length} bytes are in (HEAD and the state URL say so), "
            f"but the upload is still receiving: it will never be handed over: {status}"
        )
        call = self.live.call_for(self.ticket)
        expected = hashlib.sha256(self.content[: self.length]).hexdigest()
        assert call["cancelled"] == "no", call
        assert call["size"] == str(self.length), call
        assert call["sha256"] == expected, "the sha256 in the handover is not that of the acknowledged bytes"
        assert call.get("received_size") == self.length, call
        assert call.get("received_sha256") == expected, "the file handed over is not the acknowledged bytes"
        assert call["filename"] == str(self.data_file), call
        assert call["filenameFromBrowser"] == self.filename, call
        assert json.loads(call["metadata"]) == self.metadata, call
        status = self.wait_for_state_change("handing_over")
        assert status["state"] == "finished", status
        self.state = "finished"

    def wait_for_state_change(self, known, timeout=20.0):
        deadline = time.monotonic() + timeout
        while True:
            reply = self.send("GET", f"{self.url_path}/state?known={known}&wait=5", [TUS])
            assert reply.status == 200, reply
            status = json.loads(reply.body)
            if status["state"] != known:
                return status
            assert time.monotonic() < deadline, f"upload still {known} after {timeout} s"

    def cancelled(self):
        call = self.live.call_for(self.ticket)
        assert call["cancelled"] == "yes", call
        assert call["filename"] == "", call
        self.state = "cancelled"
        # Its partial uploads, which can make no final upload any more, with it.
        self.cancelled_parts += list(self.parts)
        self.parts = {}

    # The upload

    @initialize(
        seed=st.integers(0, 2**32 - 1),
        keep=st.booleans(),
        start=st.sampled_from(["claim", "claim", "claim", "parts", "nothing"]),
        data=st.data(),
    )
    def issue_ticket(self, seed, keep, start, data):
        # Lengths are at most CONTENT (+10 for a wrong Upload-Length), bodies
        # go at most 2000 bytes past the length.
        self.content = random.Random(seed).randbytes(CONTENT + 4096)
        self.remove_file = not keep
        self.ticket = self.server.new_ticket(self.live.backend, removeFileWhenFinished="false" if keep else "true")
        self.state = "ticketed"
        self.length = None
        self.offset = 0
        self.seen_offset = 0
        self.filename = ""
        self.metadata = {}
        self.raw_metadata = ""
        self.concat = ""
        self.seed = seed
        self.parts = {}  # partial uploads (tus concatenation): id -> Part
        self.cancelled_parts = []  # their ids, once the ticket is cancelled
        if start == "parts":
            # A parallel client: partial uploads first, some of them whole.
            for _ in range(data.draw(st.integers(1, 3), label="parts")):
                self.create_partial(data)
                part = list(self.parts.values())[-1]
                if data.draw(st.integers(0, 3), label="send it whole"):
                    self.patch_partial(data, part, part.length - part.offset)
        if start == "claim":
            # Most clients start with a valid claim.
            length = data.draw(st.one_of(st.none(), st.integers(0, 64), st.integers(0, CONTENT)), label="length")
            self.filename = data.draw(st.text(max_size=12), label="filename")
            self.raw_metadata = f"ticket {b64(self.ticket)},filename {b64(self.filename)}"
            headers = [TUS, ("Upload-Metadata", self.raw_metadata)]
            headers.append(("Upload-Defer-Length", "1") if length is None else ("Upload-Length", str(length)))
            reply = self.send("POST", UPLOADS, headers)
            assert reply.status == 201, reply
            self.state = "receiving"
            self.length = length
            if length == 0:
                self.handed_over()

    @rule(data=st.data())
    def claim(self, data):
        draw = data.draw
        headers, errors = tus_header(draw)

        # Upload-Metadata
        kind = draw(
            st.sampled_from(["valid"] * 8 + ["no-ticket", "empty", "unknown", "junk-id", "bad-b64", "twice", "three", "junk"])
        )
        filename = draw(st.text(max_size=12))
        extra = draw(st.dictionaries(st.sampled_from(["note", "name", "x-1", "empty"]), st.text(max_size=8), max_size=2))
        pairs = [f"filename {b64(filename)}"] + [f"{k} {b64(v)}" if v else k for k, v in extra.items()]
        ticket_ok = False
        if kind == "valid":
            pairs.append(f"ticket {b64(self.ticket)}")
            ticket_ok = True
        elif kind == "empty":
            pairs.append(draw(st.sampled_from(["ticket", "ticket "])))
            errors.add(403)
        elif kind == "unknown":
            pairs.append(f"ticket {b64(draw(st.text(alphabet='abcdefABC012_-', min_size=16, max_size=64)))}")
            errors.add(403)
        elif kind == "junk-id":
            pairs.append(f"ticket {b64(draw(junk_ids(self.ticket)))}")
            errors.add(403)
        elif kind == "bad-b64":
            pairs.append(f"ticket {draw(st.sampled_from(['***', 'abc', 'é', '====']))}")
            errors.add(400)
        elif kind == "twice":
            pairs += [f"ticket {b64(self.ticket)}", f"ticket {b64(self.ticket)}"]
            errors.add(400)
        elif kind == "three":
            pairs.append(f"ticket {b64(self.ticket)} {b64('x')}")
            errors.add(400)
        elif kind == "no-ticket":
            errors.add(403)
        pairs = draw(st.permutations(pairs))
        raw_metadata = draw(JUNK) if kind == "junk" else ",".join(pairs)
        headers.append(("Upload-Metadata", raw_metadata))
        if kind == "junk":
            errors |= {400, 403}

        # Upload-Length / Upload-Defer-Length
        lkind = draw(st.sampled_from(["same"] * 6 + ["other", "both", "neither", "junk", "defer-junk", "huge"]))
        if lkind == "same" and self.state == "ticketed":
            length = draw(st.one_of(st.none(), st.integers(0, 64), st.integers(0, CONTENT)))
        elif lkind == "same":
            length = self.length
        elif lkind == "other":
            length = draw(st.one_of(st.none(), st.integers(0, CONTENT)).filter(lambda n: n != self.length))
        elif lkind == "huge":
            length = draw(st.integers(SERVER_MAX + 1, 10**30))
        else:
            length = "?"
        if lkind == "both":
            headers += [("Upload-Length", str(draw(st.integers(0, CONTENT)))), ("Upload-Defer-Length", "1")]
            errors.add(400)
        elif lkind == "neither":
            errors.add(400)
        elif lkind == "junk":
            headers.append(("Upload-Length", draw(JUNK_COUNTS)))
            errors.add(400)
        elif lkind == "defer-junk":
            value = draw(st.one_of(st.sampled_from(["0", "2", "yes", "true", ""]), JUNK))
            headers.append(("Upload-Defer-Length", value))
            if value.strip(" \t") != "1":
                errors.add(400)
            else:
                length = None
        elif length is None:
            headers.append(("Upload-Defer-Length", draw(st.sampled_from(["1", " 1", "1 "]))))
        else:
            headers.append(("Upload-Length", draw(count_text(length))))

        # A body: creation-with-upload, or a body that is not upload data.
        bkind = draw(st.sampled_from(["none"] * 4 + ["data", "plain"]))
        body = chunks = None
        size = 0
        if bkind == "data":
            headers.append(("Content-Type", OFFSET_TYPE))
            size = self.chunk_size(draw) if self.state == "receiving" else draw(st.integers(0, 3000))
            body = self.true_bytes(0, size)
            if draw(st.booleans()):
                chunks, body = split(draw, body), None
        elif bkind == "plain":
            headers.append(("Content-Type", draw(st.sampled_from(["text/plain", "application/octet-stream"]))))
            body = draw(st.binary(max_size=100))
        headers += extra_headers(draw)

        reply = self.send("POST", UPLOADS, headers, body=body, chunks=chunks)

        if not ticket_ok or errors:
            self.expect(reply, errors)
            return
        if self.state == "cancelled":
            self.expect(reply, {410})
            return
        if self.state == "ticketed":
            if length is not None and length > SERVER_MAX:
                self.expect(reply, {413})
                return
            # Claimed now, whatever happens to the data that came along.
            self.state = "receiving"
            self.length = length
            self.filename = filename or extra.get("name", "")
            self.metadata = extra
            self.raw_metadata = raw_metadata
            if length == 0:
                self.handed_over()
        elif length != self.length or self.concat:
            # Taken for another length, or by a final (concatenated) upload.
            self.expect(reply, {409, 413})
            return

        def location_ok():
            # Every creation answer says the upload's own metadata, for a
            # client to tell whether the upload is its file's.
            own = self.raw_metadata.strip(" \t") or None
            assert reply.header("upload-metadata") == own, (reply.headers, self.raw_metadata)
            return (reply.header("location") or "").endswith(self.url_path)

        if bkind != "data" or size == 0 and chunks is None:
            self.expect(reply, {201})
            assert location_ok(), reply.headers
            return
        if self.offset != 0 or self.state == "finished" or raw_metadata.strip(" \t") != self.raw_metadata.strip(" \t"):
            # A repeated claim: the data is already here, the upload is
            # over, or the claim is for another file (other metadata); the
            # body is dropped, the client goes on from the offset.
            self.expect(reply, {201, 409, 413})
            if reply.status == 201:
                assert location_ok(), reply.headers
                assert int(reply.header("upload-offset")) == self.offset, reply.headers
            return
        if size <= self.room():
            self.expect(reply, {201})
            assert location_ok(), reply.headers
            assert int(reply.header("upload-offset")) == size, reply.headers
            self.offset = size
            if self.offset == self.length:
                self.handed_over()
            return
        # More data than the length: refused; a chunked body (whose size the
        # server learns only as it reads) may leave what fits.
        self.expect(reply, {413})
        self.adopt({0, self.length} if chunks is not None else {0}, [self.length])

    @rule(data=st.data())
    def patch_in_order(self, data):
        """
        What a well-behaved client sends: the right offset and headers,
        any chunk size, perhaps a checksum or the deferred length.
        """
        self.patch(data, careful=True)

    @rule(data=st.data())
    def patch(self, data, careful=False):
        draw = data.draw
        headers, errors = ([TUS], set()) if careful else tus_header(draw)

        kind = "right" if careful else draw(st.sampled_from(["right"] * 6 + ["missing", "wrong", "junk"]))
        if kind == "right":
            headers.append(("Content-Type", OFFSET_TYPE))
        elif kind == "wrong":
            value = draw(
                st.one_of(
                    st.sampled_from(["application/octet-stream", "text/plain", "multipart/form-data", OFFSET_TYPE + "x"]),
                    JUNK,
                ).filter(lambda v: v.strip(" \t") != OFFSET_TYPE)
            )
            headers.append(("Content-Type", value))
            errors |= refusal(value, 415)
        else:
            errors.add(415)

        kind = "right" if careful else draw(st.sampled_from(["right"] * 8 + ["behind", "ahead", "huge", "missing", "junk"]))
        offset = self.offset
        if kind == "right":
            headers.append(("Upload-Offset", draw(count_text(offset))))
        elif kind in ("behind", "ahead", "huge"):
            if kind == "behind" and self.offset > 0:
                offset = draw(st.integers(0, self.offset - 1))
            elif kind == "huge":
                offset = draw(st.integers(2**63, 10**30))
            else:
                offset = self.offset + draw(st.integers(1, 1000))
            headers.append(("Upload-Offset", str(offset)))
        else:
            if kind == "junk":
                headers.append(("Upload-Offset", draw(JUNK_COUNTS)))
            errors.add(400)

        size = self.chunk_size(draw)
        kinds = ["none"] * 4 + ["declare"] * (3 if self.length is None else 1)
        kind = draw(st.sampled_from(kinds if careful else kinds + ["other", "junk"]))
        declared = None
        if kind == "declare":
            if self.length is not None:
                declared = self.length
            else:
                # The client knows the length now: it ends with this chunk,
                # ended before it, or later.
                end = min(self.offset + size, CONTENT)
                declared = draw(st.sampled_from([end, self.offset, min(end + 1, CONTENT)]) | st.integers(self.offset, CONTENT))
            headers.append(("Upload-Length", draw(count_text(declared))))
        elif kind == "other":
            declared = draw(st.integers(0, CONTENT + 10).filter(lambda n: n != self.length))
            headers.append(("Upload-Length", str(declared)))
        elif kind == "junk":
            headers.append(("Upload-Length", draw(JUNK_COUNTS)))
            errors.add(400)

        true = self.true_bytes(offset, size) if offset < 2**63 else b"\x5a" * size
        sent = true
        if size and draw(st.integers(0, 9)) == 0:
            # Corrupted on the way (only a checksum can tell).
            flip = draw(st.integers(0, size - 1))
            sent = true[:flip] + bytes([true[flip] ^ 0xFF]) + true[flip + 1 :]
        checksum, malformed, mismatch = checksum_header(draw, sent, true, careful)
        if not checksum:
            # Corruption that no checksum could reveal is the client's
            # problem, not the server's: leave it out.
            sent = true
        headers += checksum
        if malformed:
            errors.add(400)
        header_errors = bool(errors)
        chunked = draw(st.integers(0, 3)) == 0
        chunks = split(draw, sent) if chunked else None
        if not careful:
            headers += extra_headers(draw)
        method, override = self.method_or_override(draw, "PATCH")

        reply = self.send(method, self.url_path, headers + override, body=None if chunked else sent, chunks=chunks)

        if self.state == "ticketed":
            self.expect(reply, errors | {404})
            return
        if self.state == "cancelled":
            self.expect(reply, errors | {410})
            return
        if self.concat:
            # tus: a final upload takes no PATCH (403).
            self.expect(reply, errors | {403})
            return
        if self.state == "finished":
            if not errors and offset == self.offset and (size == 0 or chunked):
                # Nothing (that the server knew of in advance) to write.
                self.expect(reply, {204, 409, 413})
                if reply.status == 204:
                    assert int(reply.header("upload-offset")) == self.length, reply.headers
            else:
                self.expect(reply, errors | {400, 409, 413})
            return

        # Receiving.
        length = self.length
        lengths = [self.length]
        if declared is not None:
            if self.length is None and declared >= self.offset:
                length = declared
                if not header_errors:
                    # Taken as the client's word even if the request is
                    # refused for another reason.
                    lengths.append(declared)
            elif declared != self.length:
                errors.add(400)
        if offset != self.offset:
            errors.add(409)
        room = length - self.offset if length is not None else SERVER_MAX - self.offset
        if size > room:
            errors.add(413)
        if mismatch:
            errors.add(460)
        if errors:
            self.expect(reply, errors)
            offsets = {self.offset}
            if errors == {413} and chunked and not checksum and offset == self.offset:
                offsets.add(self.offset + room)  # what fitted is kept
            self.adopt(offsets, lengths)
            return
        self.expect(reply, {204})
        assert int(reply.header("upload-offset")) == self.offset + size, reply.headers
        self.offset += size
        self.length = length
        if self.offset == self.length:
            self.handed_over()

    # tus concatenation: partial uploads under the ticket, then a final one

    @precondition(lambda self: len(self.parts) < 4)
    @rule(data=st.data())
    def create_partial(self, data):
        draw = data.draw
        length = draw(st.one_of(st.integers(0, 16), st.integers(0, 3000)), label="part length")
        raw = f"ticket {b64(self.ticket)}"
        headers = [TUS, ("Upload-Concat", draw(st.sampled_from(["partial", " partial"]))), ("Upload-Metadata", raw)]
        headers.append(("Upload-Length", str(length)))
        reply = self.send("POST", UPLOADS, headers)
        if self.state != "ticketed":
            # The ticket is taken (or cancelled): no more pieces for it.
            self.expect(reply, {409, 410})
            return
        self.expect(reply, {201})
        part_id = reply.header("location").rstrip("/").rpartition("/")[2]
        assert part_id != self.ticket and part_id not in self.parts, reply.headers
        content = random.Random(self.seed + len(self.parts) + 1).randbytes(length + 100)
        self.parts[part_id] = Part(part_id, length, content)

    @precondition(lambda self: self.parts)
    @rule(data=st.data())
    def patch_partial(self, data, part=None, size=None):
        draw = data.draw
        if part is None:
            part = self.parts[draw(st.sampled_from(list(self.parts)), label="part")]
        room = part.length - part.offset
        if size is None:
            size = draw(st.sampled_from([room, room, 0, 1, room + 1]) | st.integers(0, room + 10), label="size")
            size = max(size, 0)
        body = part.content[part.offset : part.offset + size]
        headers = [TUS, ("Content-Type", OFFSET_TYPE), ("Upload-Offset", str(part.offset))]
        if draw(st.booleans()):
            headers.append(("Upload-Checksum", f"sha1 {b64(hashlib.sha1(body).digest())}"))
        chunks = split(draw, body) if draw(st.booleans()) else None
        reply = self.send("PATCH", UPLOADS + part.id, headers, body=None if chunks else body, chunks=chunks)
        if size > room:
            self.expect(reply, {413})
            if chunks is not None and len(headers) == 3:
                # What fitted of a chunked body may be kept.
                offset = int(self.send("HEAD", UPLOADS + part.id, [TUS]).header("upload-offset"))
                assert offset in (part.offset, part.length), offset
                part.offset = offset
            return
        self.expect(reply, {204})
        assert int(reply.header("upload-offset")) == part.offset + size, reply.headers
        part.offset += size
        assert self.live.more_calls_for(part.id) == [], "a partial upload was handed over"

    @precondition(lambda self: self.parts)
    @rule(data=st.data())
    def final(self, data):
        draw = data.draw
        whole = [name for name, part in self.parts.items() if part.offset == part.length]
        choice = whole if whole and draw(st.integers(0, 3)) else list(self.parts)
        names = draw(st.lists(st.sampled_from(choice), min_size=1, max_size=5), label="parts")
        unknown = draw(st.integers(0, 9)) == 0
        if unknown:
            names.insert(draw(st.integers(0, len(names))), draw(junk_ids(self.ticket).filter(lambda i: "%" not in i)))
        absolute = draw(st.booleans())
        urls = [(self.server.frontend if absolute else "") + UPLOADS + name for name in names]
        concat = "final;" + " ".join(urls)
        filename = draw(st.text(max_size=8), label="filename")
        raw = f"ticket {b64(self.ticket)},filename {b64(filename)}"
        headers = [TUS, ("Upload-Concat", concat), ("Upload-Metadata", raw)]
        with_length = draw(st.integers(0, 9)) == 0
        if with_length:
            headers.append(("Upload-Length", "5"))
        reply = self.send("POST", UPLOADS, headers)
        if with_length:
            self.expect(reply, {400})
            return
        if self.state != "ticketed":
            if self.concat == concat:
                self.expect(reply, {201})  # a repeated final claim: same upload
            else:
                self.expect(reply, {409, 410})
            return
        parts = [self.parts.get(name) for name in names]
        errors = set()
        if unknown:
            errors.add(400)
        if any(part is not None and part.offset != part.length for part in parts):
            errors.add(409)
        if errors:
            self.expect(reply, errors)
            return
        self.expect(reply, {201})
        assert (reply.header("location") or "").endswith(self.url_path), reply.headers
        joined = b"".join(part.content[: part.length] for part in parts)
        self.content = joined + random.Random(self.seed).randbytes(4096)
        self.state = "receiving"
        self.length = self.offset = len(joined)
        self.filename, self.metadata, self.raw_metadata, self.concat = filename, {}, raw, concat
        for name in names:
            self.parts.pop(name, None)
            reply = self.send("HEAD", UPLOADS + name, [TUS])
            self.expect(reply, {404})
        self.handed_over()

    @precondition(lambda self: self.state == "receiving" and self.room() >= 2)
    @rule(data=st.data())
    def drop_mid_body(self, data):
        """
        A PATCH whose connection is cut after C{count} of its bytes: they
        are kept, and the upload goes on from there.
        """
        room = self.room()
        count = data.draw(st.integers(1, room - 1), label="bytes sent")
        declared = count + data.draw(st.integers(1, room - count), label="bytes missing")
        headers = [TUS, ("Content-Type", OFFSET_TYPE), ("Upload-Offset", str(self.offset))]
        head = request_bytes("PATCH", self.url_path, headers + [("Content-Length", str(declared))])
        with connect(self.server) as sock:
            sock.sendall(head + self.true_bytes(self.offset, count))
            sock.shutdown(socket.SHUT_WR)
            try:
                while sock.recv(65536):
                    pass
            except TimeoutError:
                raise AssertionError("server hung: it never closed a connection cut mid-body") from None
        offset, _ = self.server_view()
        assert offset == self.offset + count, f"{count} bytes sent before the cut, offset went {self.offset} -> {offset}"
        self.offset = offset

    @rule(data=st.data())
    def head_with_junk(self, data):
        headers, refused = tus_header(data.draw)
        headers += extra_headers(data.draw)
        reply = self.send("HEAD", self.url_path, headers)
        expected = {"ticketed": 404, "cancelled": 410}.get(self.state, 200)
        self.expect(reply, refused or {expected})
        if reply.status == 200:
            assert int(reply.header("upload-offset")) == self.offset, reply.headers
            assert reply.header("cache-control") == "no-store", reply.headers

    @rule(data=st.data())
    def delete(self, data):
        draw = data.draw
        kind = draw(st.sampled_from(["real", "bad-tus", "bad-tus", "junk-id", "junk-id"]))
        headers = [TUS] if kind != "bad-tus" else [("Tus-Resumable", draw(st.sampled_from(["0.2.2", ""])))]
        headers += extra_headers(draw)
        target = self.url_path
        if kind == "junk-id":
            target = UPLOADS + draw(junk_ids(self.ticket))
        reason = draw(st.sampled_from([None, "closed", "%E2%9C%93", "%ff", "a" * 600, ""]))
        if reason is not None:
            target += "?reason=" + reason
        method, override = self.method_or_override(draw, "DELETE")
        reply = self.send(method, target, headers + override)
        if kind == "bad-tus":
            self.expect(reply, {412})
        elif kind == "junk-id":
            self.expect(reply, {400, 404, 405})
        elif reason == "%ff" and reply.status == 400:
            pass  # a URL that is not UTF-8 may be refused as such
        elif self.state in ("ticketed", "receiving"):
            self.expect(reply, {204})
            assert not self.data_file.exists(), "the data of a cancelled upload is still there"
            self.cancelled()
        elif self.state == "finished":
            # Too late to cancel: refused, or a no-op (the file is the
            # backend's); either way the invariants see nothing change.
            self.expect(reply, {204, 409})
        else:
            self.expect(reply, {410})

    @rule(data=st.data())
    def state_url(self, data):
        draw = data.draw
        kind = draw(st.sampled_from(["plain", "long-poll", "other-state", "bad-wait"]))
        query = {
            "plain": "",
            "long-poll": f"?known={self.state}&wait={draw(st.sampled_from(['0', '0.01', '-5']))}",
            "other-state": f"?known={draw(st.sampled_from(['nope', 'finished', '%ff', 'receiving']))}&wait=0.02",
            "bad-wait": f"?known={self.state}&wait={draw(st.sampled_from(['abc', '', 'nan', '1e-9', '%ff']))}",
        }[kind]
        reply = self.send("GET", f"{self.url_path}/state{query}", extra_headers(draw))
        if reply.status == 400 and (kind == "bad-wait" or "%ff" in query):
            return  # not a number, or not UTF-8
        assert reply.status == 200, reply
        status = json.loads(reply.body)
        assert status["state"] == self.state, status
        assert status["offset"] == self.offset, status

    @rule(data=st.data())
    def options(self, data):
        target = data.draw(st.one_of(st.just(UPLOADS), st.just(self.url_path), junk_ids(self.ticket).map(UPLOADS.__add__)))
        reply = self.send("OPTIONS", target, extra_headers(data.draw))
        assert reply.status == 204, reply
        assert reply.header("tus-version") == "1.0.0", reply.headers
        assert "checksum" in reply.header("tus-extension").split(","), reply.headers

    @rule(data=st.data())
    def junk_path(self, data):
        """
        Requests for uploads that do not exist: 4xx, and the real upload
        does not change (the invariants check it).
        """
        draw = data.draw
        method = draw(st.sampled_from(["HEAD", "PATCH", "DELETE", "GET", "POST", "PUT"]))
        junk = draw(junk_ids(self.ticket))
        target = UPLOADS + junk + ("/state" if method == "GET" else "")
        headers = [TUS, ("Content-Type", OFFSET_TYPE), ("Upload-Offset", str(self.offset))]
        body = self.true_bytes(self.offset, draw(st.integers(0, 100))) if method in ("PATCH", "POST", "PUT") else None
        reply = self.send(method, target, headers + extra_headers(draw), body=body)
        # A refusal; or, for an encoded slash after the upload's id, what the
        # URL it spells answers, or a redirect there.
        spelled = junk.startswith(self.ticket + "%2F") and method in ("HEAD", "GET")
        check_refused_or_redirected(reply, {200} if spelled else set())

    @rule(data=st.data())
    def doubled_slash(self, data):
        """
        The upload's own URLs with a slash doubled (a client joining URL
        parts carelessly): answered as the URL, or redirected to it, or
        refused; never a redirect that says nowhere where to.
        """
        draw = data.draw
        method = draw(st.sampled_from(["HEAD", "GET"]))
        prefix, rest = draw(
            st.sampled_from([(UPLOADS, "/"), ("/incoming/frontend/", "/uploads/"), ("/incoming/", "/frontend/uploads/")])
        )
        target = prefix + rest + self.ticket + ("/state" if method == "GET" else "")
        if draw(st.booleans()):
            target = target.replace(self.ticket, self.ticket + "%2F")
        reply = self.send(method, target, [TUS])
        check_refused_or_redirected(reply, {200})

    @precondition(lambda self: self.state != "ticketed")
    @rule(data=st.data())
    def refused_then_head_on_one_connection(self, data):
        """
        A refused PATCH with a body, then a HEAD on the same keep-alive
        connection: the server must have read the refused body to its end.
        """
        draw = data.draw
        kind = draw(st.sampled_from(["offset", "type", "too-large", "version"]))
        if kind == "too-large" and self.length is None:
            kind = "offset"  # a deferred length has no end to pass
        size = draw(st.integers(1, 70000))
        headers = [TUS, ("Content-Type", OFFSET_TYPE), ("Upload-Offset", str(self.offset + 1))]
        expected = {409}
        if kind == "type":
            headers = [TUS, ("Content-Type", "text/plain"), ("Upload-Offset", str(self.offset))]
            expected = {415}
        elif kind == "too-large":
            headers = [TUS, ("Content-Type", OFFSET_TYPE), ("Upload-Offset", str(self.offset))]
            size = max(self.room(), 0) + draw(st.integers(1, 70000))
            expected = {413}
        elif kind == "version":
            headers = [("Tus-Resumable", "0.2.2"), ("Content-Type", OFFSET_TYPE), ("Upload-Offset", str(self.offset))]
            expected = {412}
        if self.state != "receiving":
            expected |= {409, 410, 413}
        if self.concat:
            expected.add(403)  # a final upload takes no PATCH
        body = b"\x5a" * size
        with connect(self.server) as sock:
            what = describe("PATCH", self.url_path, headers, body)
            first = exchange(sock, "PATCH", request_bytes("PATCH", self.url_path, headers, body, close=False), what)
            check_reply(first, headers)
            self.expect(first, expected)
            if (first.header("connection") or "").lower() == "close":
                return
            what = "HEAD after a refused PATCH on the same connection"
            second = exchange(sock, "HEAD", request_bytes("HEAD", self.url_path, [TUS], close=False), what)
        check_reply(second)
        self.expect(second, {410} if self.state == "cancelled" else {200})
        if second.status == 200:
            assert int(second.header("upload-offset")) == self.offset, second.headers

    # What must hold after every step

    @invariant()
    def the_server_holds_what_it_acknowledged(self):
        if self.ticket is None:
            return
        reply = self.head()
        if self.state in ("ticketed", "cancelled"):
            self.expect(reply, {404} if self.state == "ticketed" else {410})
            assert not self.data_file.exists(), f"a {self.state} upload has a data file"
        else:
            assert reply.status == 200, reply
            offset = int(reply.header("upload-offset"))
            assert offset >= self.seen_offset, f"the offset went backwards: {self.seen_offset} -> {offset}"
            self.seen_offset = offset
            if reply.header("upload-length") is not None:
                length = int(reply.header("upload-length"))
                assert offset <= length, f"offset {offset} is past the length {length}"
            else:
                length = None
            assert (offset, length) == (self.offset, self.length), (
                f"HEAD says offset {offset} of {length}, but {self.offset} of {self.length} were acknowledged"
            )
            assert reply.header("upload-concat") == (self.concat or None), reply.headers
            # (as it arrived: HTTP drops the whitespace around a header value)
            assert reply.header("upload-metadata") == (self.raw_metadata.strip(" \t") or None), (
                "HEAD does not give back the Upload-Metadata of the claim",
                reply.header("upload-metadata"),
                self.raw_metadata,
            )
            if self.state == "finished" and self.remove_file:
                assert not self.data_file.exists(), "the data file is still there after the handover"
            elif self.data_file.exists():
                stored = self.data_file.read_bytes()
                assert len(stored) == self.offset, f"the data file holds {len(stored)} bytes, acknowledged {self.offset}"
                assert stored == self.content[: self.offset], "the data file differs from the acknowledged bytes"
            else:
                assert self.offset == 0, f"no data file, but {self.offset} bytes acknowledged"
        for part in self.parts.values():
            reply = self.send("HEAD", UPLOADS + part.id, [TUS])
            assert reply.status == 200, reply
            assert int(reply.header("upload-offset")) == part.offset, (reply.headers, part)
            assert int(reply.header("upload-length")) == part.length, (reply.headers, part)
            assert reply.header("upload-concat") == "partial", reply.headers
            path = self.server.storage / f"{part.id}.data"
            stored = path.read_bytes() if path.exists() else b""
            assert stored == part.content[: part.offset], f"the data of partial upload {part.id} is not what was acknowledged"
        for part_id in self.cancelled_parts:
            self.expect(self.send("HEAD", UPLOADS + part_id, [TUS]), {410})
            assert not (self.server.storage / f"{part_id}.data").exists(), "a cancelled partial upload has a data file"
        status = json.loads(self.send("GET", f"{self.url_path}/state", [TUS]).body)
        assert status["state"] == self.state, (
            f"the state URL says {status['state']} at offset {status['offset']} of {status['length']}, "
            f"expected {self.state}"
        )
        assert (status["offset"], status["length"]) == (self.offset, self.length), status
        if self.state == "finished":
            assert status["sha256"] == hashlib.sha256(self.content[: self.length]).hexdigest(), status

    def teardown(self):
        if self.ticket is not None:
            extra = self.live.more_calls_for(self.ticket)
            assert not extra, f"unexpected backend calls about the upload: {extra}"


def test_random_tus_sessions_never_lose_or_corrupt_acknowledged_bytes(live):
    TusSessions.live = live
    run_state_machine_as_test(TusSessions, settings=LIVE)


# Raw junk, including header values that are not UTF-8 at all

RAW_VALUES = st.one_of(
    JUNK,
    st.binary(max_size=24).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"").strip(b" \t")),
    st.sampled_from([b"\xff", b"\xe9t\xe9", b"1.0.0\xff", b"\xc3", "ticket é".encode("latin-1"), b"5\x85"]),
)
RAW_NAMES = [
    "Tus-Resumable",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Checksum",
    "Content-Type",
    "Origin",
    "Accept",
    "Host",
    "X-HTTP-Method-Override",
    "Access-Control-Request-Method",
    "Access-Control-Request-Headers",
]


@settings(LIVE, max_examples=300)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "POST", "PATCH", "PATCH", "DELETE", "OPTIONS", "PUT"]),
    where=st.sampled_from(["creation", "upload", "state", "junk"]),
    junk=st.data(),
    headers=st.lists(st.tuples(st.sampled_from(RAW_NAMES), RAW_VALUES), max_size=5),
    content_type=st.one_of(st.none(), st.just(OFFSET_TYPE), RAW_VALUES),
    body=st.one_of(st.none(), st.binary(max_size=64)),
)
def test_junk_requests_get_a_one_line_4xx(live, method, where, junk, headers, content_type, body):
    """
    Any request, with any bytes in its tus headers (UTF-8 or not), to a
    fresh upload or to junk paths, is answered (no hang, no dropped
    connection) and never with a server error.
    """
    server = live.server
    ticket = server.new_ticket(live.backend)
    claim = [TUS, ("Upload-Length", "10"), ("Upload-Metadata", f"ticket {b64(ticket)}")]
    assert send(server, "POST", UPLOADS, claim).status == 201
    target = {
        "creation": UPLOADS,
        "upload": UPLOADS + ticket,
        "state": UPLOADS + ticket + "/state",
        "junk": UPLOADS + junk.draw(junk_ids(ticket)),
    }[where]
    hosts = [h for h in headers if h[0] == "Host"]
    headers = [h for h in headers if h[0] != "Host"] + hosts[:1]  # one Host at most (else ours)
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    reply = send(server, method, target, [TUS, *headers], body=body)
    assert reply.status < 500
    # The upload is still there, within its length.
    head = send(server, "HEAD", UPLOADS + ticket, [TUS])
    if head.status == 200:
        assert int(head.header("upload-offset")) <= int(head.header("upload-length"))
    else:
        overridden = any(name == "X-HTTP-Method-Override" for name, _ in headers)
        assert head.status == 410 and (method == "DELETE" or overridden), head


def test_the_server_logged_no_tracebacks(live):
    """
    After all of the above (this test runs last in the module): bad input
    is a client's mistake, answered with a 4xx; it must not leave
    tracebacks ("Unhandled error", "Traceback") in the server's log.
    """
    lines = [line for line in live.server.log.lines if line is not None]
    blocks = []
    for i, line in enumerate(lines):
        if "Traceback" in line:
            block = [line]
            for following in lines[i + 1 :]:
                if not following.startswith("\t"):
                    break
                block.append(following)
            blocks.append(block)
    kinds = {}  # exception type and the frame it came from: the first such traceback
    for block in blocks:
        error = next((line.strip() for line in reversed(block) if line.strip()), "?")
        where = next((line.strip() for line in reversed(block) if line.strip().startswith("File ")), "?")
        kinds.setdefault(f"{error.split(':')[0]} at {where}", block)
    shown = "\n\n".join(f"{error}:\n" + "\n".join(block) for error, block in kinds.items())
    assert not blocks, f"{len(blocks)} tracebacks in the server log, {len(kinds)} kinds:\n{shown}"

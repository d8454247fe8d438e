"""
tus 1.0.0 conformance, written from the protocol text
(https://github.com/tus/tus-resumable-upload-protocol/blob/280977c3f8d625afdeaa53dd22d12a2578382fd8/protocol.md):
one test per MUST and MUST NOT of the core protocol and of each extension
the server advertises (creation, creation-with-upload, creation-defer-length,
termination, expiration, checksum, concatenation), each quoting the sentence
it checks. A few SHOULDs that clients rely on are at the end of their
section, marked as such.

Most tests run against one ticketed server per module (every upload takes a
fresh ticket); the creation tests run once more against a server in
ticketless mode, where a tus client creates uploads without a ticket.
Requests are made by hand, every header explicit, so a test shows exactly
what goes over the wire.
"""

import base64
import hashlib
import os
import re
import socket
import threading
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from harness import IncomingServer, TestBackend, TusClient, b64

VERSION = "1.0.0"
OFFSET_TYPE = "application/offset+octet-stream"
EXTENSIONS = {
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "expiration",
    "checksum",
    "concatenation",
}
# RFC 7231 section 7.1.1.1, the preferred format (IMF-fixdate).
IMF_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT"
)
DIGITS = re.compile(r"[0-9]+")


# The test backend and the servers, shared by the tests of this module.


class SpecBackend(TestBackend):
    """
    A test backend shared by many tests: each test finds the calls about its
    own uploads, and can tell the backend to answer C{wait} for one.
    """

    __test__ = False

    def __init__(self):
        self.answers = {}
        self._arrived = threading.Condition()
        super().__init__(answer=lambda fields: self.answers.get(fields["id"], "done"))

    def _handle(self, fields):
        result = super()._handle(fields)
        with self._arrived:
            self._arrived.notify_all()
        return result

    def calls_for(self, upload_id):
        return [call for call in list(self.all_calls) if call["id"] == upload_id]

    def call_for(self, upload_id, timeout=30):
        """
        The first call about C{upload_id}, waiting for it if need be.
        """
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not (calls := self.calls_for(upload_id)):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"the backend got no call about {upload_id} within {timeout} s")
                self._arrived.wait(remaining)
        return calls[0]


@pytest.fixture(scope="module")
def spec_backend():
    backend = SpecBackend()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def ticketed_server(tmp_path_factory):
    server = IncomingServer(tmp_path_factory.mktemp("ticketed"))
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def ticketless_server(tmp_path_factory, spec_backend):
    server = IncomingServer(tmp_path_factory.mktemp("ticketless"), "--ticketless-handover", spec_backend.url)
    yield server.start()
    server.stop()


class Spec:
    """
    A hand-made tus client of one server. In ticketed mode every upload it
    creates gets a fresh ticket, in its C{Upload-Metadata}; in ticketless
    mode it sends none.
    """

    __test__ = False

    def __init__(self, server, backend, ticketless=False):
        self.server = server
        self.backend = backend
        self.ticketless = ticketless
        self.http = requests.Session()

    @property
    def creation_url(self):
        return self.server.uploads_url

    def new_ticket(self):
        return None if self.ticketless else self.server.new_ticket(self.backend)

    def metadata(self, ticket=None, **pairs):
        """
        An C{Upload-Metadata} value: the ticket (a fresh one unless given;
        none in ticketless mode), then C{pairs} (C{None}: a key without
        value).
        """
        if not self.ticketless:
            pairs = {"ticket": ticket or self.new_ticket(), **pairs}
        return ",".join(key if value is None else f"{key} {b64(value)}" for key, value in pairs.items())

    def request(self, method, url, headers=None, data=None, version=VERSION):
        headers = dict(headers or {})
        if version is not None:
            headers["Tus-Resumable"] = version
        return self.http.request(method, url, headers=headers, data=data)

    def post(self, headers=None, data=None, url=None, **kw):
        return self.request("POST", url or self.creation_url, headers, data, **kw)

    def create(self, length=None, metadata=None, **headers):
        """
        A new upload of C{length} bytes (C{None}: deferred length); its URL.
        """
        headers["Upload-Metadata"] = self.metadata() if metadata is None else metadata
        if length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(length)
        response = self.post(headers)
        assert response.status_code == 201, (response.status_code, response.text)
        return urljoin(self.creation_url, response.headers["Location"])

    def head(self, url, **kw):
        return self.request("HEAD", url, **kw)

    def patch(self, url, offset, data, content_type=OFFSET_TYPE, version=VERSION, **headers):
        headers["Upload-Offset"] = str(offset)
        if content_type is not None:
            headers["Content-Type"] = content_type
        return self.request("PATCH", url, headers, data, version=version)

    def delete(self, url, **kw):
        return self.request("DELETE", url, **kw)

    def options(self, url=None, headers=None):
        return self.http.options(url or self.creation_url, headers=headers or {})

    def offset(self, url):
        response = self.head(url)
        assert response.status_code == 200, (response.status_code, response.headers)
        return int(response.headers["Upload-Offset"])

    def upload_id(self, url):
        return urlsplit(url).path.rstrip("/").rsplit("/", 1)[1]

    def handover(self, url):
        """
        The backend's handover call for the upload at C{url}.
        """
        call = self.backend.call_for(self.upload_id(url))
        assert call["cancelled"] == "no", call
        return call

    def wait_until_over(self, url):
        return TusClient(self.server).wait_until_over(url)

    def partial(self, ticket, data, **metadata):
        """
        A partial upload (concatenation) under C{ticket} holding C{data}.
        """
        response = self.post(
            {
                "Upload-Concat": "partial",
                "Upload-Length": str(len(data)),
                "Upload-Metadata": self.metadata(ticket, **metadata),
            }
        )
        assert response.status_code == 201, (response.status_code, response.text)
        url = urljoin(self.creation_url, response.headers["Location"])
        if data:
            response = self.patch(url, 0, data)
            assert response.status_code == 204, (response.status_code, response.text)
        return url

    def final(self, ticket, concat, **metadata):
        return self.post({"Upload-Concat": concat, "Upload-Metadata": self.metadata(ticket, **metadata)})


@pytest.fixture
def spec(ticketed_server, spec_backend):
    return Spec(ticketed_server, spec_backend)


@pytest.fixture(params=["ticket", "ticketless"])
def creation(request, spec_backend):
    """
    A client for the creation tests: once with a ticket per upload, once in
    ticketless mode.
    """
    if request.param == "ticketless":
        return Spec(request.getfixturevalue("ticketless_server"), spec_backend, ticketless=True)
    return Spec(request.getfixturevalue("ticketed_server"), spec_backend)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def checksum(algorithm, data):
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def extensions(spec):
    response = spec.options()
    return [name.strip() for name in response.headers["Tus-Extension"].split(",")]


def assert_gone(response):
    """
    What a client may expect of a URL whose upload is no more.
    """
    assert response.status_code in (404, 410), (response.status_code, response.text)
    assert "Upload-Offset" not in response.headers


# Core protocol


def test_core_protocol_resumes_an_interrupted_upload(spec):
    """
    "All Clients and Servers MUST implement the core protocol."

    The spec's example: a 100 byte upload interrupted after 70 bytes, the
    offset found with HEAD, the rest sent with PATCH.
    """
    data = os.urandom(100)
    url = spec.create(100)
    assert spec.patch(url, 0, data[:70]).status_code == 204
    head = spec.head(url)
    assert (head.status_code, head.headers["Upload-Offset"]) == (200, "70")
    response = spec.patch(url, 70, data[70:])
    assert (response.status_code, response.headers["Upload-Offset"]) == (204, "100")
    call = spec.handover(url)
    assert call["sha256"] == call["received_sha256"] == sha256(data)


def test_upload_offset_is_a_non_negative_integer(spec):
    """
    "The `Upload-Offset` request and response header indicates a byte offset
    within a resource. The value MUST be a non-negative integer."

    Every Upload-Offset the server sends is one; a request whose value is
    not one is refused and changes nothing.
    """
    response = spec.post(
        {"Upload-Length": "6", "Upload-Metadata": spec.metadata(), "Content-Type": OFFSET_TYPE}, data=b"ab"
    )
    assert DIGITS.fullmatch(response.headers["Upload-Offset"])
    url = urljoin(spec.creation_url, response.headers["Location"])
    assert DIGITS.fullmatch(spec.head(url).headers["Upload-Offset"])
    assert DIGITS.fullmatch(spec.patch(url, 2, b"cd").headers["Upload-Offset"])
    for bad in ("-4", "4.0", "+4", "0x4", "four", ""):
        response = spec.patch(url, bad, b"ef")
        assert response.status_code == 400, (bad, response.status_code)
    assert spec.offset(url) == 4


def test_upload_length_is_a_non_negative_integer(spec):
    """
    "The `Upload-Length` request and response header indicates the size of
    the entire upload in bytes. The value MUST be a non-negative integer."

    Zero included: an empty file is an upload too.
    """
    ticket = spec.new_ticket()
    for bad in ("-1", "1e3", "10.0", "ten"):
        response = spec.post({"Upload-Length": bad, "Upload-Metadata": spec.metadata(ticket)})
        assert response.status_code == 400, (bad, response.status_code)
    url = spec.create(0, metadata=spec.metadata(ticket))
    head = spec.head(url)
    assert (head.headers["Upload-Length"], head.headers["Upload-Offset"]) == ("0", "0")
    call = spec.handover(url)
    assert (call["size"], call["sha256"], call["received_sha256"]) == ("0", sha256(b""), sha256(b""))


def test_tus_version_lists_the_supported_versions(spec):
    """
    "The `Tus-Version` response header MUST be a comma-separated list of
    protocol versions supported by the Server."

    Each version listed is accepted in Tus-Resumable.
    """
    url = spec.create(3)
    versions = [v.strip() for v in spec.options().headers["Tus-Version"].split(",")]
    assert VERSION in versions
    for version in versions:
        assert re.fullmatch(r"\d+\.\d+\.\d+", version)
        assert spec.head(url, version=version).status_code == 200


def test_tus_version_is_sorted_by_preference(spec):
    """
    "The list MUST be sorted by Server's preference where the first one is
    the most preferred one."

    The first is the version the server speaks in its own answers.
    """
    first = spec.options().headers["Tus-Version"].split(",")[0].strip()
    assert first == VERSION
    assert spec.head(spec.create(3)).headers["Tus-Resumable"] == first


def test_tus_resumable_is_required_on_every_request_but_options(spec):
    """
    "The `Tus-Resumable` header MUST be included in every request and
    response except for `OPTIONS` requests."

    A request without it is refused (412) and has no effect; OPTIONS needs
    none.
    """
    ticket = spec.new_ticket()
    response = spec.post({"Upload-Length": "3", "Upload-Metadata": spec.metadata(ticket)}, version=None)
    assert response.status_code == 412
    assert spec.server.status(ticket)["state"] == "ticketed"
    url = spec.create(3, metadata=spec.metadata(ticket))
    assert spec.head(url, version=None).status_code == 412
    assert spec.patch(url, 0, b"abc", version=None).status_code == 412
    assert spec.delete(url, version=None).status_code == 412
    assert spec.offset(url) == 0
    assert spec.options(url).status_code in (200, 204)
    assert spec.options().status_code in (200, 204)
    assert spec.patch(url, 0, b"abc").status_code == 204
    assert spec.handover(url)["received_sha256"] == sha256(b"abc")


def test_tus_resumable_is_on_every_response(spec):
    """
    "The `Tus-Resumable` header MUST be included in every request and
    response except for `OPTIONS` requests."

    Successes and errors alike (the OPTIONS answer has it too, as in the
    spec's own example).
    """
    answers = {}
    ticket = spec.new_ticket()
    answers["POST 201"] = spec.post({"Upload-Length": "6", "Upload-Metadata": spec.metadata(ticket)})
    url = urljoin(spec.creation_url, answers["POST 201"].headers["Location"])
    answers["HEAD 200"] = spec.head(url)
    answers["PATCH 204"] = spec.patch(url, 0, b"ab")
    answers["PATCH 409"] = spec.patch(url, 0, b"ab")
    answers["PATCH 415"] = spec.patch(url, 2, b"ab", content_type="text/plain")
    answers["PATCH 413"] = spec.patch(url, 2, b"too long!")
    answers["PATCH 460"] = spec.patch(url, 2, b"cd", **{"Upload-Checksum": checksum("sha1", b"xx")})
    answers["PATCH 400"] = spec.patch(url, "x", b"cd")
    answers["HEAD 412"] = spec.head(url, version="0.2.2")
    answers["POST 403"] = spec.post(
        {"Upload-Length": "6", "Upload-Metadata": f"ticket {b64('no such ticket')}"}
    )
    answers["POST 405"] = spec.post({"Upload-Length": "6"}, url=url)
    answers["HEAD 404"] = spec.head(spec.creation_url + "A" * 24)
    answers["OPTIONS"] = spec.options()
    answers["DELETE 204"] = spec.delete(url)
    answers["HEAD 410"] = spec.head(url)
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert all(name.endswith(str(status)) for name, status in statuses.items() if name != "OPTIONS"), statuses
    missing = [name for name, answer in answers.items() if answer.headers.get("Tus-Resumable") != VERSION]
    assert missing == []


def test_tus_resumable_value_is_the_protocol_version(spec):
    """
    "The value MUST be the version of the protocol used by the Client or
    the Server."
    """
    url = spec.create(2)
    for response in (spec.head(url), spec.patch(url, 0, b"a"), spec.options()):
        assert response.headers["Tus-Resumable"] == VERSION


def test_unsupported_version_is_412_with_tus_version(spec):
    """
    "If the version specified by the Client is not supported by the Server,
    it MUST respond with the `412 Precondition Failed` status and MUST
    include the `Tus-Version` header into the response."
    """
    versions = spec.options().headers["Tus-Version"]
    url = spec.create(3)
    for version in ("0.2.2", "2.0.0", "1.0"):
        answers = [
            spec.post({"Upload-Length": "3", "Upload-Metadata": spec.metadata()}, version=version),
            spec.head(url, version=version),
            spec.patch(url, 0, b"abc", version=version),
            spec.delete(url, version=version),
        ]
        for response in answers:
            assert response.status_code == 412, (version, response.request.method, response.status_code)
            assert response.headers["Tus-Version"] == versions


def test_unsupported_version_request_is_not_processed(spec):
    """
    "In addition, the Server MUST NOT process the request."

    A creation does not claim the ticket (nor keep the data sent with it), a
    PATCH stores nothing, a DELETE terminates nothing, a HEAD tells no
    offset.
    """
    ticket = spec.new_ticket()
    headers = {"Upload-Length": "10", "Upload-Metadata": spec.metadata(ticket), "Content-Type": OFFSET_TYPE}
    assert spec.post(headers, data=b"0123456789", version="0.2.2").status_code == 412
    assert spec.server.status(ticket)["state"] == "ticketed"
    url = spec.create(4, metadata=spec.metadata(ticket))  # another length: the ticket is still free
    assert spec.offset(url) == 0
    assert spec.patch(url, 0, b"ab", version="0.2.2").status_code == 412
    assert spec.offset(url) == 0
    assert spec.delete(url, version="0.2.2").status_code == 412
    head = spec.head(url, version="0.2.2")
    assert "Upload-Offset" not in head.headers
    assert spec.patch(url, 0, b"abcd").status_code == 204
    call = spec.handover(url)
    assert call["received_sha256"] == sha256(b"abcd")
    assert [c["cancelled"] for c in spec.backend.calls_for(ticket)] == ["no"]


def test_tus_extension_lists_the_supported_extensions(spec):
    """
    "The `Tus-Extension` response header MUST be a comma-separated list of
    the extensions supported by the Server."

    Exactly the seven this server implements (each has its tests below).
    """
    names = extensions(spec)
    assert sorted(names) == sorted(EXTENSIONS)
    assert len(names) == len(set(names))


def test_tus_extension_is_never_empty(spec):
    """
    "If no extensions are supported, the `Tus-Extension` header MUST be
    omitted."

    This server supports extensions: the header is there, never empty.
    """
    response = spec.options()
    assert response.headers.get("Tus-Extension", "").strip()
    assert all(extensions(spec))


def test_tus_max_size_is_a_non_negative_integer(spec, start_server):
    """
    "The `Tus-Max-Size` response header MUST be a non-negative integer
    indicating the maximum allowed size of an entire upload in bytes."
    """
    assert spec.options().headers["Tus-Max-Size"] == str(64 << 30)
    small = start_server("--max-size", "1M")
    assert requests.options(small.uploads_url).headers["Tus-Max-Size"] == str(1 << 20)


def test_method_override_is_the_method(spec):
    """
    "The `X-HTTP-Method-Override` request header MUST be a string which MUST
    be interpreted as the request's method by the Server, if the header is
    presented."

    A client that can only POST can still PATCH and DELETE.
    """
    url = spec.create(4)
    response = spec.request(
        "POST",
        url,
        {"X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0", "Content-Type": OFFSET_TYPE},
        data=b"ab",
    )
    assert (response.status_code, response.headers["Upload-Offset"]) == (204, "2")
    assert spec.offset(url) == 2
    response = spec.request("POST", url, {"X-HTTP-Method-Override": "DELETE"})
    assert response.status_code == 204
    assert_gone(spec.head(url))
    assert spec.backend.call_for(spec.upload_id(url))["cancelled"] == "yes"


def test_method_override_to_head_is_ignored(spec):
    """
    Whether a client reads a body in the answer is decided by the method it
    sent: a GET that says it is a HEAD gets its whole answer, not headers
    framed for a HEAD that would leave it waiting for a body.
    """
    url = spec.create(4)
    response = spec.http.get(url + "/state", headers={"X-HTTP-Method-Override": "HEAD"}, timeout=10)
    assert (response.status_code, response.json()["state"]) == (200, "receiving")


def test_method_override_ignores_the_actual_method(spec):
    """
    "The actual method of the request MUST be ignored."

    A PATCH that says it is a DELETE terminates and stores nothing; a
    DELETE that says it is a PATCH stores its data and terminates nothing.
    """
    url = spec.create(4)
    response = spec.request(
        "DELETE",
        url,
        {"X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0", "Content-Type": OFFSET_TYPE},
        data=b"ab",
    )
    assert (response.status_code, response.headers["Upload-Offset"]) == (204, "2")
    assert spec.offset(url) == 2
    response = spec.request(
        "PATCH",
        url,
        {"X-HTTP-Method-Override": "DELETE", "Upload-Offset": "2", "Content-Type": OFFSET_TYPE},
        data=b"cd",
    )
    assert response.status_code == 204
    assert "Upload-Offset" not in response.headers
    assert_gone(spec.head(url))
    call = spec.backend.call_for(spec.upload_id(url))
    assert call["cancelled"] == "yes"


def test_head_always_has_upload_offset(spec):
    """
    "The Server MUST always include the `Upload-Offset` header in the
    response for a `HEAD` request, even if the offset is `0`, or the upload
    is already considered completed."
    """
    url = spec.create(3)
    assert spec.head(url).headers["Upload-Offset"] == "0"
    spec.patch(url, 0, b"abc")
    spec.handover(url)
    assert spec.wait_until_over(url)["state"] == "finished"
    head = spec.head(url)
    assert (head.status_code, head.headers["Upload-Offset"]) == (200, "3")


def test_head_has_upload_length_when_known(spec):
    """
    "If the size of the upload is known, the Server MUST include the
    `Upload-Length` header in the response."

    Known at creation, or once a deferred length is given.
    """
    url = spec.create(5)
    assert spec.head(url).headers["Upload-Length"] == "5"
    deferred = spec.create(None)
    spec.patch(deferred, 0, b"ab", **{"Upload-Length": "5"})
    assert spec.head(deferred).headers["Upload-Length"] == "5"


def test_head_is_never_cached(spec):
    """
    "The Server MUST prevent the client and/or proxies from caching the
    response by adding the `Cache-Control: no-store` header to the
    response."

    Whatever the upload: new, under way, of deferred length, finished,
    partial or final.
    """
    fresh = spec.create(4)
    under_way = spec.create(4)
    spec.patch(under_way, 0, b"ab")
    deferred = spec.create(None)
    finished = spec.create(2)
    spec.patch(finished, 0, b"ab")
    spec.handover(finished)
    spec.wait_until_over(finished)
    ticket = spec.new_ticket()
    part = spec.partial(ticket, b"abc")
    other_part = spec.partial(ticket, b"abc")
    heads = {
        name: spec.head(url)
        for name, url in [
            ("fresh", fresh),
            ("under way", under_way),
            ("deferred", deferred),
            ("finished", finished),
            ("partial", part),
        ]
    }
    final = spec.final(ticket, f"final;{part} {other_part}")
    heads["final"] = spec.head(urljoin(spec.creation_url, final.headers["Location"]))
    assert {name: (r.status_code, r.headers.get("Cache-Control")) for name, r in heads.items()} == {
        name: (200, "no-store") for name in heads
    }


def test_patch_needs_the_offset_content_type(spec):
    """
    "All `PATCH` requests MUST use `Content-Type:
    application/offset+octet-stream`, otherwise the server SHOULD return a
    `415 Unsupported Media Type` status."

    And stores nothing of such a request.
    """
    url = spec.create(4)
    for content_type in ("text/plain", "application/octet-stream", None):
        response = spec.patch(url, 0, b"abcd", content_type=content_type)
        assert response.status_code == 415, (content_type, response.status_code)
    response = spec.request(
        "POST",
        url,
        {"X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0", "Content-Type": "text/plain"},
        b"abcd",
    )
    assert response.status_code == 415
    assert spec.offset(url) == 0


def test_offset_mismatch_is_409_and_changes_nothing(spec):
    """
    "The `Upload-Offset` header's value MUST be equal to the current offset
    of the resource. [...] If the offsets do not match, the Server MUST
    respond with the `409 Conflict` status without modifying the upload
    resource."
    """
    url = spec.create(6)
    spec.patch(url, 0, b"abc")
    for offset in (0, 2, 4, 6):
        response = spec.patch(url, offset, b"XYZ")
        assert response.status_code == 409, (offset, response.status_code)
        assert spec.offset(url) == 3
    spec.patch(url, 3, b"def")
    assert spec.handover(url)["received_sha256"] == sha256(b"abcdef")


def test_offset_mismatch_does_not_set_a_deferred_length(spec):
    """
    "If the offsets do not match, the Server MUST respond with the `409
    Conflict` status without modifying the upload resource."

    Not its length either: a refused PATCH that declares Upload-Length
    leaves the length deferred.
    """
    url = spec.create(None)
    spec.patch(url, 0, b"abc")
    response = spec.patch(url, 1, b"XY", **{"Upload-Length": "10"})
    assert response.status_code == 409
    head = spec.head(url)
    assert head.headers.get("Upload-Defer-Length") == "1"
    assert "Upload-Length" not in head.headers
    # The client can still settle on the real length.
    assert spec.patch(url, 3, b"de", **{"Upload-Length": "5"}).status_code == 204
    assert spec.handover(url)["received_sha256"] == sha256(b"abcde")


def test_successful_patch_is_204(spec):
    """
    "The Server MUST acknowledge successful `PATCH` requests with the `204
    No Content` status."
    """
    url = spec.create(6)
    for offset, chunk in ((0, b"ab"), (2, b"cd"), (4, b"ef")):
        response = spec.patch(url, offset, chunk)
        assert (response.status_code, response.content) == (204, b"")
    spec.handover(url)


def test_patch_answer_has_the_new_offset(spec):
    """
    "It MUST include the `Upload-Offset` header containing the new offset."
    """
    url = spec.create(6)
    offsets = [spec.patch(url, offset, b"ab").headers.get("Upload-Offset") for offset in (0, 2, 4)]
    assert offsets == ["2", "4", "6"]


def test_new_offset_is_old_offset_plus_bytes_stored(spec):
    """
    "The new offset MUST be the sum of the offset before the `PATCH` request
    and the number of bytes received and processed or stored during the
    current `PATCH` request."

    For chunks of any size, empty ones included.
    """
    sizes = [1, 0, 1000, 65536 + 7, 0, 5 << 20, 3]
    data = os.urandom(sum(sizes))
    url = spec.create(len(data))
    offset = 0
    for size in sizes:
        response = spec.patch(url, offset, data[offset : offset + size])
        assert response.status_code == 204
        assert int(response.headers["Upload-Offset"]) == offset + size
        offset += size
    assert spec.handover(url)["received_sha256"] == sha256(data)


def test_options_answer_has_tus_version(spec):
    """
    "A successful response indicated by the `204 No Content` or `200 OK`
    status MUST contain the `Tus-Version` header."

    At the creation URL and at an upload's URL.
    """
    for url in (spec.creation_url, spec.create(3)):
        response = spec.options(url)
        assert response.status_code in (200, 204)
        assert VERSION in response.headers["Tus-Version"].split(",")


def test_options_ignores_tus_resumable(spec):
    """
    "The Client SHOULD NOT include the `Tus-Resumable` header in the request
    and the Server MUST ignore the header."
    """
    plain = spec.options()
    for version in ("1.0.0", "0.2.2", "nonsense"):
        response = spec.options(headers={"Tus-Resumable": version})
        assert response.status_code == plain.status_code
        for name in ("Tus-Version", "Tus-Extension", "Tus-Max-Size", "Tus-Checksum-Algorithm"):
            assert response.headers[name] == plain.headers[name]


def test_patch_to_an_unknown_upload_is_404(spec):
    """
    (SHOULD) "If the server receives a `PATCH` request against a
    non-existent resource it SHOULD return a `404 Not Found` status."
    """
    response = spec.patch(spec.creation_url + "Q" * 24, 0, b"abc")
    assert response.status_code == 404


# Creation


def test_creation_is_advertised(spec):
    """
    "If the Server supports this extension, it MUST add `creation` to the
    `Tus-Extension` header."
    """
    assert "creation" in extensions(spec)


def test_defer_length_value_is_1(creation):
    """
    "The `Upload-Defer-Length` request and response header indicates that
    the size of the upload is not known currently and will be transferred
    later. Its value MUST be `1`."

    Sent as 1; any other value in a request is refused ("If the
    `Upload-Defer-Length` header contains any other value than `1` the
    server should return a `400 Bad Request` status.").
    """
    url = creation.create(None)
    assert creation.head(url).headers["Upload-Defer-Length"] == "1"
    for bad in ("0", "2", "true", "yes"):
        response = creation.post({"Upload-Defer-Length": bad, "Upload-Metadata": creation.metadata()})
        assert response.status_code == 400, (bad, response.status_code)


def test_defer_length_is_omitted_when_the_length_is_known(creation):
    """
    "If the length of an upload is not deferred, this header MUST be
    omitted."

    Neither on an upload created with its length, nor once a deferred
    length is known.
    """
    response = creation.post({"Upload-Length": "3", "Upload-Metadata": creation.metadata()})
    assert "Upload-Defer-Length" not in response.headers
    url = urljoin(creation.creation_url, response.headers["Location"])
    assert "Upload-Defer-Length" not in creation.head(url).headers
    deferred = creation.create(None)
    response = creation.patch(deferred, 0, b"a", **{"Upload-Length": "3"})
    assert "Upload-Defer-Length" not in response.headers
    assert "Upload-Defer-Length" not in creation.head(deferred).headers


def test_metadata_is_comma_separated_pairs(creation):
    """
    "The `Upload-Metadata` request and response header MUST consist of one
    or more comma-separated key-value pairs."

    Every pair reaches the backend (a key without value as an empty string).
    """
    metadata = creation.metadata(
        filename="report.pdf", filetype="application/pdf", project="x-42", is_confidential=None
    )
    url = creation.create(1, metadata=metadata)
    creation.patch(url, 0, b"!")
    call = creation.handover(url)
    assert (call["filenameFromBrowser"], call["mimetype"]) == ("report.pdf", "application/pdf")
    assert '"project": "x-42"' in call["metadata"]
    assert '"is_confidential": ""' in call["metadata"]


def test_metadata_key_and_value_are_separated_by_a_space(creation):
    """
    "The key and value MUST be separated by a space."

    A pair separated otherwise is not read as a key and a value.
    """
    url = creation.create(1, metadata=creation.metadata(filename="a b.txt"))
    creation.patch(url, 0, b"!")
    assert creation.handover(url)["filenameFromBrowser"] == "a b.txt"
    base = creation.metadata()
    for pair in (f"filename\t{b64('x')}", f"filename {b64('x')} {b64('y')}"):
        response = creation.post({"Upload-Length": "1", "Upload-Metadata": f"{base},{pair}".lstrip(",")})
        assert response.status_code == 400, (pair, response.status_code)


def test_metadata_key_has_no_space_or_comma_and_is_not_empty(creation):
    """
    "The key MUST NOT contain spaces and commas and MUST NOT be empty."

    An empty pair (an empty key) or a key with a space is refused.
    """
    base = creation.metadata() or None

    def join(*pairs):
        return ",".join(pair for pair in pairs if pair is not None)

    for bad in (
        join(base, "", f"filename {b64('x')}"),
        join(base, f"filename {b64('x')}", ""),
        join(base, f"my key {b64('x')}"),
    ):
        response = creation.post({"Upload-Length": "1", "Upload-Metadata": bad})
        assert response.status_code == 400, (bad, response.status_code)


def test_metadata_value_is_base64(creation):
    """
    "The key SHOULD be ASCII encoded and the value MUST be Base64 encoded."

    Base64 of any UTF-8 text is read as such; a value that is not Base64
    is refused.
    """
    url = creation.create(1, metadata=creation.metadata(filename="résumé – 履歴書.pdf"))
    creation.patch(url, 0, b"!")
    assert creation.handover(url)["filenameFromBrowser"] == "résumé – 履歴書.pdf"
    base = creation.metadata()
    for bad in ("filename report.pdf", "filename a$b=", "filename ===="):
        response = creation.post({"Upload-Length": "1", "Upload-Metadata": f"{base},{bad}".lstrip(",")})
        assert response.status_code == 400, (bad, response.status_code)


def test_metadata_keys_are_unique(creation):
    """
    "All keys MUST be unique."
    """
    metadata = creation.metadata(filename="a.txt") + f",filename {b64('b.txt')}"
    response = creation.post({"Upload-Length": "1", "Upload-Metadata": metadata})
    assert response.status_code == 400


def test_post_to_the_creation_url_creates(creation):
    """
    "The Client MUST send a `POST` request against a known upload creation
    URL to request a new upload resource."

    The creation URL, with or without its trailing slash, creates; a POST to
    an upload's URL does not.
    """
    urls = set()
    for creation_url in (creation.creation_url, creation.creation_url.rstrip("/")):
        response = creation.post(
            {"Upload-Length": "2", "Upload-Metadata": creation.metadata()}, url=creation_url
        )
        assert response.status_code == 201
        urls.add(urljoin(creation_url, response.headers["Location"]))
    assert len(urls) == 2
    url = urls.pop()
    response = creation.post({"Upload-Length": "2", "Upload-Metadata": creation.metadata()}, url=url)
    assert response.status_code in (404, 405)
    assert "Location" not in response.headers


def test_creation_needs_length_or_deferred_length(creation):
    """
    "The request MUST include one of the following headers: a)
    `Upload-Length` to indicate the size of an entire upload in bytes. b)
    `Upload-Defer-Length: 1` if upload size is not known at the time."
    """
    ticket = creation.new_ticket()
    for headers in ({}, {"Upload-Length": "3", "Upload-Defer-Length": "1"}):
        response = creation.post({**headers, "Upload-Metadata": creation.metadata(ticket)})
        assert response.status_code == 400, (headers, response.status_code)
    if ticket:
        assert creation.server.status(ticket)["state"] == "ticketed"


def test_deferred_length_is_given_in_a_later_patch(creation):
    """
    "Once it is known the Client MUST set the `Upload-Length` header in the
    next `PATCH` request."

    Also with an empty PATCH at the end, as a client that streams data of
    unknown size sends once the stream has ended.
    """
    url = creation.create(None)
    assert creation.patch(url, 0, b"abc").status_code == 204
    assert creation.patch(url, 3, b"def").status_code == 204
    response = creation.patch(url, 6, b"", **{"Upload-Length": "6"})
    assert (response.status_code, response.headers["Upload-Offset"]) == (204, "6")
    assert creation.handover(url)["received_sha256"] == sha256(b"abcdef")
    other = creation.create(None)
    creation.patch(other, 0, b"ab", **{"Upload-Length": "4"})
    assert creation.head(other).headers["Upload-Length"] == "4"


def test_length_never_changes_once_set(creation):
    """
    "Once set the length MUST NOT be changed."

    Neither a length given at creation nor one given later; the data of a
    request that tries is not stored.
    """
    url = creation.create(6)
    response = creation.patch(url, 0, b"ab", **{"Upload-Length": "8"})
    assert response.status_code in (400, 409)
    assert creation.head(url).headers["Upload-Length"] == "6"
    deferred = creation.create(None)
    creation.patch(deferred, 0, b"ab", **{"Upload-Length": "6"})
    for length in ("5", "7", "2"):
        response = creation.patch(deferred, 2, b"cd", **{"Upload-Length": length})
        assert response.status_code in (400, 409), (length, response.status_code)
    head = creation.head(deferred)
    assert (head.headers["Upload-Length"], head.headers["Upload-Offset"]) == ("6", "2")


def test_defer_length_on_every_head_while_the_length_is_unknown(creation):
    """
    "As long as the length of the upload is not known, the Server MUST set
    `Upload-Defer-Length: 1` in all responses to `HEAD` requests."

    Before any data, after some, and after a server restart.
    """
    url = creation.create(None)
    assert creation.head(url).headers["Upload-Defer-Length"] == "1"
    creation.patch(url, 0, b"abc")
    assert creation.head(url).headers["Upload-Defer-Length"] == "1"
    creation.server.restart()
    head = creation.head(url)
    assert (head.headers["Upload-Defer-Length"], head.headers["Upload-Offset"]) == ("1", "3")
    assert "Upload-Length" not in head.headers


def test_creation_defer_length_is_advertised(spec):
    """
    "If the Server supports deferring length, it MUST add
    `creation-defer-length` to the `Tus-Extension` header."
    """
    assert "creation-defer-length" in extensions(spec)


def test_head_gives_the_metadata_as_sent(creation):
    """
    "If an upload contains additional metadata, responses to `HEAD` requests
    MUST include the `Upload-Metadata` header and its value as specified by
    the Client during the creation."

    Byte for byte: order, keys without value, non-ASCII values, and across a
    restart.
    """
    metadata = creation.metadata(
        is_confidential=None, empty="", filename="world_domination_plan.pdf", note="ünïcödé ✓"
    )
    url = creation.create(3, metadata=metadata)
    assert creation.head(url).headers["Upload-Metadata"] == metadata
    creation.patch(url, 0, b"a")
    creation.server.restart()
    assert creation.head(url).headers["Upload-Metadata"] == metadata


def test_length_over_the_maximum_is_413(creation):
    """
    "If the length of the upload exceeds the maximum, which MAY be
    specified using the `Tus-Max-Size` header, the Server MUST respond with
    the `413 Request Entity Too Large` status."

    At creation, and when a deferred length turns out too large.
    """
    maximum = int(creation.options().headers["Tus-Max-Size"])
    ticket = creation.new_ticket()
    response = creation.post(
        {"Upload-Length": str(maximum + 1), "Upload-Metadata": creation.metadata(ticket)}
    )
    assert response.status_code == 413
    assert (
        creation.post(
            {"Upload-Length": str(maximum), "Upload-Metadata": creation.metadata(ticket)}
        ).status_code
        == 201
    )
    deferred = creation.create(None)
    response = creation.patch(deferred, 0, b"ab", **{"Upload-Length": str(maximum + 1)})
    assert response.status_code == 413
    assert creation.offset(deferred) == 0


def test_deferred_upload_growing_past_the_maximum_is_413(start_server, spec_backend):
    """
    "If the length of the upload exceeds the maximum, which MAY be
    specified using the `Tus-Max-Size` header, the Server MUST respond with
    the `413 Request Entity Too Large` status."

    Also when the length is deferred and the data itself goes past the
    maximum; what fits stays resumable.
    """
    server = start_server("--max-size", "1K")
    spec = Spec(server, spec_backend)
    assert spec.options().headers["Tus-Max-Size"] == "1024"
    url = spec.create(None)
    assert spec.patch(url, 0, os.urandom(1025)).status_code == 413
    assert spec.offset(url) == 0
    data = os.urandom(1024)
    assert spec.patch(url, 0, data[:1000]).status_code == 204
    assert spec.patch(url, 1000, os.urandom(25)).status_code == 413
    assert spec.patch(url, 1000, data[1000:], **{"Upload-Length": "1024"}).status_code == 204
    assert spec.handover(url)["received_sha256"] == sha256(data)


def test_successful_creation_is_201(creation):
    """
    "The Server MUST acknowledge a successful upload creation with the `201
    Created` status."

    With a length, deferred, with data, as a partial and as a final upload.
    """
    answers = [
        creation.post({"Upload-Length": "3", "Upload-Metadata": creation.metadata()}),
        creation.post({"Upload-Defer-Length": "1", "Upload-Metadata": creation.metadata()}),
        creation.post(
            {"Upload-Length": "3", "Upload-Metadata": creation.metadata(), "Content-Type": OFFSET_TYPE},
            data=b"abc",
        ),
    ]
    ticket = creation.new_ticket()
    part = creation.partial(ticket, b"xyz")
    answers.append(creation.final(ticket, f"final;{part}"))
    assert [r.status_code for r in answers] == [201] * 4


def test_creation_gives_the_upload_url_in_location(creation):
    """
    "The Server MUST set the `Location` header to the URL of the created
    resource."

    A URL of this server (absolute or relative), one per upload, where the
    upload is found.
    """
    locations = []
    for length in (3, 4):
        response = creation.post({"Upload-Length": str(length), "Upload-Metadata": creation.metadata()})
        locations.append(response.headers["Location"])
        url = urljoin(creation.creation_url, response.headers["Location"])
        assert urlsplit(url).netloc == urlsplit(creation.creation_url).netloc
        head = creation.head(url)
        assert (head.status_code, head.headers["Upload-Length"]) == (200, str(length))
    assert locations[0] != locations[1]


def test_created_upload_is_uploaded_with_the_core_protocol(creation):
    """
    "The Client MUST perform the actual upload using the core protocol."

    The new upload starts at offset 0 ("The new resource has an implicit
    offset of `0`"), and HEAD and PATCH take it to the end.
    """
    data = os.urandom(1000)
    url = creation.create(len(data))
    assert creation.offset(url) == 0
    creation.patch(url, 0, data[:600])
    creation.patch(url, creation.offset(url), data[600:])
    call = creation.handover(url)
    assert (call["size"], call["received_sha256"]) == ("1000", sha256(data))


# Creation With Upload


def test_creation_with_upload_is_advertised(spec):
    """
    "If the Server supports this extension, it MUST advertise this by
    including `creation-with-upload` in the `Tus-Extension` header."
    """
    assert "creation-with-upload" in extensions(spec)


def test_creation_with_upload_only_with_creation(spec):
    """
    "Therefore, if the Server does not offer the Creation extension, it
    MUST NOT offer the Creation With Upload extension either."
    """
    names = extensions(spec)
    assert "creation-with-upload" not in names or "creation" in names


def test_creation_data_needs_the_offset_content_type(creation):
    """
    "The Client MUST include the `Content-Type:
    application/offset+octet-stream` header."

    A creation whose body is of another type does not store that body as
    upload data.
    """
    response = creation.post(
        {"Upload-Length": "5", "Upload-Metadata": creation.metadata(), "Content-Type": "text/plain"},
        data=b"hello",
    )
    assert response.status_code == 201
    assert response.headers.get("Upload-Offset", "0") == "0"
    assert creation.offset(urljoin(creation.creation_url, response.headers["Location"])) == 0


def test_creation_with_upload_answers_upload_offset(creation):
    """
    "The Server SHOULD accept as many bytes as possible and MUST include the
    `Upload-Offset` header in the response and MUST set its value to the
    offset of the upload after applying the accepted bytes."

    A first chunk, then the rest with PATCH.
    """
    response = creation.post(
        {"Upload-Length": "100", "Upload-Metadata": creation.metadata(), "Content-Type": OFFSET_TYPE},
        data=b"hello",
    )
    assert (response.status_code, response.headers.get("Upload-Offset")) == (201, "5")
    url = urljoin(creation.creation_url, response.headers["Location"])
    assert creation.offset(url) == 5
    rest = os.urandom(95)
    assert creation.patch(url, 5, rest).status_code == 204
    assert creation.handover(url)["received_sha256"] == sha256(b"hello" + rest)


def test_creation_with_the_whole_upload(creation):
    """
    "The Server SHOULD accept as many bytes as possible and MUST include the
    `Upload-Offset` header in the response and MUST set its value to the
    offset of the upload after applying the accepted bytes."

    The whole file in the creation request: the upload is complete.
    """
    data = os.urandom(3 << 20)
    response = creation.post(
        {
            "Upload-Length": str(len(data)),
            "Upload-Metadata": creation.metadata(),
            "Content-Type": OFFSET_TYPE,
        },
        data=data,
    )
    assert (response.status_code, response.headers.get("Upload-Offset")) == (201, str(len(data)))
    url = urljoin(creation.creation_url, response.headers["Location"])
    assert creation.handover(url)["received_sha256"] == sha256(data)


def test_creation_with_upload_and_expect_100_continue(creation):
    """
    (SHOULD) "In addition, the Client SHOULD include the `Expect:
    100-continue` header in the request to receive early feedback from the
    Server on whether it will accept the creation request, before attempting
    to transfer the first chunk."

    The server answers 100 Continue before the body is sent.
    """
    host = urlsplit(creation.creation_url)
    body = b"hello"
    head = (
        f"POST {host.path} HTTP/1.1\r\nHost: {host.netloc}\r\nTus-Resumable: {VERSION}\r\n"
        f"Upload-Length: 5\r\nUpload-Metadata: {creation.metadata()}\r\n"
        f"Content-Type: {OFFSET_TYPE}\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection((host.hostname, host.port), timeout=10) as conn:
        conn.sendall(head.encode())
        interim = conn.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        conn.sendall(body)
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
    if answer.startswith(b"HTTP/1.1 100"):
        answer = answer.split(b"\r\n\r\n", 1)[1]
    assert answer.startswith(b"HTTP/1.1 201"), answer
    assert b"\r\nUpload-Offset: 5\r\n" in answer


# Expiration


def test_expiration_is_advertised(spec):
    """
    "In order to indicate this behavior to the Client, the Server MUST add
    `expiration` to the `Tus-Extension` header."
    """
    assert "expiration" in extensions(spec)


def test_upload_expires_on_every_patch_answer(spec):
    """
    "This header MUST be included in every `PATCH` response if the upload
    is going to expire."

    Every PATCH of an unfinished upload, plain or through
    X-HTTP-Method-Override, says when it expires (in the future).
    """
    url = spec.create(10)
    answers = [spec.patch(url, 0, b"ab"), spec.patch(url, 2, b""), spec.patch(url, 2, b"cdef")]
    answers.append(
        spec.request(
            "POST",
            url,
            {"X-HTTP-Method-Override": "PATCH", "Upload-Offset": "6", "Content-Type": OFFSET_TYPE},
            b"gh",
        )
    )
    for response in answers:
        assert response.status_code == 204
        assert parsedate_to_datetime(response.headers["Upload-Expires"]).timestamp() > time.time()


def test_upload_expires_on_the_creation_answer(creation):
    """
    "If the expiration is known at the creation, the `Upload-Expires`
    header MUST be included in the response to the initial `POST` request."

    With a length, deferred, with data, and for a partial upload.
    """
    answers = [
        creation.post({"Upload-Length": "3", "Upload-Metadata": creation.metadata()}),
        creation.post({"Upload-Defer-Length": "1", "Upload-Metadata": creation.metadata()}),
        creation.post(
            {"Upload-Length": "3", "Upload-Metadata": creation.metadata(), "Content-Type": OFFSET_TYPE},
            data=b"a",
        ),
        creation.post(
            {"Upload-Length": "3", "Upload-Concat": "partial", "Upload-Metadata": creation.metadata()}
        ),
    ]
    for response in answers:
        assert response.status_code == 201
        assert parsedate_to_datetime(response.headers["Upload-Expires"]).timestamp() > time.time()


def test_upload_expires_is_an_rfc7231_date(spec):
    """
    "The value of the `Upload-Expires` header MUST be in [RFC
    7231](https://tools.ietf.org/html/rfc7231#section-7.1.1.1) datetime
    format."

    In the creation, PATCH and HEAD answers: an IMF-fixdate, --idle-timeout
    (12 h by default) from now.
    """
    response = spec.post({"Upload-Length": "4", "Upload-Metadata": spec.metadata()})
    url = urljoin(spec.creation_url, response.headers["Location"])
    values = [response.headers["Upload-Expires"], spec.patch(url, 0, b"ab").headers["Upload-Expires"]]
    values.append(spec.head(url).headers["Upload-Expires"])
    for value in values:
        assert IMF_FIXDATE.fullmatch(value), value
        assert abs(parsedate_to_datetime(value).timestamp() - (time.time() + 12 * 3600)) < 120


def test_expired_upload_is_404_or_410(start_server, spec_backend):
    """
    (SHOULD) "If a Client does attempt to resume an upload which has since
    been removed by the Server, the Server SHOULD respond with the`404 Not
    Found` or `410 Gone` status."

    With --idle-timeout 1s: the upload is removed once the time given in
    Upload-Expires has passed, never before, and the backend is told.
    """
    server = start_server("--idle-timeout", "1s")
    spec = Spec(server, spec_backend)
    url = spec.create(10)
    response = spec.patch(url, 0, b"abc")
    expires = parsedate_to_datetime(response.headers["Upload-Expires"]).timestamp()
    call = spec_backend.call_for(spec.upload_id(url))
    removed_at = time.time()
    assert (call["id"], call["cancelled"], call["cancelReason"]) == (
        spec.upload_id(url),
        "yes",
        "idle timeout",
    )
    assert removed_at >= expires
    assert_gone(spec.head(url))
    assert_gone(spec.patch(url, 3, b"def"))


# Checksum


def test_checksum_is_advertised(spec):
    """
    "If supported, the Server MUST add `checksum` to the `Tus-Extension`
    header."
    """
    assert "checksum" in extensions(spec)


def test_checksum_is_verified_with_the_algorithm_given(spec):
    """
    "Once the entire request has been received, the Server MUST verify the
    uploaded chunk against the provided checksum using the specified
    algorithm."

    For each algorithm offered: the right digest passes, a wrong one is 460,
    another algorithm's digest under this name is refused.
    """
    algorithms = spec.options().headers["Tus-Checksum-Algorithm"].split(",")
    for algorithm in algorithms:
        url = spec.create(8)
        ok = spec.patch(url, 0, b"abcd", **{"Upload-Checksum": checksum(algorithm, b"abcd")})
        assert (ok.status_code, ok.headers["Upload-Offset"]) == (204, "4"), algorithm
        wrong = spec.patch(url, 4, b"efgh", **{"Upload-Checksum": checksum(algorithm, b"efgX")})
        assert wrong.status_code == 460, algorithm
        other = next(
            a
            for a in ("sha1", "sha256", "md5", "sha512")
            if hashlib.new(a).digest_size != hashlib.new(algorithm).digest_size
        )
        digest = base64.b64encode(hashlib.new(other, b"efgh").digest()).decode()
        assert spec.patch(url, 4, b"efgh", **{"Upload-Checksum": f"{algorithm} {digest}"}).status_code in (
            400,
            460,
        )
        assert spec.offset(url) == 4
        assert (
            spec.patch(url, 4, b"efgh", **{"Upload-Checksum": checksum(algorithm, b"efgh")}).status_code
            == 204
        )
        assert spec.handover(url)["received_sha256"] == sha256(b"abcdefgh")


def test_chunk_with_an_unsupported_algorithm_is_discarded(spec):
    """
    "In the first two cases the uploaded chunk MUST be discarded, and the
    upload and its offset MUST NOT be updated."

    The first case: 400 for an algorithm the server does not support.
    """
    url = spec.create(8)
    spec.patch(url, 0, b"abcd")
    for name in ("crc32", "sha3-256", "blake2b"):
        response = spec.patch(url, 4, b"XXXX", **{"Upload-Checksum": f"{name} AAAAAA=="})
        assert response.status_code == 400, (name, response.status_code)
        assert spec.offset(url) == 4
    spec.patch(url, 4, b"efgh")
    assert spec.handover(url)["received_sha256"] == sha256(b"abcdefgh")


def test_chunk_with_a_checksum_mismatch_is_discarded(spec):
    """
    "In the first two cases the uploaded chunk MUST be discarded, and the
    upload and its offset MUST NOT be updated."

    The second case: 460, also for a chunk large enough to reach the disk
    before its end is known.
    """
    small = os.urandom(1000)
    large = os.urandom(6 << 20)
    url = spec.create(len(small) + len(large))
    assert (
        spec.patch(url, 0, small, **{"Upload-Checksum": checksum("sha1", small[:-1] + b"x")}).status_code
        == 460
    )
    assert spec.offset(url) == 0
    assert spec.patch(url, 0, small).status_code == 204
    bad = checksum("sha256", large[:-1] + b"x")
    assert spec.patch(url, len(small), large, **{"Upload-Checksum": bad}).status_code == 460
    assert spec.offset(url) == len(small)
    assert (
        spec.patch(url, len(small), large, **{"Upload-Checksum": checksum("sha256", large)}).status_code
        == 204
    )
    call = spec.handover(url)
    assert call["sha256"] == call["received_sha256"] == sha256(small + large)


def test_checksum_mismatch_does_not_set_a_deferred_length(spec):
    """
    "In the first two cases the uploaded chunk MUST be discarded, and the
    upload and its offset MUST NOT be updated."

    The upload is not updated: a rejected chunk that declares Upload-Length
    leaves the length deferred.
    """
    url = spec.create(None)
    spec.patch(url, 0, b"abc")
    response = spec.patch(
        url, 3, b"def", **{"Upload-Length": "6", "Upload-Checksum": checksum("sha1", b"xyz")}
    )
    assert response.status_code == 460
    head = spec.head(url)
    assert (head.headers.get("Upload-Defer-Length"), head.headers.get("Upload-Length")) == ("1", None)
    assert spec.patch(url, 3, b"defg", **{"Upload-Length": "7"}).status_code == 204
    assert spec.handover(url)["received_sha256"] == sha256(b"abcdefg")


def test_sha1_is_supported(spec):
    """
    "The Server MUST support at least the SHA1 checksum algorithm
    identified by `sha1`."
    """
    assert "sha1" in spec.options().headers["Tus-Checksum-Algorithm"].split(",")
    url = spec.create(11)
    response = spec.patch(url, 0, b"hello world", **{"Upload-Checksum": "sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0="})
    assert (response.status_code, response.headers["Upload-Offset"]) == (204, "11")


def test_checksum_algorithm_names_are_lowercase_ascii(spec):
    """
    "The names of the checksum algorithms MUST only consist of ASCII
    characters with the modification that uppercase characters are
    excluded."
    """
    for name in spec.options().headers["Tus-Checksum-Algorithm"].split(","):
        assert re.fullmatch(r"[\x21-\x7e]+", name) and name == name.lower(), name


def test_options_has_tus_checksum_algorithm(spec):
    """
    "The `Tus-Checksum-Algorithm` header MUST be included in the response
    to an `OPTIONS` request."

    At the creation URL, at an upload's URL, and in a CORS preflight.
    """
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "PATCH"}
    for url, headers in ((spec.creation_url, None), (spec.create(3), None), (spec.creation_url, preflight)):
        assert spec.options(url, headers).headers.get("Tus-Checksum-Algorithm")


def test_tus_checksum_algorithm_lists_the_supported_algorithms(spec):
    """
    "The `Tus-Checksum-Algorithm` response header MUST be a comma-separated
    list of the checksum algorithms supported by the server."

    Every algorithm listed works.
    """
    algorithms = spec.options().headers["Tus-Checksum-Algorithm"].split(",")
    data = os.urandom(len(algorithms) * 10)
    url = spec.create(len(data))
    for index, algorithm in enumerate(algorithms):
        chunk = data[index * 10 : index * 10 + 10]
        response = spec.patch(
            url, index * 10, chunk, **{"Upload-Checksum": checksum(algorithm.strip(), chunk)}
        )
        assert response.status_code == 204, (algorithm, response.status_code, response.text)
    assert spec.handover(url)["received_sha256"] == sha256(data)


def test_upload_checksum_is_algorithm_space_base64(spec):
    """
    "The header MUST consist of the name of the used checksum algorithm and
    the Base64 encoded checksum separated by a space."

    Anything else is refused, and its chunk discarded.
    """
    url = spec.create(4)
    digest = base64.b64encode(hashlib.sha1(b"abcd").digest()).decode()
    for bad in ("sha1", f"sha1:{digest}", f"sha1={digest}", "sha1 not*base64", digest):
        response = spec.patch(url, 0, b"abcd", **{"Upload-Checksum": bad})
        assert response.status_code == 400, (bad, response.status_code)
        assert spec.offset(url) == 0
    assert spec.patch(url, 0, b"abcd", **{"Upload-Checksum": f"sha1 {digest}"}).status_code == 204


# Termination


def test_termination_is_advertised(spec):
    """
    "If this extension is supported by the Server, it MUST be announced by
    adding `termination` to the `Tus-Extension` header."
    """
    assert "termination" in extensions(spec)


def test_delete_answers_204(spec):
    """
    "When receiving a `DELETE` request for an existing upload the Server
    SHOULD free associated resources and MUST respond with the `204 No
    Content` status confirming that the upload was terminated."

    Unfinished uploads: new, under way, of deferred length, partial. The
    backend hears that its upload was cancelled.
    """
    fresh = spec.create(4)
    under_way = spec.create(4)
    spec.patch(under_way, 0, b"ab")
    deferred = spec.create(None)
    part = spec.partial(spec.new_ticket(), b"ab")
    for url in (fresh, under_way, deferred, part):
        response = spec.delete(url)
        assert (response.status_code, response.content) == (204, b""), url
    for url in (fresh, under_way, deferred):
        assert spec.backend.call_for(spec.upload_id(url))["cancelled"] == "yes"


def test_delete_of_a_completed_upload_answers_204(spec):
    """
    "When receiving a `DELETE` request for an existing upload the Server
    SHOULD free associated resources and MUST respond with the `204 No
    Content` status confirming that the upload was terminated."

    Completed uploads included ("This extension defines a way for the
    Client to terminate completed and unfinished uploads allowing the Server
    to free up used resources.").
    """
    url = spec.create(3)
    spec.patch(url, 0, b"abc")
    spec.handover(url)
    assert spec.wait_until_over(url)["state"] == "finished"
    assert spec.delete(url).status_code == 204


def test_terminated_upload_is_404_or_410(spec):
    """
    (SHOULD) "For all future requests to this URL, the Server SHOULD respond
    with the `404 Not Found` or `410 Gone` status."
    """
    url = spec.create(4)
    spec.patch(url, 0, b"ab")
    assert spec.delete(url).status_code == 204
    assert_gone(spec.head(url))
    assert_gone(spec.patch(url, 2, b"cd"))
    assert_gone(spec.delete(url))


# Concatenation


def test_concatenation_is_advertised(spec):
    """
    "If the Server supports this extension, it MUST add `concatenation` to
    the `Tus-Extension` header."
    """
    assert "concatenation" in extensions(spec)


def test_final_length_is_the_sum_of_the_partial_lengths(spec):
    """
    "The length of the final upload MUST be the sum of the length of all
    partial uploads."
    """
    ticket = spec.new_ticket()
    parts = [spec.partial(ticket, data) for data in (b"hello", b" ", b"world")]
    response = spec.final(ticket, "final;" + " ".join(parts))
    final = urljoin(spec.creation_url, response.headers["Location"])
    assert spec.head(final).headers["Upload-Length"] == "11"
    call = spec.handover(final)
    assert (call["size"], call["received_sha256"]) == ("11", sha256(b"hello world"))


def test_final_length_counts_an_empty_partial_upload(spec):
    """
    "The length of the final upload MUST be the sum of the length of all
    partial uploads."

    A partial upload of 0 bytes (which a client splitting a small file into
    more parts than it has bytes makes) adds nothing.
    """
    ticket = spec.new_ticket()
    parts = [spec.partial(ticket, data) for data in (b"ab", b"", b"c")]
    response = spec.final(ticket, "final;" + " ".join(parts))
    assert response.status_code == 201, (response.status_code, response.text)
    final = urljoin(spec.creation_url, response.headers["Location"])
    assert spec.head(final).headers["Upload-Length"] == "3"
    assert spec.handover(final)["received_sha256"] == sha256(b"abc")


def test_final_upload_needs_upload_concat(spec):
    """
    "In order to create a new final upload, the Client MUST add the
    `Upload-Concat` header to the upload creation request."

    Without it, a creation is not taken for a concatenation (and, with no
    length, is refused); the partial uploads stay as they were.
    """
    ticket = spec.new_ticket()
    part = spec.partial(ticket, b"abc")
    response = spec.post({"Upload-Metadata": spec.metadata(ticket)})
    assert response.status_code == 400
    head = spec.head(part)
    assert (head.status_code, head.headers["Upload-Offset"], head.headers["Upload-Concat"]) == (
        200,
        "3",
        "partial",
    )
    assert spec.server.status(ticket)["state"] == "ticketed"


def test_final_upload_concat_value(spec):
    """
    "The value MUST be `final` followed by a semicolon and a space-separated
    list of the partial upload URLs that need to be concatenated."

    Absolute or relative URLs ("The partial uploads URLs MAY be absolute or
    relative"); other forms are refused.
    """
    ticket = spec.new_ticket()
    parts = [spec.partial(ticket, data) for data in (b"ab", b"cd", b"ef")]
    for bad in (
        f"final:{parts[0]}",
        f"final {parts[0]}",
        "final;",
        f"final,{parts[0]},{parts[1]}",
        f"{parts[0]} {parts[1]}",
    ):
        response = spec.final(ticket, bad)
        assert response.status_code == 400, (bad, response.status_code)
    mixed = f"final;{parts[0]} {urlsplit(parts[1]).path} {parts[2]}"
    response = spec.final(ticket, mixed)
    assert response.status_code == 201
    final = urljoin(spec.creation_url, response.headers["Location"])
    assert spec.handover(final)["received_sha256"] == sha256(b"abcdef")


def test_partials_are_concatenated_in_the_order_listed(spec):
    """
    "The partial uploads MUST be concatenated as per the order specified in
    the list."
    """
    ticket = spec.new_ticket()
    a, b, c = (os.urandom(1000 + n) for n in range(3))
    url_a, url_b, url_c = (spec.partial(ticket, data) for data in (a, b, c))
    response = spec.final(ticket, f"final;{url_c} {url_a} {url_b}")
    final = urljoin(spec.creation_url, response.headers["Location"])
    assert spec.handover(final)["received_sha256"] == sha256(c + a + b)


def test_final_upload_takes_no_upload_length(spec):
    """
    "The Client MUST NOT include the `Upload-Length` header in the final
    upload creation."

    Such a request is refused and changes nothing: the same concatenation
    without Upload-Length then succeeds.
    """
    ticket = spec.new_ticket()
    parts = [spec.partial(ticket, data) for data in (b"ab", b"cd")]
    concat = "final;" + " ".join(parts)
    for length in ("4", "5"):
        response = spec.post(
            {"Upload-Concat": concat, "Upload-Length": length, "Upload-Metadata": spec.metadata(ticket)}
        )
        assert response.status_code == 400, (length, response.status_code)
    assert [spec.offset(part) for part in parts] == [2, 2]
    response = spec.final(ticket, concat)
    assert response.status_code == 201
    assert spec.handover(response.headers["Location"])["received_sha256"] == sha256(b"abcd")


def test_partial_metadata_is_not_transferred(spec):
    """
    "When creating a new final upload the partial uploads' metadata SHALL
    NOT be transferred to the new final upload."

    The final upload has the metadata of the concatenation request, and
    only that.
    """
    ticket = spec.new_ticket()
    parts = [
        spec.partial(ticket, b"abc", filename="part.bin", filetype="x/part", partonly="1") for _ in range(2)
    ]
    metadata = spec.metadata(ticket, filename="final.txt", filetype="text/plain")
    response = spec.post({"Upload-Concat": "final;" + " ".join(parts), "Upload-Metadata": metadata})
    final = urljoin(spec.creation_url, response.headers["Location"])
    assert spec.head(final).headers["Upload-Metadata"] == metadata
    call = spec.handover(final)
    assert (call["filenameFromBrowser"], call["mimetype"]) == ("final.txt", "text/plain")
    assert "partonly" not in call["metadata"]


def test_patch_to_a_final_upload_is_403(spec):
    """
    "The Server MUST respond with the `403 Forbidden` status to `PATCH`
    requests against a final upload URL and MUST NOT modify the final or its
    partial uploads."
    """
    ticket = spec.new_ticket()
    parts = [spec.partial(ticket, b"abc") for _ in range(2)]
    final = urljoin(spec.creation_url, spec.final(ticket, "final;" + " ".join(parts)).headers["Location"])
    for offset, data in ((6, b"more"), (0, b"abcdef"), (6, b"")):
        assert spec.patch(final, offset, data).status_code == 403, (offset, data)
    response = spec.request(
        "POST",
        final,
        {"X-HTTP-Method-Override": "PATCH", "Upload-Offset": "6", "Content-Type": OFFSET_TYPE},
        b"x",
    )
    assert response.status_code == 403


def test_patch_to_a_final_upload_modifies_nothing(spec):
    """
    "The Server MUST respond with the `403 Forbidden` status to `PATCH`
    requests against a final upload URL and MUST NOT modify the final or its
    partial uploads."

    The file the backend was given stays as it was (the backend answers
    wait, so the file stays where it is meanwhile).
    """
    ticket = spec.new_ticket()
    spec.backend.answers[ticket] = "wait"
    parts = [spec.partial(ticket, data) for data in (b"abc", b"def")]
    final = urljoin(spec.creation_url, spec.final(ticket, "final;" + " ".join(parts)).headers["Location"])
    call = spec.handover(final)
    assert call["received_sha256"] == sha256(b"abcdef")
    spec.patch(final, 6, b"more")
    spec.patch(final, 0, b"XXXXXX")
    with open(call["filename"], "rb") as f:
        assert f.read() == b"abcdef"
    head = spec.head(final)
    assert (head.headers["Upload-Offset"], head.headers["Upload-Length"]) == ("6", "6")
    assert spec.server.backend_call("finish_upload", id=ticket).status_code == 200


def test_final_offset_equals_length_after_concatenation(spec):
    """
    "After successful concatenation, the `Upload-Offset` and
    `Upload-Length` MUST be set and their values MUST be equal."
    """
    ticket = spec.new_ticket()
    parts = [spec.partial(ticket, os.urandom(size)) for size in (100, 1, 2000)]
    final = urljoin(spec.creation_url, spec.final(ticket, "final;" + " ".join(parts)).headers["Location"])
    head = spec.head(final)
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == "2101"


def test_partial_head_has_upload_offset(spec):
    """
    "The response to a HEAD request for a partial upload MUST contain the
    `Upload-Offset` header."
    """
    response = spec.post(
        {"Upload-Concat": "partial", "Upload-Length": "4", "Upload-Metadata": spec.metadata()}
    )
    part = urljoin(spec.creation_url, response.headers["Location"])
    assert spec.head(part).headers["Upload-Offset"] == "0"
    spec.patch(part, 0, b"ab")
    assert spec.head(part).headers["Upload-Offset"] == "2"
    spec.patch(part, 2, b"cd")
    assert spec.head(part).headers["Upload-Offset"] == "4"


def test_final_head_has_upload_length(spec):
    """
    "The `Upload-Length` header MUST be included if the length of the final
    resource can be calculated at the time of the request."
    """
    ticket = spec.new_ticket()
    parts = [spec.partial(ticket, b"abcd"), spec.partial(ticket, b"efg")]
    assert [spec.head(part).headers["Upload-Length"] for part in parts] == ["4", "3"]
    final = urljoin(spec.creation_url, spec.final(ticket, "final;" + " ".join(parts)).headers["Location"])
    assert spec.head(final).headers["Upload-Length"] == "7"


def test_head_gives_upload_concat_as_received(spec):
    """
    "Response to `HEAD` request against partial or final upload MUST
    include the `Upload-Concat` header and its value as received in the
    upload creation request."
    """
    ticket = spec.new_ticket()
    parts = [spec.partial(ticket, b"ab"), spec.partial(ticket, b"cd")]
    assert [spec.head(part).headers["Upload-Concat"] for part in parts] == ["partial", "partial"]
    concat = f"final;{urlsplit(parts[0]).path} {parts[1]}"
    final = urljoin(spec.creation_url, spec.final(ticket, concat).headers["Location"])
    assert spec.head(final).headers["Upload-Concat"] == concat


def test_upload_concat_is_set_at_creation_of_partial_and_final(spec):
    """
    "The `Upload-Concat` request and response header MUST be set in both
    partial and final upload creation requests."

    An upload created without `Upload-Concat: partial` is no partial upload:
    it cannot be part of a final one.
    """
    ticket = spec.new_ticket()
    part = spec.partial(ticket, b"ab")
    plain = spec.create(2)
    spec.patch(plain, 0, b"cd")
    assert "Upload-Concat" not in spec.head(plain).headers
    response = spec.final(ticket, f"final;{part} {plain}")
    assert response.status_code == 400
    assert spec.offset(part) == 2


def test_upload_concat_of_a_partial_upload_is_partial(spec):
    """
    "If the upload is a partial one, the header value MUST be `partial`."
    """
    ticket = spec.new_ticket()
    for bad in ("Partial", "partial;", "parallel", "part"):
        response = spec.post(
            {"Upload-Concat": bad, "Upload-Length": "2", "Upload-Metadata": spec.metadata(ticket)}
        )
        assert response.status_code == 400, (bad, response.status_code)
    assert spec.server.status(ticket)["state"] == "ticketed"


def test_upload_concat_of_a_final_upload(spec):
    """
    "In the case of a final upload, its value MUST be `final` followed by a
    semicolon and a space-separated list of partial upload URLs that will be
    concatenated. The partial uploads URLs MAY be absolute or relative and
    MUST NOT contain spaces as defined in [RFC
    3986](https://tools.ietf.org/html/rfc3986)."

    Relative URLs alone do; a URL that names no partial upload of the
    ticket is refused.
    """
    ticket = spec.new_ticket()
    parts = [spec.partial(ticket, data) for data in (b"ab", b"cd")]
    for bad in (f"final;{parts[0]}%20x", f"final;{spec.creation_url}", "final;/elsewhere/abc"):
        assert spec.final(ticket, bad).status_code == 400, bad
    response = spec.final(ticket, "final;" + " ".join(urlsplit(part).path for part in parts))
    assert response.status_code == 201
    assert spec.handover(response.headers["Location"])["received_sha256"] == sha256(b"abcd")

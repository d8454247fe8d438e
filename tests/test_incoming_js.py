"""
incoming.js in real headless Chromium: a test page on its own origin loads
the library from a real Incoming!! server, uploads files chosen in its file
input, and the test checks what the test backend received (bytes, sha256)
and what the page saw (callbacks, properties, flags).

None of the pages calls incoming.set_server_hostname() unless a test says
so: the library finds the server from the URL it was loaded from.
"""

import os
import time

import pytest

from browser import browser_page, chromium, page_server  # noqa: F401 (fixtures)
from harness import TusClient, random_file, sha256_of

MB = 1 << 20

# A progress hook (see browser.PAGE) that pauses the upload once, as soon as
# the server has confirmed this many bytes.
PAUSE_ONCE_AT = """
if (!rec.marks.paused && u.bytes_acked >= %d) {
    rec.marks.paused = true;
    u.pause("pause");
}"""


def assert_arrived(call, source, ticket, filename=None):
    """
    The handover C{call} delivered exactly the bytes of C{source}.
    """
    assert call["id"] == ticket
    assert call["cancelled"] == "no"
    assert call["filenameFromBrowser"] == (filename or source.name)
    size = os.path.getsize(source)
    digest = sha256_of(source)
    assert call["size"] == str(size)
    assert call["sha256"] == digest
    assert call["received_size"] == size
    assert call["received_sha256"] == digest


def assert_finished(report, size):
    """
    The page saw a clean, finished upload of C{size} bytes.
    """
    assert report["outcome"] == "finished", report
    assert report["callbacks"] == ["finished"], report
    end = report["at_end"]
    assert end["finished"] is True
    assert end["bytes_total"] == end["bytes_acked"] == end["bytes_tx"] == size
    assert end["bytes_ahead"] == 0 and end["chunks_ahead"] == 0
    assert end["frac_complete"] == 1
    assert end["state_msg"] == "all done"
    assert end["error_code"] is None and end["cancelled"] is False and end["cancelling"] is False
    assert end["can_pause"] is False and end["can_cancel"] is False and end["paused"] is False
    assert not report["acked_went_back"] and not report["tx_beyond_total"] and not report["frac_out_of_range"]
    assert report["max_chunks_ahead"] <= 1


def test_uploader_api(server, browser_page, tmp_path):
    """
    The global, the properties (read-only) and their values before start().
    """
    source = random_file(tmp_path / "small file.txt", 1000)
    page = browser_page.open(server)
    page.choose(source)
    shape = page.evaluate(
        """() => {
        const file = document.getElementById("files").files[0];
        const u = new incoming.Uploader("some-ticket", file);
        const plain = incoming.Uploader("some-ticket", file);
        const before = report_of(u);
        u.bytes_acked = 42; u.finished = true; u.state_msg = "hacked";
        return {
            globals: Object.keys(incoming).sort(),
            errors: incoming.errors,
            before: before,
            after: report_of(u),
            same_shape: Object.keys(plain).sort().join() === Object.keys(u).sort().join(),
            functions: ["start", "pause", "cancel"].map((f) => typeof u[f]),
            callbacks: ["onprogress", "onfinished", "oncancelled", "onerror"].map((f) => u[f]),
        };
        function report_of(u) {
            const r = {};
            for (const k of Object.keys(u)) if (typeof u[k] !== "function" && !k.startsWith("on")) r[k] = u[k];
            return r;
        }
    }"""
    )
    assert shape["globals"] == ["Uploader", "errors", "set_server_hostname"]
    assert shape["same_shape"]
    assert shape["functions"] == ["function"] * 3
    assert shape["callbacks"] == [None] * 4
    before = shape["before"]
    assert before == {
        "upload_id": "some-ticket",
        "filename": "small file.txt",
        "bytes_total": 1000,
        "bytes_tx": 0,
        "bytes_acked": 0,
        "bytes_ahead": 0,
        "frac_complete": 0,
        "chunks_tx_now": 0,
        "chunks_acked_now": 0,
        "chunks_ahead": 0,
        "state_msg": "not yet started",
        "cancel_msg": None,
        "error_code": None,
        "error_msg": None,
        "connected": False,
        "finished": False,
        "paused": False,
        "can_pause": False,
        "cancelling": False,
        "cancelled": False,
        "can_cancel": True,
    }
    assert shape["after"] == before, "properties must be read-only"
    assert shape["errors"]["TICKET_UNKNOWN"] == 20


def test_200_mb_file(server, backend, browser_page, tmp_path):
    size = 200 * MB
    source = random_file(tmp_path / "big video.mp4", size, seed=200)
    ticket = server.new_ticket(backend, backendSecret="s3cret")
    page = browser_page.open(server)
    page.choose(source)

    page.upload("big", ticket)
    report = page.wait_for_outcome("big", timeout=120)

    call = backend.next_call()
    assert_arrived(call, source, ticket)
    assert call["backendSecret"] == "s3cret"
    assert_finished(report, size)
    # The first chunk is 8 MiB; the next ones are what the connection sends
    # in about two seconds (the server sets no limit by default): over
    # loopback, far larger, so far fewer requests than 8 MiB chunks.
    chunks = report["chunk_sizes"]
    assert report["at_end"]["chunks_acked_now"] == report["at_end"]["chunks_tx_now"] == len(chunks)
    assert sum(chunks) == size
    assert chunks[0] == 8 * MB
    assert max(chunks) > 8 * MB and len(chunks) < 25, chunks
    assert report["max_bytes_ahead"] > 0
    assert report["flags_seen"]["connected=true"] and report["flags_seen"]["can_pause=true"]
    assert report["messages"][-2:] == ["the upload server is handing the file over to the web app", "all done"]
    assert server.status(ticket, "s3cret")["state"] == "finished"


def upload_requests(page, server):
    """
    The requests the page made to the server's uploads, as (method, body
    size) pairs in order: the state requests that follow the handover left
    out.
    """
    return [
        (r["method"], r["size"])
        for r in page.evaluate("window.requests")
        if r["url"].startswith(server.uploads_url) and not r["url"].split("?")[0].endswith("/state")
    ]


def test_a_file_that_goes_in_one_chunk_goes_with_the_claim(server, backend, browser_page, tmp_path):
    """
    creation-with-upload: the claim carries the whole file, and the upload
    is one request, no HEAD nor PATCH.
    """
    size = 5 * MB
    source = random_file(tmp_path / "photo.jpg", size, seed=5)
    ticket = server.new_ticket(backend)
    page = browser_page.open(server)
    page.choose(source)

    page.upload("small", ticket)
    report = page.wait_for_outcome("small")

    assert_arrived(backend.next_call(), source, ticket)
    assert_finished(report, size)
    assert report["chunk_sizes"] == [size]
    assert report["max_bytes_ahead"] > 0, "no upload progress while the claim was sent"
    assert upload_requests(page, server) == [("OPTIONS", 0), ("POST", size)]


def test_a_claim_with_the_file_goes_on_from_what_the_server_has(server, backend, browser_page, tmp_path):
    """
    The ticket was claimed before for this file and part of it is stored
    (another page, or an answer lost): the data that comes with the claim
    is dropped, and the page sends the rest from the server's offset.
    """
    size = 3 * MB
    source = random_file(tmp_path / "report.pdf", size, seed=3)
    data = source.read_bytes()
    ticket = server.new_ticket(backend)
    tus = TusClient(server)
    url = tus.create(ticket, size, filename="report.pdf", filetype="")
    assert tus.patch(url, 0, data[:MB]).status_code == 204
    page = browser_page.open(server)
    page.choose(source)

    page.upload("u", ticket)
    report = page.wait_for_outcome("u")

    assert_arrived(backend.next_call(), source, ticket)
    assert_finished(report, size)
    # The PATCH sent what the server lacked: from its offset to the end.
    assert upload_requests(page, server) == [("OPTIONS", 0), ("POST", size), ("PATCH", size - MB)]


def test_chunks_within_the_server_limit(start_server, backend, browser_page, tmp_path):
    """
    --chunk-size caps the chunks (for a reverse proxy's body size limit):
    below the 8 MiB first chunk it is every chunk's size; above it, chunks
    grow up to it and never past it.
    """
    for limit, size, expected in ((3, 10, [3, 3, 3, 1]), (12, 40, None)):
        source = random_file(tmp_path / f"capped-{limit}.bin", size * MB, seed=limit)
        chunks = chunks_sent(start_server, backend, browser_page, source, f"--chunk-size={limit}M")
        assert sum(chunks) == size * MB
        if expected:
            assert chunks == [n * MB for n in expected]
        else:
            assert chunks[0] == 8 * MB and max(chunks) == limit * MB, chunks


def test_a_short_rest_goes_with_the_chunk_before_it(start_server, backend, browser_page, tmp_path):
    """
    A rest smaller than the chunk being sent goes with it, one request fewer,
    unless that would pass the server's limit.
    """
    for limit, expected in ((None, [13]), (12, [8, 5])):
        options = [f"--chunk-size={limit}M"] if limit else []
        source = random_file(tmp_path / f"rest-{limit}.bin", 13 * MB, seed=13)
        assert chunks_sent(start_server, backend, browser_page, source, *options) == [n * MB for n in expected]


def chunks_sent(start_server, backend, browser_page, source, *options):
    """
    Upload C{source} through incoming.js to a server started with
    C{options}; the size of each chunk it sent, once the backend has the
    file, intact.
    """
    server = start_server(*options, storage=source.with_name(source.name + ".storage"))
    ticket = server.new_ticket(backend)
    page = browser_page.open(server)
    page.choose(source)

    page.upload("c", ticket)
    report = page.wait_for_outcome("c")

    assert_arrived(backend.next_call(), source, ticket)
    assert_finished(report, source.stat().st_size)
    return report["chunk_sizes"]


def test_three_concurrent_uploads(start_server, backend, browser_page, tmp_path):
    server = start_server("--chunk-size=2M")
    sources = [random_file(tmp_path / f"file{i}.bin", (20 + i) * MB, seed=i) for i in range(3)]
    tickets = [server.new_ticket(backend) for _ in sources]
    page = browser_page.open(server)
    page.choose(*sources)
    # A slow uplink, shared by the three, as a real one would be.
    page.throttle(30 * MB)

    for i, ticket in enumerate(tickets):
        page.upload(f"u{i}", ticket, index=i)
    reports = [page.wait_for_outcome(f"u{i}") for i in range(3)]

    calls = {call["id"]: call for call in (backend.next_call() for _ in sources)}
    assert set(calls) == set(tickets)
    for source, ticket, report in zip(sources, tickets, reports):
        assert_arrived(calls[ticket], source, ticket)
        assert_finished(report, os.path.getsize(source))
    assert page.evaluate("window.max_active") == 3, "the three uploads never ran at the same time"


def test_pause_then_unpause(start_server, backend, browser_page, tmp_path):
    server = start_server("--chunk-size=4M")
    size = 40 * MB
    source = random_file(tmp_path / "paused.bin", size, seed=4)
    ticket = server.new_ticket(backend)
    page = browser_page.open(server)
    page.choose(source)

    # Pause in the middle of a chunk, once two chunks are confirmed.
    page.upload(
        "p",
        ticket,
        progress="""
        if (!rec.marks.paused && u.bytes_acked >= 8 * 1048576 && u.bytes_ahead > 0) {
            rec.marks.paused = true;
            rec.marks.acked_at_pause = u.bytes_acked;
            u.pause("pause");
            rec.marks.after_pause = {paused: u.paused, bytes_ahead: u.bytes_ahead, chunks_ahead: u.chunks_ahead};
        }""",
    )
    report = page.wait_until("p", "rec.marks.paused")
    now = report["now"]
    assert report["marks"]["after_pause"] == {"paused": True, "bytes_ahead": 0, "chunks_ahead": 0}
    assert now["paused"] and now["can_pause"] and now["can_cancel"] and not now["finished"]
    assert now["state_msg"] == "paused"

    # Paused means nothing is sent. (The wait is an observation window, not
    # a synchronisation: the test checks that nothing happens in it.)
    page.page.wait_for_timeout(1000)
    later = page.report("p")["now"]
    assert (later["bytes_tx"], later["chunks_tx_now"], later["paused"]) == (now["bytes_tx"], now["chunks_tx_now"], True)
    offset = server.status(ticket)["offset"]
    assert report["marks"]["acked_at_pause"] <= offset < size

    page.call("p", "pause", "toggle")  # unpause
    report = page.wait_for_outcome("p")

    assert_arrived(backend.next_call(), source, ticket)
    assert_finished(report, size)
    assert report["flags_seen"]["paused=true"]
    assert "paused" in report["messages"] and "resuming" in report["messages"]
    # The second connection went on from the server's offset (which kept the
    # part of the chunk that was cut), and its chunk counters started over.
    assert report["sending_from"] == [0, offset]
    assert report["at_end"]["chunks_acked_now"] < 10


@pytest.mark.parametrize("when", ["before start", "while sending"])
def test_cancel_from_page(server, backend, browser_page, tmp_path, when):
    source = random_file(tmp_path / "cancelled.bin", 40 * MB, seed=5)
    ticket = server.new_ticket(backend)
    page = browser_page.open(server)
    page.choose(source)
    reason = "user changed their mind, naïvely & for 100%"

    if when == "before start":
        page.upload("c", ticket, start=False)
        page.call("c", "cancel", reason)
    else:
        page.upload(
            "c",
            ticket,
            progress="""
            if (!rec.marks.cancelled && u.bytes_acked >= 8 * 1048576) {
                rec.marks.cancelled = true;
                u.cancel(%r);
                rec.marks.after = {cancelling: u.cancelling, can_cancel: u.can_cancel, can_pause: u.can_pause};
            }"""
            % reason,
        )
    report = page.wait_for_outcome("c")

    assert report["outcome"] == "cancelled", report
    assert report["callbacks"] == ["cancelled"]
    end = report["at_end"]
    assert end["cancelled"] is True and end["cancelling"] is False and end["cancel_msg"] == reason
    assert end["can_cancel"] is False and end["can_pause"] is False and end["finished"] is False
    assert end["error_code"] is None
    assert report["flags_seen"]["cancelling=true"]
    if when == "while sending":
        assert report["marks"]["after"] == {"cancelling": True, "can_cancel": False, "can_pause": False}
    notice = backend.next_call()
    assert notice["id"] == ticket and notice["cancelled"] == "yes" and notice["cancelReason"] == reason
    status = server.status(ticket)
    assert status["state"] == "cancelled" and status["cancelReason"] == reason

    # Over is over: it cannot be started (again).
    report = page.call("c", "start")
    assert report["errors"][-1]["error_code"] == 1
    assert report["now"]["cancelled"] is True


@pytest.mark.parametrize("when", ["while sending", "while paused"])
def test_cancel_from_backend(server, backend, browser_page, tmp_path, when):
    source = random_file(tmp_path / "doomed.bin", 40 * MB, seed=6)
    ticket = server.new_ticket(backend, backendSecret="pw")
    page = browser_page.open(server)
    page.choose(source)
    if when == "while paused":
        page.upload("c", ticket, progress=PAUSE_ONCE_AT % (8 * MB))
        page.wait_until("c", "u.paused")
    else:
        page.throttle(8 * MB)  # slow enough to act in the middle
        page.upload("c", ticket)
        page.wait_until("c", "u.bytes_acked > 0 && u.bytes_ahead > 0")

    response = server.backend_call("cancel_upload", id=ticket, backendSecret="pw", reason="quota exceeded")
    assert response.status_code == 200, response.text
    report = page.wait_for_outcome("c")

    assert report["outcome"] == "cancelled", report
    assert report["callbacks"] == ["cancelled"]
    end = report["at_end"]
    assert end["cancelled"] is True and end["cancel_msg"] == "quota exceeded"
    assert end["error_code"] is None and end["finished"] is False
    assert end["can_cancel"] is False and end["can_pause"] is False and end["paused"] is False
    assert end["bytes_acked"] < end["bytes_total"]
    assert backend.next_call()["cancelled"] == "yes"


def test_ticket_cancelled_before_the_page_started(server, backend, browser_page, tmp_path):
    """
    A cancelled upload is never an error, even when the page only learns it
    at start().
    """
    ticket = server.new_ticket(backend)
    response = server.backend_call("cancel_upload", id=ticket, reason="offer expired")
    assert response.status_code == 200, response.text
    page = browser_page.open(server)
    page.choose(random_file(tmp_path / "late.bin", 1000))

    page.upload("u", ticket)
    report = page.wait_for_outcome("u")

    assert report["outcome"] == "cancelled" and report["callbacks"] == ["cancelled"]
    assert report["at_end"]["cancel_msg"] == "offer expired"
    assert report["at_end"]["error_code"] is None


def test_server_restarted_mid_upload(server, backend, browser_page, tmp_path):
    size = 48 * MB
    source = random_file(tmp_path / "survivor.bin", size, seed=7)
    ticket = server.new_ticket(backend)
    page = browser_page.open(server)
    page.choose(source)
    page.throttle(12 * MB)

    page.upload("r", ticket)
    page.wait_until("r", "u.bytes_acked >= 8 * 1048576 && u.bytes_ahead > 0")
    server.restart(kill=True)  # SIGKILL in the middle of a PATCH, then the same port again
    server.log.wait_for("restored 1 uploads")
    report = page.wait_for_outcome("r", timeout=90)

    assert_arrived(backend.next_call(), source, ticket)
    assert_finished(report, size)
    assert report["flags_seen"]["connected=false"]
    assert any("trying again" in message for message in report["messages"]), report["messages"]
    # Resumed from what the server had kept, not from zero.
    assert len(report["sending_from"]) >= 2 and report["sending_from"][-1] >= 8 * MB


def test_network_lost_and_back(server, backend, browser_page, tmp_path):
    # Chunks of 8 MiB, then about 16 (two seconds' worth), then the rest:
    # large enough that part of the file is still to be sent, from where
    # the server stands, once the connection is back.
    size = 48 * MB
    source = random_file(tmp_path / "commute.bin", size, seed=8)
    ticket = server.new_ticket(backend)
    page = browser_page.open(server)
    page.choose(source)
    page.throttle(8 * MB)

    page.upload("n", ticket)
    page.wait_until("n", "u.bytes_acked > 0 && u.bytes_ahead > 0")
    page.throttle(offline=True)
    report = page.wait_until("n", "!u.connected && rec.messages.filter((m) => /trying again/.test(m)).length >= 2")
    assert report["now"]["can_pause"] and report["now"]["can_cancel"] and report["outcome"] is None
    assert report["now"]["bytes_ahead"] == 0

    # Back online: the page's "online" event cuts the wait short.
    page.throttle(8 * MB)
    report = page.wait_for_outcome("n", timeout=60)

    assert_arrived(backend.next_call(), source, ticket)
    assert_finished(report, size)
    assert report["sending_from"][-1] > 0


def test_backend_answers_wait_then_finishes(start_server, browser_page, tmp_path):
    from harness import TestBackend

    backend = TestBackend(answer="wait")
    try:
        server = start_server()
        source = random_file(tmp_path / "report.pdf", 10 * MB, seed=9)
        ticket = server.new_ticket(backend)
        page = browser_page.open(server)
        page.choose(source)

        page.upload("w", ticket)
        call = backend.next_call()
        assert_arrived(call, source, ticket)
        report = page.wait_until("w", "u.state_msg === 'waiting for the web app to take the file'")
        now = report["now"]
        assert report["outcome"] is None and now["finished"] is False
        assert now["bytes_acked"] == now["bytes_total"] and now["frac_complete"] == 1
        assert now["can_pause"] is False and now["can_cancel"] is False

        # During the handover there is nothing to pause or cancel: the page
        # is told so, and the upload goes on.
        report = page.call("w", "pause", "pause")
        assert report["errors"][-1]["error_code"] == 3 and report["now"]["paused"] is False
        report = page.call("w", "cancel", "too late")
        assert report["errors"][-1]["error_code"] == 4 and report["now"]["cancelling"] is False

        # An uploader that does not know yet (another tab with the same
        # ticket and file) asks the server to cancel: too late, said the
        # same way, and it follows the handover to its end.
        page.upload("other tab", ticket, start=False)
        page.call("other tab", "cancel", "too late")
        page.wait_until("other tab", "rec.callbacks.length > 0")

        assert server.backend_call("finish_upload", id=ticket).status_code == 200
        report = page.wait_for_outcome("w")
        assert report["outcome"] == "finished"
        assert report["callbacks"] == ["error:3", "error:4", "finished"]
        assert server.status(ticket)["state"] == "finished"
        report = page.wait_for_outcome("other tab")
        assert report["callbacks"] == ["error:4", "finished"]
        assert report["flags_seen"]["cancelling=true"] and report["at_end"]["cancelled"] is False
    finally:
        backend.close()


def test_reloaded_page_continues_where_it_was(start_server, backend, browser_page, tmp_path):
    server = start_server("--chunk-size=4M")
    size = 32 * MB
    source = random_file(tmp_path / "long.bin", size, seed=10)
    ticket = server.new_ticket(backend)
    page = browser_page.open(server)
    page.throttle(16 * MB)
    page.choose(source)

    page.upload("first", ticket)
    page.wait_until("first", "u.bytes_acked >= 8 * 1048576")
    page.reload()  # in the middle of a chunk: the page and its uploader are gone
    offset = server.status(ticket)["offset"]
    assert 8 * MB <= offset < size

    page.choose(source)
    page.upload("again", ticket)
    report = page.wait_for_outcome("again")

    assert_arrived(backend.next_call(), source, ticket)
    assert_finished(report, size)
    assert report["sending_from"][0] >= offset, "the reloaded page started from zero"
    # The claim's answer said where to go on: no HEAD before the PATCHes.
    methods = [method for method, _ in upload_requests(page, server)]
    assert methods[:3] == ["OPTIONS", "POST", "PATCH"] and "HEAD" not in methods, methods


def test_empty_file_and_explicit_server_hostname(server, backend, browser_page, tmp_path):
    source = tmp_path / "empty.txt"
    source.write_bytes(b"")
    ticket = server.new_ticket(backend)
    page = browser_page.open(server)
    page.choose(source)
    # Host and port without a scheme: the scheme the script came with.
    page.evaluate("host => incoming.set_server_hostname(host)", f"127.0.0.1:{server.frontend_port}")

    page.upload("e", ticket)
    report = page.wait_for_outcome("e")

    assert_arrived(backend.next_call(), source, ticket)
    assert_finished(report, 0)


# Error codes: each one a page can run into.


def error_of(report):
    assert report["outcome"] == "error", report
    end = report["at_end"]
    assert end["finished"] is False and end["cancelled"] is False
    assert end["can_pause"] is False and end["can_cancel"] is False and end["connected"] is False
    assert end["error_msg"] and end["state_msg"].startswith("error: ")
    return end["error_code"]


def test_error_bad_calls_leave_the_upload_going(server, backend, browser_page, tmp_path):
    """
    Codes 1 (start twice), 2 (pause argument), 3 (pause before start) and
    4 (cancel after the end): reported, and nothing else changes.
    """
    source = random_file(tmp_path / "fine.bin", 4 * MB, seed=11)
    ticket = server.new_ticket(backend)
    page = browser_page.open(server)
    page.choose(source)

    page.upload("u", ticket, start=False)
    report = page.call("u", "pause", "pause")
    assert report["errors"][-1]["error_code"] == 3
    assert "not been started" in report["errors"][-1]["error_msg"]
    report = page.evaluate("() => { const u = uploads.u.u; u.start(); u.start(); u.pause('stop'); return report('u'); }")
    assert [e["error_code"] for e in report["errors"]] == [3, 1, 2]
    assert report["outcome"] is None

    report = page.wait_for_outcome("u")
    assert report["outcome"] == "finished"
    assert report["callbacks"] == ["error:3", "error:1", "error:2", "finished"]
    assert_arrived(backend.next_call(), source, ticket)

    report = page.call("u", "cancel", "now?")
    assert report["errors"][-1]["error_code"] == 4 and report["now"]["finished"] is True
    report = page.call("u", "start")
    assert report["errors"][-1]["error_code"] == 1


@pytest.mark.parametrize("ticket", ["", None, "   "])
def test_error_10_no_ticket(server, browser_page, tmp_path, ticket):
    page = browser_page.open(server)
    page.choose(random_file(tmp_path / "f.bin", 100))
    page.upload("u", ticket)
    assert error_of(page.wait_for_outcome("u")) == 10


@pytest.mark.parametrize("file", ["null", "file list", "string"])
def test_error_11_no_file(server, backend, browser_page, tmp_path, file):
    page = browser_page.open(server)
    page.choose(random_file(tmp_path / "f.bin", 100))
    ticket = server.new_ticket(backend)
    given = {
        "null": "null",
        "file list": "document.getElementById('files').files",
        "string": "'f.bin'",
    }[file]
    page.evaluate(
        f"""ticket => {{
        const u = incoming.Uploader(ticket, {given});
        uploads.u = {{u: u, outcome: null}};
        u.onerror = (up) => {{ uploads.u.outcome = up.error_code; uploads.u.message = up.error_msg; }};
        u.start();
    }}""",
        ticket,
    )
    assert page.evaluate("uploads.u.outcome") == 11
    if file == "file list":
        assert "FileList" in page.evaluate("uploads.u.message")


def test_error_12_bad_server_hostname(server, backend, browser_page, tmp_path):
    page = browser_page.open(server)
    page.choose(random_file(tmp_path / "f.bin", 100))
    page.evaluate("() => incoming.set_server_hostname('http://[not a host')")
    page.upload("u", server.new_ticket(backend))
    assert error_of(page.wait_for_outcome("u")) == 12

    # Called without a host: back to the server the script came from.
    page.evaluate("() => incoming.set_server_hostname()")
    page.upload("v", server.new_ticket(backend))
    assert page.wait_for_outcome("v")["outcome"] == "finished"


def test_error_20_unknown_ticket(server, browser_page, tmp_path):
    page = browser_page.open(server)
    page.choose(random_file(tmp_path / "f.bin", 100))
    page.upload("u", "NoSuchTicketNoSuchTicket")
    report = page.wait_for_outcome("u")
    assert error_of(report) == 20
    assert "ticket" in report["at_end"]["error_msg"]


def test_error_21_ticket_used_for_another_file(server, browser_page, tmp_path):
    tus = TusClient(server)
    source = random_file(tmp_path / "mine.bin", 1000)
    # Another client claimed the first ticket for a file of another length,
    # the second one for a file of this length but another name.
    other_length = server.new_ticket(None)
    tus.create(other_length, 999, filename="mine.bin")
    other_name = server.new_ticket(None)
    name_url = tus.create(other_name, 1000, filename="theirs.bin")
    page = browser_page.open(server)
    page.choose(source)

    page.upload("length", other_length)
    page.upload("name", other_name)
    assert error_of(page.wait_for_outcome("length")) == 21
    assert error_of(page.wait_for_outcome("name")) == 21
    # The page sent its file with the claim; none of it was stored.
    assert ("POST", 1000) in upload_requests(page, server)
    assert tus.offset(name_url) == 0


def test_error_22_file_too_large(server, backend, browser_page, tmp_path):
    page = browser_page.open(server)
    page.choose(random_file(tmp_path / "huge.bin", 5000))
    page.upload("u", server.new_ticket(backend, maxSize="4096"))
    report = page.wait_for_outcome("u")
    assert error_of(report) == 22
    assert "4096" in report["at_end"]["error_msg"]


def test_error_23_file_changed_on_disk(start_server, backend, browser_page, tmp_path):
    server = start_server("--chunk-size=1M")
    source = random_file(tmp_path / "draft.bin", 8 * MB, seed=12)
    ticket = server.new_ticket(backend)
    page = browser_page.open(server)
    page.choose(source)
    page.upload("u", ticket, progress=PAUSE_ONCE_AT % (2 * MB))
    page.wait_until("u", "u.paused")

    # The user saves another version of the file while the upload is paused.
    random_file(source, 8 * MB, seed=13)
    later = time.time() + 5
    os.utime(source, (later, later))
    page.call("u", "pause", "unpause")
    report = page.wait_for_outcome("u")
    assert error_of(report) == 23
    assert "draft.bin" in report["at_end"]["error_msg"]


def test_error_24_handover_failed(start_server, browser_page, tmp_path):
    from harness import TestBackend

    backend = TestBackend(answer=500)
    try:
        server = start_server("--handover-retry-period=2s")
        page = browser_page.open(server)
        page.choose(random_file(tmp_path / "f.bin", 1000))
        page.upload("u", server.new_ticket(backend))
        report = page.wait_for_outcome("u", timeout=60)
        assert error_of(report) == 24
        assert "hand" in report["at_end"]["error_msg"]
        assert report["at_end"]["bytes_acked"] == 1000
    finally:
        backend.close()


def test_error_25_not_an_incoming_server(server, backend, browser_page, page_server, tmp_path):
    page = browser_page.open(server)
    page.choose(random_file(tmp_path / "f.bin", 1000))
    # The test page's own web server: it answers, but not as Incoming!!.
    page.evaluate("origin => incoming.set_server_hostname(origin)", page_server.origin)
    page.upload("u", server.new_ticket(backend))
    report = page.wait_for_outcome("u")
    assert error_of(report) == 25
    assert "OPTIONS" in report["at_end"]["error_msg"]


def test_a_throwing_callback_does_not_break_the_upload(server, backend, browser_page, tmp_path):
    """
    An exception in the page's callback is the page's: the browser reports
    it as uncaught (as for an event listener), and the upload goes on.
    """
    source = random_file(tmp_path / "f.bin", 3 * MB, seed=14)
    ticket = server.new_ticket(backend)
    page = browser_page.open(server)
    page.choose(source)
    page.upload("u", ticket, progress="if (u.bytes_acked > 0) throw new Error('bug in the page');")
    report = page.wait_for_outcome("u")
    assert_arrived(backend.next_call(), source, ticket)
    assert_finished(report, 3 * MB)
    assert browser_page.page_errors and all("bug in the page" in e for e in browser_page.page_errors)
    browser_page.page_errors.clear()

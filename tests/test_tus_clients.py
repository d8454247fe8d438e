"""
Standard tus clients, for real, against Incoming!!: tus-js-client under
Node.js, Uppy (Dashboard and @uppy/tus) in headless Chromium, and tuspy from
Python. Each test ends with the backend having received the right file: the
sha256 Incoming!! computed while the bytes came in (``sha256``) and the one
of the file the backend was pointed at (``received_sha256``) both match the
file the client sent.

The npm packages are pinned in tests/package.json and
tests/package-lock.json; install them with ``npm ci --prefix tests``.
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from playwright.sync_api import sync_playwright
from tusclient import client as tuspy
from tusclient.storage.filestorage import FileStorage

from browser import CHROMIUM, CHROMIUM_ARGS
from harness import random_file, sha256_of

TESTS = Path(__file__).resolve().parent
NODE_MODULES = TESTS / "node_modules"
TUS_DRIVER = TESTS / "js" / "tus_upload.mjs"
UPPY_DIST = NODE_MODULES / "uppy" / "dist"
MiB = 1 << 20


def assert_handed_over(call, path, ticket=None):
    """
    The backend got the file at C{path}, whole and unchanged.
    """
    assert call["cancelled"] == "no", call
    if ticket is not None:
        assert call["id"] == ticket
    expected = sha256_of(path)
    assert (call["sha256"], call["received_sha256"]) == (expected, expected)
    assert int(call["size"]) == call["received_size"] == os.path.getsize(path)
    assert call["filenameFromBrowser"] == os.path.basename(path)


# tus-js-client under Node.js


class NodeUpload:
    """
    tests/js/tus_upload.mjs uploading one file; its report is one JSON event
    per line.
    """

    def __init__(self, endpoint, path, ticket, **settings):
        assert (NODE_MODULES / "tus-js-client").is_dir(), "npm packages missing: run npm ci --prefix tests"
        env = {
            **os.environ,
            "TUS_ENDPOINT": endpoint,
            "TUS_FILE": str(path),
            "TUS_TICKET": ticket,
            **{f"TUS_{name.upper()}": str(value) for name, value in settings.items()},
        }
        self.process = subprocess.Popen(
            [shutil.which("node") or "node", str(TUS_DRIVER)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def result(self, timeout=120):
        try:
            out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
            raise AssertionError(f"tus-js-client did not finish in {timeout} s:\n{out}\n{err}")
        events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        assert events and events[-1]["event"] == "success", (events[-3:], err)
        assert self.process.returncode == 0, err
        return events


def requests_of(events, method=None):
    return [e for e in events if e["event"] == "request" and method in (None, e["method"])]


def responses_of(events, method=None):
    return [e for e in events if e["event"] == "response" and method in (None, e["method"])]


class StallingProxy:
    """
    A TCP proxy on loopback in front of a server, as a network between a
    client and it: after C{stall_after} bytes from the clients it forwards
    nothing more (the client's sends back up, as on a stalled link) until
    L{cut} drops every connection (as a lost link does) and lets new ones
    through freely.
    """

    def __init__(self, port, stall_after):
        self.port = port
        self.stall_after = stall_after
        self.forwarded = 0
        self.stalled = threading.Event()
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._sockets = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def origin(self):
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(client, upstream), daemon=True).start()

    def _up(self, client, upstream):
        try:
            while data := client.recv(1 << 16):
                with self._lock:
                    stall = self.stall_after is not None and self.forwarded + len(data) >= self.stall_after
                    if stall:
                        data = data[: self.stall_after - self.forwarded]
                    self.forwarded += len(data)
                upstream.sendall(data)
                if stall:
                    self.stalled.set()
                    self._cut.wait()
                    return
            upstream.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _down(self, client, upstream):
        try:
            while data := upstream.recv(1 << 16):
                client.sendall(data)
            if not self.stalled.is_set() or self._cut.is_set():
                client.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def cut(self):
        with self._lock:
            self.stall_after = None
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                # Reset, as a connection that died on the way.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._cut.set()

    def close(self):
        self._listener.close()
        self.cut()


def test_tus_js_client_uploads_50_mb(server, backend, tmp_path):
    path = random_file(tmp_path / "fifty.bin", 50 * MiB)
    ticket = server.new_ticket(backend)
    events = NodeUpload(server.uploads_url, path, ticket).result()
    assert events[-1]["url"] == f"{server.uploads_url}{ticket}"
    assert [e["status"] for e in responses_of(events, "POST")] == [201]
    assert responses_of(events, "PATCH")[-1]["offset"] == str(50 * MiB)
    assert_handed_over(backend.next_call(), path, ticket)
    server.log.wait_for(f"upload {ticket}: completed, {50 * MiB} bytes")


def test_tus_js_client_resumes_after_a_server_restart(start_server, backend, tmp_path):
    """
    The connection stalls at 20 MiB, the server is killed (-9) and started
    again, the connection dies: tus-js-client asks the server for the offset
    (HEAD) and sends the rest from there, not from zero.
    """
    server = start_server()
    proxy = StallingProxy(server.frontend_port, stall_after=20 * MiB)
    try:
        path = random_file(tmp_path / "resumed.bin", 50 * MiB)
        ticket = server.new_ticket(backend)
        upload = NodeUpload(proxy.origin + "/incoming/frontend/uploads/", path, ticket)
        assert proxy.stalled.wait(60), "the upload never reached 20 MiB"
        server.restart()
        server.log.wait_for("restored")
        proxy.cut()
        events = upload.result()
    finally:
        proxy.close()
    assert len(requests_of(events, "POST")) == 1
    heads = responses_of(events, "HEAD")
    assert [e["status"] for e in heads] == [200]
    resumed_at = int(heads[0]["offset"])
    assert 0 < resumed_at <= 20 * MiB
    patches = [e["offset"] for e in requests_of(events, "PATCH")]
    assert patches == ["0", str(resumed_at)]
    assert_handed_over(backend.next_call(), path, ticket)


def test_tus_js_client_parallel_uploads_use_concatenation(server, backend, tmp_path):
    path = random_file(tmp_path / "parallel.bin", 30 * MiB + 7)
    ticket = server.new_ticket(backend)
    events = NodeUpload(server.uploads_url, path, ticket, parallel=3).result()
    posts = requests_of(events, "POST")
    assert [e["concat"] for e in posts[:3]] == ["partial"] * 3
    assert posts[3]["concat"].startswith("final;") and len(posts[3]["concat"].split()) == 3
    assert [e["status"] for e in responses_of(events, "POST")] == [201] * 4
    assert events[-1]["url"] == f"{server.uploads_url}{ticket}"
    assert_handed_over(backend.next_call(), path, ticket)


# Uppy (Dashboard + @uppy/tus) in Chromium


UPPY_PAGE = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>Uppy</title>
<link rel="stylesheet" href="/uppy.min.css">
</head>
<body>
<div id="uppy"></div>
<script src="/uppy.min.js"></script>
<script>
"use strict";
const params = new URLSearchParams(location.search);
const tickets = JSON.parse(params.get("tickets"));
const U = window.Uppy;
window.errors = [];
window.result = null;
const uppy = new U.Uppy({ autoProceed: false })
  .use(U.Dashboard, { inline: true, target: "#uppy", proudlyDisplayPoweredByUppy: false })
  .use(U.Tus, { endpoint: params.get("endpoint") });
// One ticket per file, from the app's backend.
uppy.on("file-added", (file) => uppy.setFileMeta(file.id, { ticket: tickets[file.name] }));
uppy.on("upload-error", (file, error) => window.errors.push(file.name + ": " + error));
uppy.on("complete", (result) => {
  window.result = {
    successful: result.successful.map((f) => ({ name: f.name, url: f.uploadURL })),
    failed: result.failed.map((f) => ({ name: f.name, error: String(f.error) })),
  };
});
</script>
</body>
</html>
"""


class UppyPageServer:
    """
    The web app's page with Uppy, and Uppy's prebuilt bundle from the npm
    package, on a loopback origin of their own.
    """

    def __init__(self):
        assert (UPPY_DIST / "uppy.min.js").is_file(), "npm packages missing: run npm ci --prefix tests"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = urlsplit(self.path).path
                if path == "/":
                    body, kind = UPPY_PAGE.encode(), "text/html; charset=utf-8"
                elif path in ("/uppy.min.js", "/uppy.min.css"):
                    body = (UPPY_DIST / path[1:]).read_bytes()
                    kind = "text/javascript" if path.endswith(".js") else "text/css"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, **params):
        return f"http://127.0.0.1:{self.server.server_address[1]}/?{urlencode(params)}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_uppy_dashboard_uploads_two_files_with_a_ticket_each(server, backend, tmp_path):
    files = [
        random_file(tmp_path / "first.bin", 3 * MiB, seed=1),
        random_file(tmp_path / "second.bin", 5 * MiB + 3, seed=2),
    ]
    tickets = {path.name: server.new_ticket(backend) for path in files}
    pages = UppyPageServer()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page_errors = []
                page.on("pageerror", lambda error: page_errors.append(str(error)))
                page.goto(pages.url(endpoint=server.uploads_url, tickets=json.dumps(tickets)))
                # The user picks the files in the Dashboard and presses its upload button.
                page.set_input_files(
                    "input.uppy-Dashboard-input:not([webkitdirectory])", [str(p) for p in files]
                )
                page.click("button.uppy-StatusBar-actionBtn--upload")
                page.wait_for_function("window.result !== null", timeout=60_000)
                result = page.evaluate("window.result")
                errors = page.evaluate("window.errors")
            finally:
                browser.close()
    finally:
        pages.close()
    assert (result["failed"], errors, page_errors) == ([], [], [])
    assert sorted((f["name"], f["url"]) for f in result["successful"]) == sorted(
        (name, f"{server.uploads_url}{ticket}") for name, ticket in tickets.items()
    )
    calls = {call["id"]: call for call in (backend.next_call(), backend.next_call())}
    for path in files:
        assert_handed_over(calls[tickets[path.name]], path)


# tuspy


def test_tuspy_chunked_upload_with_checksums(server, backend, tmp_path):
    path = random_file(tmp_path / "chunked.bin", 5 * MiB + 11)
    ticket = server.new_ticket(backend)
    uploader = tuspy.TusClient(server.uploads_url).uploader(
        str(path),
        chunk_size=MiB,
        metadata={"ticket": ticket, "filename": path.name},
        upload_checksum=True,
    )
    uploader.upload()
    assert uploader.url == f"{server.uploads_url}{ticket}"
    assert uploader.offset == path.stat().st_size
    assert_handed_over(backend.next_call(), path, ticket)


def test_tuspy_resumes_with_a_new_uploader(server, backend, tmp_path):
    """
    An uploader stops after 3 MiB (its program ends); a new one, finding the
    upload's URL in tuspy's URL storage, goes on from 3 MiB.
    """
    path = random_file(tmp_path / "resumed.bin", 8 * MiB + 5)
    ticket = server.new_ticket(backend)
    storage = tmp_path / "tus-urls.json"
    metadata = {"ticket": ticket, "filename": path.name}

    def uploader():
        return tuspy.TusClient(server.uploads_url).uploader(
            str(path),
            chunk_size=MiB,
            metadata=metadata,
            store_url=True,
            url_storage=FileStorage(str(storage)),
        )

    first = uploader()
    first.upload(stop_at=3 * MiB)
    assert first.offset == 3 * MiB
    second = uploader()
    assert (second.url, second.offset) == (first.url, 3 * MiB)
    second.upload()
    assert_handed_over(backend.next_call(), path, ticket)
    assert server.log.text().count(f"upload {ticket}: claimed") == 1

"""
Real processes and real sockets for the tests: an Incoming!! server run with
``twistd -n incoming``, a test backend that receives handovers over HTTP, and
a small tus client.
"""

import base64
import hashlib
import itertools
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

TWISTD = str(Path(sys.executable).with_name("twistd"))
ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_on_loopback(handler, port=0):
    """
    An HTTP server for C{handler} on 127.0.0.1, serving from a thread of
    its own, each request in a thread.
    """
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def journal_records(storage):
    """
    The upload records in the journal of C{storage}, by upload id: the last
    line of each upload, removals applied (incoming/registry/files.py).
    """
    records = {}
    for line in (Path(storage) / "uploads.journal").read_bytes().splitlines():
        entry = json.loads(line)
        if "remove" in entry:
            records.pop(entry["remove"], None)
        else:
            records[entry["id"]] = entry
    return records


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class LogWatcher:
    """
    Collects a process's output lines and lets a test wait for one.
    """

    def __init__(self, stream):
        self.lines = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream):
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append(None)  # end of output
            self._changed.notify_all()

    def wait_for(self, text, timeout=30, start=0):
        """
        The first line from index C{start} on that contains C{text}.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            index = start
            while True:
                while index < len(self.lines):
                    line = self.lines[index]
                    if line is None:
                        raise AssertionError(f"process ended before logging {text!r}:\n" + self.text())
                    if text in line:
                        return line
                    index += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no log line with {text!r} within {timeout} s:\n" + self.text())
                self._changed.wait(remaining)

    def text(self):
        return "\n".join(line for line in self.lines if line is not None)


class IncomingServer:
    """
    ``twistd -n incoming`` on loopback ports that stay the same across
    restarts, with its storage in C{storage}.
    """

    def __init__(self, storage, *options):
        self.storage = Path(storage)
        self.options = list(options)
        self.frontend_port = free_port()
        self.backend_port = free_port()
        self.process = None
        self.log = None

    @property
    def frontend(self):
        return f"http://127.0.0.1:{self.frontend_port}"

    @property
    def backend(self):
        return f"http://127.0.0.1:{self.backend_port}"

    @property
    def uploads_url(self):
        return self.frontend + "/incoming/frontend/uploads/"

    def start(self):
        command = [
            TWISTD,
            "--nodaemon",
            "--pidfile=",
            "incoming",
            f"--frontend=tcp:{self.frontend_port}:interface=127.0.0.1",
            f"--backend=tcp:{self.backend_port}:interface=127.0.0.1",
            f"--storage={self.storage}",
            *self.options,
        ]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.log = LogWatcher(self.process.stdout)
        self.log.wait_for("restored")
        self.log.wait_for("frontend listening")
        self.log.wait_for("backend listening")
        return self

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def restart(self, kill=True):
        self.kill() if kill else self.stop()
        return self.start()

    def new_ticket(self, backend, **params):
        """
        A ticket from C{new_upload}, with the handover going to C{backend}
        (a L{TestBackend}) unless C{signalFinishURL} is given.
        """
        params.setdefault("signalFinishURL", backend.url if backend else "http://127.0.0.1:9/")
        response = requests.post(self.backend + "/incoming/backend/new_upload", data=params)
        assert response.status_code == 200, response.text
        return response.text.strip()

    def backend_call(self, name, **params):
        return requests.post(f"{self.backend}/incoming/backend/{name}", data=params)

    def status(self, upload_id, secret=""):
        response = requests.get(
            f"{self.backend}/incoming/backend/upload/{upload_id}", params={"backendSecret": secret}
        )
        assert response.status_code == 200, response.text
        return response.json()


class TestBackend:
    """
    A web app backend as Incoming!! sees it: receives handover POSTs on
    loopback, answers them as told, and for each handover records the size
    and sha256 of the file it was pointed at, moving the file away when
    C{keep_dir} is given (as a backend that sets removeFileWhenFinished=false
    does).

    Each call's fields also say on which connection it came
    (C{"connection"}, counted from 1), its place among the requests on
    that connection (C{"request"}, counted from 1) and the C{Cookie}
    header it carried (C{"cookie"}, empty without one); every answer
    carries the headers in C{answer_headers}. With C{keep_alive},
    connections stay open between requests (HTTP/1.1), as most web servers
    keep them; an answer of C{None} then closes the connection without
    answering.
    """

    __test__ = False

    def __init__(self, answer="done", keep_dir=None, port=0, keep_alive=False):
        self.answer = answer  # "done", "wait", an int status, None, or a callable(fields)
        self.answer_headers = {}
        self.keep_dir = Path(keep_dir) if keep_dir else None
        self.calls = queue.Queue()
        self.all_calls = []
        connection_numbers = itertools.count(1)
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def setup(self):
                super().setup()
                self.number = next(connection_numbers)
                self.requests = 0

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                fields = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode(), keep_blank_values=True).items()}
                self.requests += 1
                fields["connection"], fields["request"] = self.number, self.requests
                fields["cookie"] = self.headers.get("cookie", "")
                status, body = backend._handle(fields)
                if status is None:
                    self.close_connection = True
                    return
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", str(len(data)))
                for name, value in backend.answer_headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = serve_on_loopback(Handler, port)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/upload_finished"

    def _handle(self, fields):
        has_file = fields.get("cancelled") == "no" and os.path.exists(fields.get("filename") or "")
        if has_file:
            fields["received_size"] = os.path.getsize(fields["filename"])
            fields["received_sha256"] = sha256_of(fields["filename"])
        self.all_calls.append(fields)
        self.calls.put(fields)
        # Recorded first, so a test can act while the answer is pending.
        answer = self.answer(fields) if callable(self.answer) else self.answer
        if has_file and self.keep_dir is not None and answer in ("done", "wait"):
            target = self.keep_dir / fields["id"]
            shutil.move(fields["filename"], target)
            fields["kept_as"] = str(target)
        if answer is None:
            return None, None
        if isinstance(answer, int):
            return answer, "backend error"
        return 200, answer

    def next_call(self, timeout=60):
        try:
            return self.calls.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the backend got no call within {timeout} s") from None

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def b64(text):
    return base64.b64encode(text.encode()).decode()


class TusClient:
    """
    Just enough tus to drive the server from tests, on one keep-alive
    session.
    """

    __test__ = False

    def __init__(self, server):
        self.server = server
        self.http = requests.Session()
        self.http.headers["Tus-Resumable"] = "1.0.0"

    def create(self, ticket, length, filename="file.bin", filetype="application/octet-stream", **extra):
        metadata = {"ticket": ticket, "filename": filename, "filetype": filetype, **extra}
        headers = {"Upload-Metadata": ",".join(f"{k} {b64(v)}" for k, v in metadata.items())}
        if length is None:
            headers["Upload-Defer-Length"] = "1"
        else:
            headers["Upload-Length"] = str(length)
        response = self.http.post(self.server.uploads_url, headers=headers)
        assert response.status_code == 201, (response.status_code, response.text)
        return response.headers["Location"]

    def patch(self, url, offset, data, **headers):
        headers = {
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
            **headers,
        }
        return self.http.patch(url, data=data, headers=headers)

    def head(self, url):
        return self.http.head(url)

    def offset(self, url):
        response = self.head(url)
        assert response.status_code == 200, (response.status_code, response.headers)
        return int(response.headers["Upload-Offset"])

    def wait_for_offset(self, url, offset, timeout=30):
        """
        Poll HEAD until the upload's offset reaches C{offset} (bytes stored
        while the request carrying them is still going on).
        """
        deadline = time.monotonic() + timeout
        while self.offset(url) < offset:
            assert time.monotonic() < deadline, f"{url} never reached offset {offset}"
            time.sleep(0.05)

    def state(self, url, known=None, wait=30):
        params = {"known": known, "wait": wait} if known else {}
        response = self.http.get(url + "/state", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def wait_until_over(self, url, timeout=60):
        """
        Follow the state URL (long-polling) until the upload is finished,
        cancelled or failed.
        """
        deadline = time.monotonic() + timeout
        status = self.state(url)
        while status["state"] not in ("finished", "cancelled", "failed"):
            assert time.monotonic() < deadline, f"upload still {status['state']} after {timeout} s"
            status = self.state(url, known=status["state"])
        return status

    def upload_file(self, ticket, path, chunk_size=8 << 20, filename=None):
        size = os.path.getsize(path)
        url = self.create(ticket, size, filename=filename or os.path.basename(path))
        with open(path, "rb") as f:
            offset = 0
            while offset < size:
                chunk = f.read(chunk_size)
                response = self.patch(url, offset, chunk)
                assert response.status_code == 204, (response.status_code, response.text)
                offset = int(response.headers["Upload-Offset"])
        return url


def random_file(path, size, seed=0):
    """
    A file of C{size} pseudo-random bytes (incompressible, reproducible).
    """
    import random

    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n
    return Path(path)


def json_error(response):
    try:
        return response.json()["error"]
    except (ValueError, KeyError):
        return json.dumps(response.text)


def open_patch(url, offset, length, data=b""):
    """
    A raw connection carrying a tus PATCH that announces C{length} body
    bytes of which only C{data} is sent (yet): for cutting, stalling or
    finishing a body by hand.
    """
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port))
    head = (
        f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\n"
        f"Upload-Offset: {offset}\r\nContent-Length: {length}\r\n\r\n"
    )
    sock.sendall(head.encode() + data)
    return sock


class Turns:
    """
    The reactor as the pacer and the registry see it: a call made due now
    runs at the start of the next turn, and calls made due during a turn
    wait for the one after (as in Twisted's reactor; a task.Clock would run
    them at once). Calls from other threads (C{callFromThread}) wait until
    the test takes them with L{from_thread}.
    """

    def __init__(self):
        self._due = []
        self._from_thread = queue.Queue()

    def callLater(self, delay, call):
        assert delay == 0
        self._due.append(call)

    def callFromThread(self, call, *args):
        self._from_thread.put((call, args))

    def turn(self):
        due, self._due = self._due, []
        for call in due:
            call()

    def from_thread(self):
        """
        Run the next call made from another thread, once it is made.
        """
        call, args = self._from_thread.get(timeout=10)
        call(*args)

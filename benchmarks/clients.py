"""
The clients of the benchmark: curl for single-stream and chunked uploads
(the same client on both sides of the chunked/single ratio), and a small
keep-alive client that sends chunks with sendfile, kept as a reference.
Both send straight from files, so that the client costs little CPU on a
machine it shares with the server.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

from .servers import b64

CURL = "curl"


def curl_upload(url, path, method="PUT", headers=()):
    """
    Send the file at C{path} as one request body; the seconds it took
    (curl's own time_total) once the answer is a 2xx.
    """
    command = [CURL, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "-T", str(path), "-X", method]
    # No "Expect: 100-continue" round trip: every server gets the body at once.
    for header in ("Expect:", *headers):
        command += ["-H", header]
    command.append(url)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    status, seconds = result.stdout.split()
    if not status.startswith("2"):
        raise RuntimeError(f"curl {method} {url}: HTTP {status} {result.stderr}")
    return float(seconds)


def curl_chunked_upload(url, parts):
    """
    Send the files C{parts}, in order, to the tus upload C{url} as one
    PATCH each over one keep-alive connection (curl's C{--next} reuses it);
    the seconds it took, from curl's start to its end.
    """
    command = [CURL, "-sS"]
    offset = 0
    for i, part in enumerate(parts):
        if i:
            command.append("--next")
        command += ["-o", "/dev/null", "-w", "%{http_code}\\n", "-T", str(part), "-X", "PATCH", "-H", "Expect:"]
        for header in tus_patch_headers(offset):
            command += ["-H", header]
        command.append(url)
        offset += os.path.getsize(part)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - start
    statuses = result.stdout.split()
    if statuses != ["204"] * len(parts):
        raise RuntimeError(f"curl PATCH {url}: HTTP {' '.join(statuses[-3:])} {result.stderr}")
    return seconds


def tus_patch_headers(offset=0):
    return [
        "Tus-Resumable: 1.0.0",
        f"Upload-Offset: {offset}",
        "Content-Type: application/offset+octet-stream",
    ]


class KeepAliveClient:
    """
    One HTTP/1.1 connection that sends request bodies from a file with
    sendfile(2): the reference chunked upload client.
    """

    def __init__(self, url):
        parts = urlsplit(url)
        self.host = parts.hostname
        self.port = parts.port
        self.sock = socket.create_connection((self.host, self.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def request(self, method, path, headers, fd=None, offset=0, count=0):
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {count}"]
        lines += headers
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while count:
            sent = os.sendfile(self.sock.fileno(), fd, offset, count)
            offset += sent
            count -= sent
        return self._response()

    def _response(self):
        while b"\r\n\r\n" not in self._buffer:
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("connection closed before the answer")
            self._buffer += data
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", 0))
        while len(self._buffer) < length:
            self._buffer += self.sock.recv(65536)
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return status, headers, body

    def close(self):
        self.sock.close()


def chunked_upload(url, path, chunk_size):
    """
    Send the file at C{path} to the tus upload C{url} as PATCHes of
    C{chunk_size} bytes over one keep-alive connection; the seconds it took.
    """
    size = os.path.getsize(path)
    target = urlsplit(url).path
    client = KeepAliveClient(url)
    fd = os.open(path, os.O_RDONLY)
    try:
        start = time.perf_counter()
        offset = 0
        while offset < size:
            count = min(chunk_size, size - offset)
            status, headers, body = client.request(
                "PATCH", target, tus_patch_headers(offset), fd, offset, count
            )
            if status != 204:
                raise RuntimeError(f"PATCH at {offset}: HTTP {status} {body[:200]!r}")
            offset = int(headers["upload-offset"])
        return time.perf_counter() - start
    finally:
        os.close(fd)
        client.close()


def load_job(server, count, size, data_path, pieces):
    """
    The job for the concurrency load client (benchmarks/load.py): C{count}
    uploads of C{size} bytes to C{server}, each one of the first C{pieces}
    pieces of the file at C{data_path}. Makes the tickets or PUT URLs it
    needs, and the URL the HEAD probe times.
    """
    job = {
        "kind": server.kind,
        "host": "127.0.0.1",
        "port": server.port,
        "count": count,
        "size": size,
        "pieces": list(range(pieces)),
        "data_file": str(data_path),
    }
    with requests.Session() as session:
        if server.kind == "put":
            job["put_urls"] = [server.upload_url(f"{time.monotonic_ns()}-{i}") for i in range(count)]
            probe = server.upload_url("probe")
            session.put(probe, data=b"probe")
            job["head_url"] = probe
        else:
            job["uploads_url"] = server.uploads_url
            if server.kind == "incoming":
                job["tickets"] = [b64(server.ticket(session)) for _ in range(count)]
            job["head_url"] = server.create(1, session)
    return job


def run_load(job):
    """
    Run the load client on C{job}; its outcome (see benchmarks/load.py).
    """
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.load"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"load client failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout)

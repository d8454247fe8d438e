"""
The concurrency load client: N uploads started at the same instant from one
asyncio process (not N processes), each on its own connection, while a
probe sends HEAD requests every few milliseconds and times their answers.

Run by the benchmark as ``python -m benchmarks.load`` with a JSON job on
stdin; prints a JSON result on stdout. The HEAD probe runs in a process of
its own (``--probe``). Bounded: every upload and the whole
run have a time limit.
"""

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

HEAD_INTERVAL = 0.01
SEND_BUFFER = 256 * 1024
RUN_TIMEOUT = 300.0


class Connection:
    def __init__(self, loop, host, port):
        self.loop = loop
        self.host = host
        self.port = port
        self.sock = None
        self.buffer = b""

    async def open(self):
        self.sock = socket.socket()
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A modest send buffer: beyond what the server's receive buffer
        # holds, a body waits in this process, as it waits on the client's
        # own machine when clients are elsewhere. With the kernel's default
        # (growing to 4 MiB), 500 connections each pushing their whole body
        # at once held up to 1.7 GiB in this machine's TCP buffers, past the
        # kernel's pressure mark, and that cost CPU on both sides.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        await self.loop.sock_connect(self.sock, (self.host, self.port))

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    async def request(self, method, path, headers=(), body=None):
        length = len(body) if body is not None else 0
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if method not in ("HEAD", "GET"):
            lines.append(f"Content-Length: {length}")
        lines += headers
        await self.loop.sock_sendall(self.sock, ("\r\n".join(lines) + "\r\n\r\n").encode())
        if body is not None:
            # A memoryview of the shared data: sent without copies.
            await self.loop.sock_sendall(self.sock, body)
        return await self._response(method)

    async def _fill(self):
        data = await self.loop.sock_recv(self.sock, 65536)
        if not data:
            raise ConnectionError("connection closed by the server")
        self.buffer += data

    async def _response(self, method):
        while b"\r\n\r\n" not in self.buffer:
            await self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = b""
        if method != "HEAD" and status not in (204, 304) and status >= 200:
            if headers.get("transfer-encoding", "").lower() == "chunked":
                body = await self._chunked()
            else:
                length = int(headers.get("content-length", 0))
                while len(self.buffer) < length:
                    await self._fill()
                body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    async def _chunked(self):
        body = b""
        while True:
            while b"\r\n" not in self.buffer:
                await self._fill()
            size_line, self.buffer = self.buffer.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(self.buffer) < size + 2:
                await self._fill()
            body += self.buffer[:size]
            self.buffer = self.buffer[size + 2 :]
            if size == 0:
                return body


def _path(url):
    parts = urlsplit(url)
    return parts.path + (("?" + parts.query) if parts.query else "")


async def one_upload(job, index, data, results):
    loop = asyncio.get_running_loop()
    connection = Connection(loop, job["host"], job["port"])
    size = job["size"]
    piece = job["pieces"][index % len(job["pieces"])]
    body = data[piece * size : (piece + 1) * size]
    started = time.perf_counter()
    outcome = {"index": index, "piece": piece}
    try:
        await connection.open()
        if job["kind"] == "put":
            url = job["put_urls"][index]
            status, headers, text = await connection.request("PUT", _path(url), [], body)
            if status not in (200, 201, 204):
                raise RuntimeError(f"PUT: HTTP {status} {text[:200]!r}")
        else:
            metadata = "filename YmVuY2guYmlu"
            if job["kind"] == "incoming":
                metadata += ",ticket " + job["tickets"][index]
            # The file goes with its creation (creation-with-upload), as
            # incoming.js sends a file that fits in one chunk, and as
            # tus-js-client does with uploadDataDuringCreation.
            status, headers, text = await connection.request(
                "POST",
                _path(job["uploads_url"]),
                [
                    "Tus-Resumable: 1.0.0",
                    f"Upload-Length: {size}",
                    f"Upload-Metadata: {metadata}",
                    "Content-Type: application/offset+octet-stream",
                ],
                body,
            )
            if status != 201 or int(headers.get("upload-offset", -1)) != size:
                raise RuntimeError(f"create: HTTP {status} {text[:200]!r}")
            url = headers["location"]
        outcome["url"] = url
        outcome["seconds"] = time.perf_counter() - started
    except Exception as e:  # a failed upload is counted, not fatal
        outcome["error"] = f"{type(e).__name__}: {e}"
    finally:
        connection.close()
        outcome["ended"] = time.perf_counter()
    results.append(outcome)


def probe_heads(job):
    """
    HEAD the probe URL every HEAD_INTERVAL until SIGINT (or RUN_TIMEOUT),
    then print [[sent, seconds], ...] and the errors as JSON.

    Runs in a process of its own, with blocking sockets, so that what it
    measures is the server's answer time, not the load client's event loop
    (which is busy with hundreds of uploads).
    """
    import signal
    from http.client import HTTPConnection

    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    path = _path(job["head_url"])
    headers = {"Tus-Resumable": "1.0.0"} if job["kind"] != "put" else {}
    latencies, errors = [], []
    connection = None
    deadline = time.perf_counter() + RUN_TIMEOUT
    while not stop and time.perf_counter() < deadline and len(latencies) + len(errors) < 100_000:
        started = time.perf_counter()
        try:
            if connection is None:
                connection = HTTPConnection(job["host"], job["port"], timeout=30)
            connection.request("HEAD", path, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"HEAD: HTTP {response.status}")
            latencies.append((started, time.perf_counter() - started))
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}")
            if connection is not None:
                connection.close()
            connection = None
        time.sleep(HEAD_INTERVAL)
    json.dump({"latencies": latencies, "errors": errors}, sys.stdout)


async def run(job):
    with open(job["data_file"], "rb") as f:
        data = memoryview(f.read())
    results = []
    prober = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.load", "--probe"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    prober.stdin.write(json.dumps(job))
    prober.stdin.close()
    # Let the probe's connection settle before the load starts.
    await asyncio.sleep(0.3)
    started = time.perf_counter()
    uploads = [one_upload(job, i, data, results) for i in range(job["count"])]
    try:
        await asyncio.wait_for(asyncio.gather(*uploads), RUN_TIMEOUT)
    except asyncio.TimeoutError:
        pass
    prober.send_signal(signal.SIGINT)
    probed = json.loads(prober.stdout.read())
    prober.wait(timeout=60)
    latencies, head_errors = probed["latencies"], probed["errors"]
    done = [r for r in results if "seconds" in r]
    ended = max(r["ended"] for r in done) if done else started
    wall = ended - started
    # Only the HEADs sent while the uploads were going on count.
    latencies = [latency for sent, latency in latencies if started <= sent <= ended]
    return {
        "wall": wall,
        "uploads": results,
        "failures": job["count"] - len(done),
        "head_latencies": latencies,
        "head_errors": head_errors[:10],
        "head_error_count": len(head_errors),
    }


def main():
    job = json.load(sys.stdin)
    if sys.argv[1:] == ["--probe"]:
        probe_heads(job)
        return
    result = asyncio.run(run(job))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()

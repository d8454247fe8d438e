"""
The servers under test, each a real process on 127.0.0.1, and the small
backend that receives Incoming!!'s handovers.

Every server exposes the same few things to the benchmark: how to send it an
upload (its "kind": plain PUT, tus, or tus with an Incoming!! ticket), where
the stored bytes end up (to check them with sha256), and the CPU time and
peak RSS of the server's own processes, read from /proc.
"""

import base64
import hashlib
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
TWISTD = str(Path(sys.executable).with_name("twistd"))
NODE = shutil.which("node") or "/usr/bin/node"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# A listen queue long enough for 500 connections opened at once: with the
# usual 50 (Twisted's default) most of them would wait for a SYN retransmit.
BACKLOG = 1024
# 500 uploads hold a socket and a data file each.
OPEN_FILES = 8192


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def b64(text):
    return base64.b64encode(text.encode()).decode()


def _raise_open_files():
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


def _wait_for_port(port, process, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


class ProcessStats:
    """
    CPU seconds and peak RSS of a process and its children (nginx's
    workers), from /proc.
    """

    def __init__(self, pid):
        self.pid = pid

    def pids(self):
        found = [self.pid]
        for pid in found:
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        found.extend(int(child) for child in f.read().split())
            except FileNotFoundError:
                pass
        return found

    def cpu_seconds(self):
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            # utime and stime (fields 14 and 15), for all threads of the process.
            total += int(fields[11]) + int(fields[12])
        return total / CLOCK_TICKS

    def reset_peak_rss(self):
        """
        Start a new peak RSS measurement (writing 5 to clear_refs resets
        VmHWM to the current RSS).
        """
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/clear_refs", "w") as f:
                    f.write("5")
            except (FileNotFoundError, PermissionError):
                pass

    def peak_rss(self):
        """
        The largest VmHWM among the processes, in bytes.
        """
        peak = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            peak = max(peak, int(line.split()[1]) * 1024)
            except FileNotFoundError:
                pass
        return peak


def spread_subdirectories(directory):
    """
    Have the filesystem put each new subdirectory of C{directory} in a
    block group of its own (ext4's "top of directory hierarchy" flag,
    C{chattr +T}), where it can; elsewhere nothing changes.

    On ext4 without a journal, as on the machine these benchmarks were made
    on, the kernel reuses no inode within a minute of its deletion, and each
    new file scans past every such inode of its block group, one creation
    at a time per directory. Beside other people's test suites in /tmp, a
    file took 0.3-0.5 ms to create instead of 12 us, and 500 uploads created
    at once spent much of their first second on it. In a block group of its
    own, each server's storage meets only its own files.
    """
    try:
        subprocess.run(["chattr", "+T", str(directory)], capture_output=True, timeout=30)
    except OSError:
        pass  # no chattr: the directories stay where the filesystem puts them


class Server:
    """
    A server process. Subclasses say how to start it and how an upload to
    it is made.
    """

    name = "?"
    kind = "?"  # "put", "tus" or "incoming"

    def __init__(self, workdir):
        self.workdir = Path(workdir) / self.name.replace(" ", "-").replace("/", "")
        self.storage = self.workdir / "storage"
        self.port = free_port()
        self.process = None
        self.stats = None
        self.log_file = None
        self.retired = 0

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def command(self):
        raise NotImplementedError

    def env(self):
        return dict(os.environ)

    def start(self):
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.storage.mkdir(parents=True)
        self.prepare()
        self.log_file = open(self.workdir / "server.log", "w")
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=self.env(),
            preexec_fn=_raise_open_files,
        )
        _wait_for_port(self.port, self.process)
        self.ready()
        self.stats = ProcessStats(self.process.pid)
        return self

    def prepare(self):
        pass

    def ready(self):
        pass

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log_file is not None:
            self.log_file.close()

    def log_text(self):
        try:
            return (self.workdir / "server.log").read_text()[-4000:]
        except OSError:
            return ""

    def clean(self):
        """
        Take the stored uploads out of the storage between runs, so that
        every run starts from the same (empty) storage.

        They are emptied and moved aside, not deleted: each inode deleted
        slows the creation of files beside it for a minute (see
        L{spread_subdirectories}); after the deletions of a few runs, a file
        took up to 1 ms to create. Emptied, the files take no disk space;
        they go with the server's working directory.
        """
        retired = self.workdir / "retired"
        retired.mkdir(exist_ok=True)
        for entry in self.stored_files():
            self.retired += 1
            target = retired / str(self.retired)
            try:
                entry.rename(target)
            except FileNotFoundError:
                # The server may still be replacing a record (its temporary
                # file is then gone by now).
                continue
            os.truncate(target, 0)

    def stored_files(self):
        """
        The files the server stored for its uploads (data and records):
        what L{clean} takes out.
        """
        return [entry for entry in self.storage.iterdir() if entry.is_file()]


class PutServer(Server):
    """
    A server that takes a plain PUT of the whole file to a URL of its own,
    and stores it under the URL's last segment in storage/put.
    """

    kind = "put"

    def prepare(self):
        (self.storage / "put").mkdir()

    def stored_files(self):
        return list((self.storage / "put").iterdir())

    def upload_url(self, index):
        return f"{self.base}/put/upload-{index}.bin"

    def stored_path(self, url):
        return self.storage / "put" / url.rsplit("/", 1)[1]


class Nginx(PutServer):
    """
    nginx's WebDAV module taking a plain PUT to a file: the ceiling for
    "HTTP bytes to a local file". Stock buffer settings.
    """

    name = "nginx PUT"

    def prepare(self):
        super().prepare()
        (self.workdir / "body-temp").mkdir()
        # As root, nginx's workers would become "nobody" and could not write
        # to the benchmark's directories: keep them as whoever runs this.
        user = f"user {pwd.getpwuid(os.getuid()).pw_name};" if os.getuid() == 0 else ""
        config = f"""
{user}
daemon off;
master_process on;
worker_processes 1;
pid {self.workdir}/nginx.pid;
error_log {self.workdir}/error.log warn;
events {{ worker_connections 4096; }}
worker_rlimit_nofile {OPEN_FILES};
http {{
    access_log off;
    client_body_temp_path {self.workdir}/body-temp;
    client_max_body_size 0;
    server {{
        listen 127.0.0.1:{self.port} backlog={BACKLOG};
        root {self.storage};
        location /put/ {{
            dav_methods PUT;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
    }}
}}
"""
        (self.workdir / "nginx.conf").write_text(config)

    def command(self):
        return [NGINX, "-p", str(self.workdir), "-c", str(self.workdir / "nginx.conf"), "-e", str(self.workdir / "error.log")]


class BareReceiver(PutServer):
    """
    The least work that takes an upload as the targets ask of Incoming!!
    (receive, write, sha256, write-behind, one fdatasync), with no server
    around it: the floor of the server CPU per GiB (benchmarks/floor.py).
    """

    name = "bare receiver"

    def command(self):
        return [sys.executable, "-m", "benchmarks.floor", str(self.port), str(self.storage / "put")]

    def env(self):
        return dict(os.environ, PYTHONPATH=str(ROOT))


class TusNode(Server):
    """
    The official Node tus server (@tus/server with @tus/file-store).
    """

    name = "@tus/server"
    kind = "tus"

    def command(self):
        return [NODE, str(BENCH / "tus_server.mjs"), str(self.port), str(self.storage), str(BACKLOG)]

    @property
    def uploads_url(self):
        return self.base + "/files"

    def create(self, length, session=requests):
        response = session.post(
            self.uploads_url,
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(length),
                "Upload-Metadata": f"filename {b64('bench.bin')}",
            },
        )
        assert response.status_code == 201, (response.status_code, response.text)
        return response.headers["Location"]

    def stored_path(self, url):
        return self.storage / url.rstrip("/").rsplit("/", 1)[1]


class Incoming(Server):
    """
    Incoming!! itself (``twistd incoming``), with the running sha256 on or
    (``--no-digest``) off.
    """

    kind = "incoming"

    def __init__(self, workdir, backend, digest=True, extra_env=None, options=()):
        self.digest = digest
        self.name = "Incoming!! sha256 on" if digest else "Incoming!! sha256 off"
        super().__init__(workdir)
        self.backend_port = free_port()
        self.handover = backend
        self.extra_env = extra_env or {}
        self.options = list(options)

    def command(self):
        return [
            TWISTD,
            "--nodaemon",
            "--pidfile=",
            "incoming",
            f"--frontend=tcp:{self.port}:interface=127.0.0.1:backlog={BACKLOG}",
            f"--backend=tcp:{self.backend_port}:interface=127.0.0.1",
            f"--storage={self.storage}",
            "--max-size=0",
            *([] if self.digest else ["--no-digest"]),
            *self.options,
        ]

    def env(self):
        return dict(os.environ, PYTHONUNBUFFERED="1", **self.extra_env)

    def ready(self):
        _wait_for_port(self.backend_port, self.process)

    @property
    def uploads_url(self):
        return self.base + "/incoming/frontend/uploads/"

    def ticket(self, session=requests):
        response = session.post(
            f"http://127.0.0.1:{self.backend_port}/incoming/backend/new_upload",
            data={"signalFinishURL": self.handover.url, "removeFileWhenFinished": "false"},
        )
        assert response.status_code == 200, response.text
        return response.text.strip()

    def create(self, length, session=requests):
        ticket = self.ticket(session)
        response = session.post(
            self.uploads_url,
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(length),
                "Upload-Metadata": f"ticket {b64(ticket)},filename {b64('bench.bin')}",
            },
        )
        assert response.status_code == 201, (response.status_code, response.text)
        return response.headers["Location"]

    def stored_path(self, url):
        return self.storage / (url.rstrip("/").rsplit("/", 1)[1] + ".data")


class HandoverBackend:
    """
    The web app backend as Incoming!! sees it: answers every handover
    ``done`` and remembers what it was told (the sha256 and path of each
    file).
    """

    def __init__(self):
        self.calls = {}
        self._arrived = threading.Condition()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            # Connections kept open between requests, as a web app's
            # server keeps them.
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                fields = {
                    k: v[0]
                    for k, v in parse_qs(self.rfile.read(length).decode(), keep_blank_values=True).items()
                }
                with backend._arrived:
                    backend.calls[fields["id"]] = fields
                    backend._arrived.notify_all()
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.send_header("content-length", "4")
                self.end_headers()
                self.wfile.write(b"done")

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            # Read by listen() in the constructor: 500 handovers arrive at once.
            request_queue_size = BACKLOG
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/handover"

    def wait_for(self, upload_ids, timeout=120):
        """
        The handover fields of each of C{upload_ids}, once all have arrived.
        """
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not all(i in self.calls for i in upload_ids):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = [i for i in upload_ids if i not in self.calls]
                    raise RuntimeError(f"no handover for {len(missing)} uploads, e.g. {missing[:3]}")
                self._arrived.wait(remaining)
            return [self.calls.pop(i) for i in upload_ids]

    def close(self):
        self.server.shutdown()
        self.server.server_close()

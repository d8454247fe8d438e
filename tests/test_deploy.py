"""
The deployment kit as shipped: the systemd units (checked by systemd and
run with socket activation) and the nginx configuration (run by a real
nginx in front of Incoming!! and the example app).
"""

import hashlib
import os
import re
import shutil
import subprocess
from types import SimpleNamespace

import requests

from harness import ROOT, TWISTD, LogWatcher, TusClient, free_port, open_patch
from nginx import Nginx

SYSTEMD = ROOT / "examples" / "systemd"


def test_systemd_units_verify(tmp_path):
    # Everything as shipped but the path of twistd, which is where this
    # checkout's virtualenv has it rather than /opt/incoming.
    service = (SYSTEMD / "incoming.service").read_text()
    assert "/opt/incoming/bin/twistd" in service
    (tmp_path / "incoming.service").write_text(service.replace("/opt/incoming/bin/twistd", TWISTD))
    shutil.copy(SYSTEMD / "incoming.socket", tmp_path / "incoming.socket")
    result = subprocess.run(
        ["systemd-analyze", "verify", "incoming.socket", "incoming.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "incoming.service" not in result.stderr, result.stderr


def service_command():
    """
    The ExecStart line of the shipped unit, as a list of arguments.
    """
    service = (SYSTEMD / "incoming.service").read_text().replace("\\\n", " ")
    line = re.search(r"^ExecStart=(.*)$", service, re.MULTILINE).group(1)
    return line.split()


def test_socket_activation_serves_the_frontend(tmp_path, backend):
    command = service_command()
    assert "systemd:domain=INET:name=frontend" in command
    frontend_port, backend_port = free_port(), free_port()
    command[0] = TWISTD
    command = [
        arg.replace("tcp:4001:", f"tcp:{backend_port}:").replace("/var/lib/incoming/storage", str(tmp_path / "storage"))
        for arg in command
    ]
    # systemd-socket-activate plays systemd: it opens the port, and starts
    # the service with the socket on the first connection.
    process = subprocess.Popen(
        ["systemd-socket-activate", "--fdname=frontend", "-l", f"127.0.0.1:{frontend_port}", *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log = LogWatcher(process.stdout)
    try:
        log.wait_for("Listening on")
        response = requests.options(f"http://127.0.0.1:{frontend_port}/incoming/frontend/uploads/", timeout=30)
        assert response.status_code == 204
        assert response.headers["Tus-Version"] == "1.0.0"
        log.wait_for("backend listening on 127.0.0.1")
        ticket = requests.post(
            f"http://127.0.0.1:{backend_port}/incoming/backend/new_upload", data={"signalFinishURL": backend.url}
        ).text
        tus = TusClient(SimpleNamespace(uploads_url=f"http://127.0.0.1:{frontend_port}/incoming/frontend/uploads/"))
        url = tus.create(ticket, 3)
        assert tus.patch(url, 0, b"abc").status_code == 204
        assert backend.next_call()["size"] == "3"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_nginx_streams_uploads_and_keeps_the_backend_api_private(start_server, backend, tmp_path):
    server = start_server("--behind-proxy")
    nginx = Nginx(tmp_path / "nginx", server.frontend_port, free_port()).start()
    try:
        # From outside, no backend URL is reachable, under either prefix.
        for path in ("/incoming/backend/new_upload", "/incoming/0.1/backend/new_upload"):
            response = requests.post(nginx.url + path, data={"signalFinishURL": backend.url})
            assert response.status_code == 404, path

        # Uploads pass through, and the upload URL names the proxy.
        ticket = server.new_ticket(backend)
        tus = TusClient(SimpleNamespace(uploads_url=nginx.url + "/incoming/frontend/uploads/"))
        size = 8 << 20
        url = tus.create(ticket, size)
        assert url == f"{nginx.url}/incoming/frontend/uploads/{ticket}"
        data = os.urandom(size)

        # Half a body sent through nginx is already being stored: nginx
        # streams it on instead of collecting the whole request first.
        with open_patch(url, 0, size, data[: size // 2]) as sock:
            tus.wait_for_offset(url, 1)
            sock.sendall(data[size // 2 :])
            assert sock.recv(4096).startswith(b"HTTP/1.1 204")

        call = backend.next_call()
        assert call["received_sha256"] == hashlib.sha256(data).hexdigest()
        assert tus.wait_until_over(url)["state"] == "finished"
    finally:
        nginx.stop()

"""
Bad input and hostile conditions get a clear 4xx (or 507 for a full disk)
with a one-line message, and never cost an upload its acknowledged bytes.
"""

import hashlib
import socket
import subprocess
from http.client import HTTPConnection
from urllib.parse import urlsplit

import pytest
import requests

from harness import TusClient, b64, random_file, sha256_of


@pytest.fixture
def small_disk(tmp_path):
    """
    A 1 MiB tmpfs for the storage; it can be grown with grow(size).
    """
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mountpoint)], check=True)

    class Disk:
        path = mountpoint

        def grow(self, size):
            subprocess.run(["mount", "-o", f"remount,size={size}", str(mountpoint)], check=True)

    yield Disk()
    subprocess.run(["umount", "--lazy", str(mountpoint)], check=True)


def test_full_disk_is_507_and_the_upload_stays_resumable(small_disk, start_server, backend, tmp_path):
    server = start_server(storage=small_disk.path)
    tus = TusClient(server)
    size = 2 * 1024 * 1024
    source = random_file(tmp_path / "f.bin", size, seed=9)
    data = source.read_bytes()
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, size)
    assert tus.patch(url, 0, data[:256 * 1024]).status_code == 204

    response = tus.patch(url, 256 * 1024, data[256 * 1024 :])
    assert response.status_code == 507
    assert response.text.startswith("storage is full")

    offset = tus.offset(url)
    stored = (small_disk.path / f"{ticket}.data").read_bytes()
    assert 256 * 1024 <= offset == len(stored) < size
    assert stored == data[:offset]

    small_disk.grow("8M")
    assert tus.patch(url, offset, data[offset:]).status_code == 204
    call = backend.next_call()
    assert call["sha256"] == call["received_sha256"] == sha256_of(source)


def test_browser_filename_is_never_a_path(server, backend, tus, tmp_path):
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 3, filename="../../../../tmp/evil.txt")
    assert tus.patch(url, 0, b"abc").status_code == 204
    call = backend.next_call()
    assert call["filename"] == str(server.storage / f"{ticket}.data")
    assert call["filenameFromBrowser"] == "../../../../tmp/evil.txt"


def test_server_max_size(start_server, backend):
    server = start_server("--max-size", "1K")
    tus = TusClient(server)
    response = tus.http.post(
        server.uploads_url, headers={"Upload-Length": "1025", "Upload-Metadata": f"ticket {b64(server.new_ticket(backend))}"}
    )
    assert (response.status_code, response.text) == (413, "upload of 1025 bytes exceeds the limit of 1024 bytes")

    # With the length deferred, the limit holds for the bytes themselves.
    url = tus.create(server.new_ticket(backend), None)
    response = tus.patch(url, 0, b"x" * 2000)
    assert response.status_code == 413
    assert response.text == "2000 bytes at offset 0 would exceed the size limit of 1024 bytes"
    assert tus.offset(url) == 0


def test_unknown_upload_ids_and_junk_paths(server, tus):
    for path in ("nope", "..%2F..%2Fetc%2Fpasswd", "A" * 300):
        response = tus.http.head(server.uploads_url + path)
        assert response.status_code == 404, path
        response = tus.patch(server.uploads_url + path, 0, b"abc")
        assert response.status_code == 404, path
        assert response.text.startswith(("no upload with id", "no such URL")), response.text
        assert "\n" not in response.text


def test_oversized_backend_form_is_413(server):
    response = requests.post(
        server.backend + "/incoming/backend/new_upload", data={"signalFinishURL": "http://x/" + "a" * 400_000}
    )
    assert (response.status_code, response.text) == (413, "request body too large")


def test_patch_on_an_unclaimed_ticket_is_404(server, backend, tus):
    ticket = server.new_ticket(backend)
    response = tus.patch(server.uploads_url + ticket, 0, b"abc")
    assert response.status_code == 404
    assert response.text == f"upload {ticket} has not been created yet (claim the ticket with POST)"


def test_host_that_is_no_host_name_is_400(server):
    for host in (b".", b"a..b", b"x" * 64 + b".example"):
        with socket.create_connection(("127.0.0.1", server.frontend_port), timeout=10) as sock:
            sock.sendall(b"GET /incoming/frontend/incoming.js HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"host name"):
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        assert answer.startswith(b"HTTP/1.1 400 "), (host, answer[:200])
        assert answer.endswith(b"\r\n\r\nthe Host header is not a valid host name"), (host, answer[-200:])


def test_request_line_or_header_over_the_limit_is_431(server):
    for request in (
        b"GET /incoming/frontend/" + b"a" * 20000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /incoming/frontend/incoming.js HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", server.frontend_port), timeout=10) as sock:
            sock.sendall(request)
            answer = b""
            while data := sock.recv(65536):
                answer += data
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert answer.endswith(b"\r\n\r\nrequest line or header longer than 16384 bytes"), answer[-200:]


def test_percent_encoded_upload_urls_are_the_same_urls(server, backend, tus):
    """
    A client that percent-encodes letters of an upload URL reaches the same
    upload, data included.
    """
    host, port = urlsplit(server.frontend).netloc.split(":")
    ticket = server.new_ticket(backend)
    http = HTTPConnection(host, int(port), timeout=30)
    http.request(
        "POST",
        "/incoming/frontend/%75ploads/",
        body=b"abc",
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Length": "6",
            "Upload-Metadata": f"ticket {b64(ticket)}",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    response = http.getresponse()
    assert (response.status, response.getheader("Upload-Offset")) == (201, "3")
    response.read()

    http.request(
        "PATCH",
        f"/%69ncoming/frontend/uploads%2F{ticket}",
        body=b"def",
        headers={"Tus-Resumable": "1.0.0", "Upload-Offset": "3", "Content-Type": "application/offset+octet-stream"},
    )
    response = http.getresponse()
    assert (response.status, response.getheader("Upload-Offset")) == (204, "6")
    call = backend.next_call()
    assert (call["size"], call["received_sha256"]) == ("6", hashlib.sha256(b"abcdef").hexdigest())

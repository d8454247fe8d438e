"""
Connections that drop mid-PATCH lose nothing that arrived.
"""

import socket
from urllib.parse import urlsplit

from harness import sha256_of, random_file


def send_partial_patch(url, offset, declared_length, data):
    """
    Send a PATCH that announces C{declared_length} bytes but carries only
    C{data}, then drop the connection; returns once the server has closed
    its side (it has noticed the drop).
    """
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        head = (
            f"PATCH {parts.path} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\n"
            "Tus-Resumable: 1.0.0\r\n"
            "Content-Type: application/offset+octet-stream\r\n"
            f"Upload-Offset: {offset}\r\n"
            f"Content-Length: {declared_length}\r\n\r\n"
        )
        sock.sendall(head.encode() + data)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass


def test_bytes_before_a_cut_are_kept_and_upload_resumes(server, backend, tus, tmp_path):
    size = 6 * 1024 * 1024
    source = random_file(tmp_path / "f.bin", size, seed=3)
    data = source.read_bytes()
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, size)

    cut = 2 * 1024 * 1024 + 12345
    send_partial_patch(url, 0, size, data[:cut])

    assert tus.offset(url) == cut
    response = tus.patch(url, cut, data[cut:])
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == str(size)
    call = backend.next_call()
    assert call["received_sha256"] == sha256_of(source)
    assert call["sha256"] == sha256_of(source)


def test_a_new_patch_takes_over_from_a_stale_connection(server, backend, tus, tmp_path):
    size = 3 * 1024 * 1024
    source = random_file(tmp_path / "f.bin", size, seed=4)
    data = source.read_bytes()
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, size)
    parts = urlsplit(url)

    # A client whose connection went silent mid-body (no FIN ever reached
    # the server) comes back on a new connection.
    stale = socket.create_connection((parts.hostname, parts.port))
    head = (
        f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        f"Content-Length: {size}\r\n\r\n"
    )
    stale.sendall(head.encode() + data[:1000])
    try:
        # The newcomer's offset is checked after the stale request has
        # stored what it got: 1000 bytes, or 0 if they were not read yet.
        response = tus.patch(url, 1000, data[1000:])
        if response.status_code == 409:
            offset = tus.offset(url)
            response = tus.patch(url, offset, data[offset:])
        assert response.status_code == 204, response.text
        # The stale connection was dropped by the server.
        stale.settimeout(10)
        try:
            assert stale.recv(100) == b""
        except ConnectionResetError:
            pass
    finally:
        stale.close()
    assert backend.next_call()["received_sha256"] == sha256_of(source)

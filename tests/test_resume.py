"""
Connections that drop mid-PATCH lose nothing that arrived.
"""

import socket

from harness import open_patch, random_file, sha256_of


def send_partial_patch(url, offset, declared_length, data):
    """
    Send a PATCH that announces C{declared_length} bytes but carries only
    C{data}, then drop the connection; returns once the server has closed
    its side (it has noticed the drop).
    """
    with open_patch(url, offset, declared_length, data) as sock:
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
    # A client whose connection went silent mid-body (no FIN ever reached
    # the server) comes back on a new connection.
    stale = open_patch(url, 0, size, data[:1000])
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

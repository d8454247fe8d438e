"""
Uploads read in turns, a few at a time (incoming/receive.py, _ReadTurns):
nobody's bytes are lost and a stalled client does not hold back others.
"""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

import requests

from harness import TusClient, open_patch
from incoming.receive import _ReadTurns

MiB = 1024 * 1024


def patch_whole(url, data):
    """
    One tus PATCH carrying all of C{data}, on a connection of its own, with
    a time limit (a waiting upload must not hang the test).
    """
    headers = {
        "Tus-Resumable": "1.0.0",
        "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
    }
    return requests.patch(url, data=data, headers=headers, timeout=60)


def calls_by_id(backend, count):
    calls = [backend.next_call() for _ in range(count)]
    return {call["id"]: call for call in calls}


def test_many_uploads_at_once_all_arrive_intact(server, backend, tus):
    count = 3 * _ReadTurns.readers
    bodies = [os.urandom(MiB) for _ in range(count)]
    tickets = [server.new_ticket(backend) for _ in range(count)]
    urls = [tus.create(ticket, MiB) for ticket in tickets]

    with ThreadPoolExecutor(count) as pool:
        answers = list(pool.map(patch_whole, urls, bodies))

    assert [answer.status_code for answer in answers] == [204] * count
    calls = calls_by_id(backend, count)
    for ticket, body in zip(tickets, bodies):
        assert calls[ticket]["received_sha256"] == hashlib.sha256(body).hexdigest()
        assert calls[ticket]["received_size"] == MiB


def test_stalled_uploads_do_not_hold_back_another(server, backend, tus):
    # As many uploads as may read at once send the start of their body and
    # then nothing.
    stalled = []
    for _ in range(_ReadTurns.readers):
        ticket = server.new_ticket(backend)
        url = tus.create(ticket, MiB)
        body = os.urandom(MiB)
        sock = open_patch(url, 0, MiB, body[: 64 * 1024])
        stalled.append((ticket, url, body, sock))
    for _, url, _, _ in stalled:
        tus.wait_for_offset(url, 64 * 1024)

    # Another upload still goes through, whole.
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, MiB)
    body = os.urandom(MiB)
    assert patch_whole(url, body).status_code == 204
    call = backend.next_call()
    assert (call["id"], call["received_sha256"]) == (ticket, hashlib.sha256(body).hexdigest())

    # The stalled ones finish once their clients send the rest.
    for _, _, body, sock in stalled:
        sock.sendall(body[64 * 1024 :])
    calls = calls_by_id(backend, len(stalled))
    for ticket, url, body, sock in stalled:
        assert sock.recv(4096).startswith(b"HTTP/1.1 204")
        sock.close()
        assert calls[ticket]["received_sha256"] == hashlib.sha256(body).hexdigest()
        assert TusClient(server).offset(url) == MiB

"""
The bare receiver: the least work any server has to do to take an upload in
the way the benchmark's targets ask of Incoming!!, and so the floor of the
server CPU per GiB on this machine.

One thread, no HTTP framework, no event loop: it takes one plain ``PUT`` per
connection, receives the body into one reused buffer, writes it to a file,
computes its sha256, has the kernel write each window out behind it (and
drops what is written from the page cache, as Incoming!! does), and makes
the file durable with one fdatasync before it answers. What it spends per
GiB is what receiving, writing, hashing and flushing cost here; what
Incoming!! spends beyond it is the cost of being a server.

    python -m benchmarks.floor PORT STORAGE
"""

import ctypes
import ctypes.util
import hashlib
import os
import socket
import sys

# What one receive asks for. The least CPU per GiB of those measured in a
# loop of 5 uploads of 1 GiB each: 1 MiB spent 1.18-1.25 s, 64 KiB 1.73,
# 256 KiB 1.35, 4 and 16 MiB about 1.45.
BUFFER = 1 << 20
# Each window is handed to the kernel's writeback as soon as it is written;
# the writer waits for (and drops) the one AHEAD windows back.
WINDOW = 2 << 20
AHEAD = 4
_WRITE = 2
_WAIT_ALL = 1 | 2 | 4

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


class BadRequest(Exception):
    pass


def read_head(conn, buffer):
    """
    The request line and headers, and how many bytes of the body came
    with them (at the start of C{buffer}).
    """
    view = memoryview(buffer)
    got = 0
    while b"\r\n\r\n" not in buffer[:got]:
        if got == len(buffer):
            raise BadRequest("request head too large")
        n = conn.recv_into(view[got:])
        if not n:
            raise BadRequest("connection closed in the request head")
        got += n
    end = buffer.find(b"\r\n\r\n", 0, got) + 4
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
    headers = {name.strip().lower(): value.strip() for name, value in headers.items()}
    if method != "PUT" or "content-length" not in headers:
        raise BadRequest("only PUT with a Content-Length")
    buffer[: got - end] = buffer[end:got]
    return path, int(headers["content-length"]), got - end


def receive(conn, fd, length, buffer, already):
    """
    The body of C{length} bytes into C{fd}, the first C{already} of them
    at the start of C{buffer}; its sha256.
    """
    view = memoryview(buffer)
    digest = hashlib.sha256()
    written = started = 0
    n = min(already, length)
    while True:
        if n:
            os.write(fd, view[:n])
            digest.update(view[:n])
            written += n
        while written - started >= WINDOW or (written == length and started < written):
            end = min(started + WINDOW, written)
            _libc.sync_file_range(fd, started, end - started, _WRITE)
            behind = started - AHEAD * WINDOW
            if behind >= 0:
                _libc.sync_file_range(fd, behind, WINDOW, _WAIT_ALL)
                os.posix_fadvise(fd, behind, WINDOW, os.POSIX_FADV_DONTNEED)
            started = end
        if written == length:
            break
        n = conn.recv_into(view[: min(BUFFER, length - written)])
        if not n:
            raise BadRequest("connection closed in the body")
    os.fdatasync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return digest.hexdigest()


def serve(conn, storage, buffer):
    try:
        path, length, already = read_head(conn, buffer)
        name = os.path.basename(path)
        fd = os.open(os.path.join(storage, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            sha256 = receive(conn, fd, length, buffer, already)
        finally:
            os.close(fd)
        body = sha256.encode() + b"\n"
        conn.sendall(b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    except (BadRequest, ValueError) as e:
        body = f"{e}\n".encode()
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def main(port, storage):
    listener = socket.create_server(("127.0.0.1", port), backlog=16)
    buffer = bytearray(BUFFER)
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                serve(conn, storage, buffer)
            except OSError as e:
                print(f"connection failed: {e}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])

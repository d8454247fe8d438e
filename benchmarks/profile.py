"""
Profile Incoming!! while it takes one upload: ``python -m benchmarks.profile``
starts the server, attaches py-spy (sampling, all threads, native frames
optional) and sends one file with curl, then prints where the server's time
went (collapsed stacks summarised by function).

    .venv/bin/python -m benchmarks.profile [--size 1024] [--chunk 0] [--no-digest] [--native]
    .venv/bin/python -m benchmarks.profile --concurrent 500 --size 4

With C{--concurrent N}, the load is N simultaneous uploads of C{--size} MiB
each from the benchmark's load client instead of one curl upload.

How docs/performance.rst's profile figures were made.
"""

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .__main__ import DataFiles
from .clients import chunked_upload, curl_upload, load_job, run_load, tus_patch_headers
from .servers import HandoverBackend, Incoming

MiB = 1 << 20


def summarise(collapsed, top):
    """
    Self time and total time per function from py-spy's collapsed stacks.
    """
    own, total, samples = collections.Counter(), collections.Counter(), 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        count = int(count)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    print(f"{samples} samples")
    print("self time:")
    for frame, count in own.most_common(top):
        print(f"  {100 * count / samples:5.1f}%  {frame}")
    print("total time:")
    for frame, count in total.most_common(top):
        print(f"  {100 * count / samples:5.1f}%  {frame}")


def send_one(url, path, chunk):
    """
    Upload the file at C{path} to C{url}; the upload's id, in a list.
    """
    if chunk:
        chunked_upload(url, path, chunk)
    else:
        curl_upload(url, path, "PATCH", tus_patch_headers())
    return [url.rstrip("/").rsplit("/", 1)[1]]


def send_many(job):
    """
    Run the load client on C{job}; the ids of the uploads, all of which must
    have succeeded.
    """
    outcome = run_load(job)
    if outcome["failures"]:
        raise RuntimeError(f"{outcome['failures']} uploads failed")
    return [upload["url"].rstrip("/").rsplit("/", 1)[1] for upload in outcome["uploads"]]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB to upload")
    parser.add_argument("--chunk", type=int, default=0, help="MiB per PATCH (0: one PATCH with curl)")
    parser.add_argument("--concurrent", type=int, default=0, help="that many uploads at once (0: one)")
    parser.add_argument("--no-digest", action="store_true")
    parser.add_argument("--native", action="store_true", help="include native (C) frames")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="incoming-profile-"))
    backend = HandoverBackend()
    server = Incoming(workdir, backend, digest=not args.no_digest).start()
    try:
        size = args.size * MiB
        path, expected = DataFiles(workdir / "data").get(size)
        if args.concurrent:
            job = load_job(server, args.concurrent, size, path, 1)
            load = lambda: send_many(job)  # noqa: E731
        else:
            url = server.create(size)
            load = lambda: send_one(url, path, args.chunk * MiB)  # noqa: E731
        output = workdir / "profile.txt"
        command = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(server.process.pid),
                   "--rate", str(args.rate), "--format", "raw", "--threads", "--nonblocking",
                   "--output", str(output)]
        if args.native:
            command.append("--native")
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        cpu_before = server.stats.cpu_seconds()
        started = time.perf_counter()
        ids = load()
        seconds = time.perf_counter() - started
        calls = backend.wait_for(ids, timeout=300)
        cpu = server.stats.cpu_seconds() - cpu_before
        spy.send_signal(2)
        spy.wait(timeout=60)
        total = size * len(ids)
        intact = all(call["sha256"] == expected for call in calls) or args.no_digest
        print(f"{total / seconds / 1e6:.1f} MB/s, server CPU {cpu / (total / (1 << 30)):.2f} s/GiB, "
              f"sha256 {'ok' if intact else 'WRONG'}")
        summarise(output.read_text(), args.top)
    finally:
        server.stop()
        backend.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

"""
Profile Incoming!! while it takes one upload: ``python -m benchmarks.profile``
starts the server, attaches py-spy (sampling, all threads, native frames
optional) and sends one file with curl, then prints where the server's time
went (collapsed stacks summarised by function).

    .venv/bin/python -m benchmarks.profile [--size 1024] [--chunk 0] [--no-digest] [--native]

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
from .clients import chunked_upload, curl_upload, tus_patch_headers
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1024, help="MiB to upload")
    parser.add_argument("--chunk", type=int, default=0, help="MiB per PATCH (0: one PATCH with curl)")
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
        url = server.create(size)
        output = workdir / "profile.txt"
        command = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(server.process.pid),
                   "--rate", str(args.rate), "--format", "raw", "--threads", "--nonblocking",
                   "--output", str(output)]
        if args.native:
            command.append("--native")
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        cpu_before = server.stats.cpu_seconds()
        if args.chunk:
            seconds = chunked_upload(url, path, args.chunk * MiB)
        else:
            seconds = curl_upload(url, path, "PATCH", tus_patch_headers())
        upload_id = url.rstrip("/").rsplit("/", 1)[1]
        [call] = backend.wait_for([upload_id])
        cpu = server.stats.cpu_seconds() - cpu_before
        spy.send_signal(2)
        spy.wait(timeout=60)
        print(f"{size / seconds / 1e6:.1f} MB/s, server CPU {cpu / (size / (1 << 30)):.2f} s/GiB, "
              f"sha256 {'ok' if call['sha256'] == expected or args.no_digest else 'WRONG'}")
        summarise(output.read_text(), args.top)
    finally:
        server.stop()
        backend.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

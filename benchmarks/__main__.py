"""
The Incoming!! benchmarks: ``benchmarks/run`` (which installs the peers, then
runs ``python -m benchmarks``). See docs/performance.rst.

Every comparison runs in this one invocation on this one machine, the
servers interleaved run by run (A B C A B C ...) with the same pause before
each run, and every run checks with sha256 that the bytes landed intact.
Ratios are taken run by run (pair by pair) and reported as medians with
min-max.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import report
from .clients import chunked_upload, curl_chunked_upload, curl_upload, load_job, run_load, tus_patch_headers
from .servers import ROOT, BareReceiver, HandoverBackend, Incoming, Nginx, TusNode, sha256_of, spread_subdirectories

MiB = 1 << 20
GiB = 1 << 30


class Sizes:
    def __init__(self, quick):
        if quick:
            self.single = 16 * MiB
            self.memory = [4 * MiB, 16 * MiB, 32 * MiB]
            self.chunk = 1 * MiB
            self.concurrent_count = 20
            self.concurrent_size = 256 * 1024
            self.browser = 8 * MiB
        else:
            self.single = 1 * GiB
            self.memory = [256 * MiB, 1 * GiB, 4 * GiB]
            self.chunk = 8 * MiB
            self.concurrent_count = 500
            self.concurrent_size = 4 * MiB
            self.browser = 512 * MiB


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, file=sys.stderr, flush=True)


class DataFiles:
    """
    Random source files, made once, with their sha256.
    """

    def __init__(self, directory):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.digests = {}

    def get(self, size):
        path = self.directory / f"random-{size}.bin"
        if path not in self.digests:
            if not path.exists() or path.stat().st_size != size:
                digest = hashlib.sha256()
                with open(path, "wb") as f:
                    left = size
                    while left:
                        block = os.urandom(min(left, 4 * MiB))
                        digest.update(block)
                        f.write(block)
                        left -= len(block)
                self.digests[path] = digest.hexdigest()
            else:
                self.digests[path] = sha256_of(path)
        return path, self.digests[path]

    def parts(self, size, part_size):
        """
        The random file of C{size} bytes cut into files of C{part_size}
        bytes, for clients that send each piece from a file of its own.
        Kept beside the file under its sha256, and written whole or not at
        all, so parts of an earlier file or an interrupted cut are never
        reused.
        """
        path, digest = self.get(size)
        directory = self.directory / f"{path.stem}.parts-{part_size}-{digest[:16]}"
        parts = [directory / f"{number:05}" for number in range(-(-size // part_size))]
        if not directory.is_dir():
            partial = directory.with_name(directory.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            with open(path, "rb") as source:
                for part in parts:
                    (partial / part.name).write_bytes(source.read(part_size))
            partial.rename(directory)
        return parts


def made_durable(send, server):
    """
    C{send}, then an fsync of the file the server stored, timed together:
    what a server that does not fsync (nginx) takes to make an upload
    durable, as Incoming!! does before it answers the last PATCH. A
    reference for the single-stream figures, not a target.
    """

    def send_and_fsync(url):
        seconds = send(url)
        started = time.perf_counter()
        fd = os.open(server.stored_path(url), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return seconds + time.perf_counter() - started

    return send_and_fsync


class Bench:
    def __init__(self, args):
        self.args = args
        self.sizes = Sizes(args.quick)
        self.workdir = Path(args.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        spread_subdirectories(self.workdir)
        self.data = DataFiles(self.workdir / "data")
        self.backend = HandoverBackend()
        self.servers = []
        self.results = {"machine": machine(), "runs": args.runs, "quick": args.quick, "measurements": {}}

    # Plumbing

    def start(self, server):
        log("starting", server.name)
        server.start()
        self.servers.append(server)
        return server

    def stop_all(self):
        for server in self.servers:
            server.stop()
        self.servers = []

    def pause(self):
        """
        The same pause before every run: storage emptied, dirty pages written
        out, then a rest, so that no run inherits the previous one's
        writeback.
        """
        for server in self.servers:
            server.clean()
        os.sync()
        time.sleep(self.args.pause)

    def record(self, measurement, name, **values):
        runs = self.results["measurements"].setdefault(measurement, {}).setdefault(name, [])
        runs.append(values)

    def check_stored(self, server, url, expected, upload_id=None):
        """
        The bytes landed intact, or the run does not count: the stored file
        hashes to the source's sha256 (and Incoming!!'s handover says so too
        when its digest is on).
        """
        if server.kind == "incoming":
            upload_id = url.rstrip("/").rsplit("/", 1)[1]
            [call] = self.backend.wait_for([upload_id])
            path = Path(call["filename"])
            if server.digest and call["sha256"] != expected:
                raise RuntimeError(f"{server.name}: handover sha256 {call['sha256']} != {expected}")
        else:
            path = server.stored_path(url)
        actual = sha256_of(path)
        if actual != expected:
            raise RuntimeError(f"{server.name}: stored file {path} has sha256 {actual}, expected {expected}")

    def upload_url(self, server, size):
        if server.kind == "put":
            return server.upload_url(time.monotonic_ns())
        return server.create(size)

    def measure(self, server, send, path, expected, size):
        """
        One run: the seconds, server CPU and peak RSS of C{send(url)}.
        """
        url = self.upload_url(server, size)
        server.stats.reset_peak_rss()
        cpu_before = server.stats.cpu_seconds()
        seconds = send(url)
        if server.kind == "incoming":
            # Completing includes the handover (and Incoming!!'s fsync).
            self.backend_wait_ready(server, url)
        cpu = server.stats.cpu_seconds() - cpu_before
        peak = server.stats.peak_rss()
        self.check_stored(server, url, expected)
        return {
            "seconds": seconds,
            "mb_s": size / seconds / 1e6,
            "cpu_s_per_gib": cpu / (size / GiB),
            "peak_rss_mib": peak / MiB,
        }

    def backend_wait_ready(self, server, url):
        upload_id = url.rstrip("/").rsplit("/", 1)[1]
        calls = self.backend.wait_for([upload_id])
        # Put it back for check_stored.
        self.backend.calls[upload_id] = calls[0]

    # Measurements

    def single_and_chunked(self):
        """
        1 and 3: a file as one request and as chunked PATCHes over one
        connection, both from curl, every server interleaved run by run.
        Incoming!! also takes the chunks from the sendfile client, and the
        bare receiver (the floor of the CPU per GiB) the single stream, as
        references.
        """
        size = self.sizes.single
        path, expected = self.data.get(size)
        parts = self.data.parts(size, self.sizes.chunk)
        servers = [Nginx(self.workdir), TusNode(self.workdir), Incoming(self.workdir, self.backend, True),
                   Incoming(self.workdir, self.backend, False), BareReceiver(self.workdir)]
        for server in servers:
            self.start(server)
        try:
            for run in range(self.args.runs):
                log(f"single stream / chunked, round {run + 1} of {self.args.runs}")
                for server in servers:
                    if server.kind == "put":
                        send = lambda url: curl_upload(url, path, "PUT")  # noqa: E731
                    else:
                        send = lambda url: curl_upload(url, path, "PATCH", tus_patch_headers())  # noqa: E731
                    self.run_and_record("single", server, send, path, expected, size)
                    if isinstance(server, Nginx):
                        self.run_and_record("single", server, made_durable(send, server), path, expected, size,
                                            name=f"{server.name} + fsync")
                    if server.kind == "put":
                        continue
                    send = lambda url: curl_chunked_upload(url, parts)  # noqa: E731
                    self.run_and_record("chunked", server, send, path, expected, size)
                    if server.kind == "incoming" and server.digest:
                        send = lambda url: chunked_upload(url, path, self.sizes.chunk)  # noqa: E731
                        self.run_and_record("chunked, sendfile client", server, send, path, expected, size)
        finally:
            self.stop_all()

    def run_and_record(self, measurement, server, send, path, expected, size, name=None):
        name = name or server.name
        self.pause()
        values = self.measure(server, send, path, expected, size)
        self.record(measurement, name, **values)
        log(f"  {name:24} {measurement:26} {values['mb_s']:7.1f} MB/s "
            f"{values['cpu_s_per_gib']:5.2f} CPU s/GiB {values['peak_rss_mib']:6.1f} MiB")

    def memory(self):
        """
        2: Incoming!!'s peak RSS (sha256 on) for uploads of several sizes,
        sizes interleaved run by run.
        """
        files = [self.data.get(size) for size in self.sizes.memory]
        server = self.start(Incoming(self.workdir, self.backend, True))
        try:
            for run in range(self.args.runs):
                log(f"memory, round {run + 1} of {self.args.runs}")
                for size, (path, expected) in zip(self.sizes.memory, files):
                    self.pause()
                    send = lambda url: curl_upload(url, path, "PATCH", tus_patch_headers())  # noqa: E731
                    values = self.measure(server, send, path, expected, size)
                    self.record("memory", f"{size // MiB} MiB", size=size, **values)
                    log(f"  {size // MiB:5} MiB {values['mb_s']:7.1f} MB/s {values['peak_rss_mib']:6.1f} MiB peak RSS")
        finally:
            self.stop_all()

    def concurrency(self):
        """
        4: many simultaneous uploads from one asyncio client, with HEADs
        timed during the load.
        """
        count, size = self.sizes.concurrent_count, self.sizes.concurrent_size
        pieces = 16
        data_path, _ = self.data.get(pieces * size)
        with open(data_path, "rb") as f:
            digests = [hashlib.sha256(f.read(size)).hexdigest() for _ in range(pieces)]
        single_path, single_digest = self.data.get(self.sizes.single)
        send_single = lambda url: curl_upload(url, single_path, "PATCH", tus_patch_headers())  # noqa: E731
        servers = [Nginx(self.workdir), TusNode(self.workdir), Incoming(self.workdir, self.backend, True)]
        for server in servers:
            self.start(server)
        try:
            for run in range(self.args.runs):
                log(f"concurrency, round {run + 1} of {self.args.runs}")
                for server in servers:
                    if server.kind == "incoming":
                        # The single-stream figure the aggregate is compared
                        # with, from the same rounds.
                        self.pause()
                        values = self.measure(server, send_single, single_path, single_digest, self.sizes.single)
                        self.record("concurrency reference", server.name, **values)
                    self.pause()
                    values = self.concurrent_run(server, count, size, data_path, digests)
                    self.record("concurrency", server.name, **values)
                    log(f"  {server.name:24} {values['failures']} failed, {values['mb_s']:7.1f} MB/s, "
                        f"p50 {values['p50_s']:.3f} s p99 {values['p99_s']:.3f} s, "
                        f"HEAD p99 {values['head_p99_ms']:.1f} ms, {values['peak_rss_mib']:.1f} MiB")
        finally:
            self.stop_all()

    def concurrent_run(self, server, count, size, data_path, digests):
        job = load_job(server, count, size, data_path, len(digests))
        server.stats.reset_peak_rss()
        cpu_before = server.stats.cpu_seconds()
        outcome = run_load(job)
        done = [u for u in outcome["uploads"] if "seconds" in u]
        # Every upload that succeeded must have landed intact.
        if server.kind == "incoming":
            ids = [u["url"].rstrip("/").rsplit("/", 1)[1] for u in done]
            calls = dict(zip(ids, self.backend.wait_for(ids, timeout=300)))
        cpu = server.stats.cpu_seconds() - cpu_before
        peak = server.stats.peak_rss()
        for upload in done:
            expected = digests[upload["piece"]]
            if server.kind == "incoming":
                call = calls[upload["url"].rstrip("/").rsplit("/", 1)[1]]
                if call["sha256"] != expected:
                    raise RuntimeError(f"{server.name}: handover sha256 mismatch")
                stored = Path(call["filename"])
            else:
                stored = server.stored_path(upload["url"])
            if sha256_of(stored) != expected:
                raise RuntimeError(f"{server.name}: {stored} is not intact")
        errors = [u["error"] for u in outcome["uploads"] if "error" in u]
        times = sorted(u["seconds"] for u in done)
        heads = sorted(outcome["head_latencies"])
        return {
            "failures": outcome["failures"],
            "errors": errors[:5],
            "mb_s": len(done) * size / outcome["wall"] / 1e6 if outcome["wall"] else 0.0,
            "wall_s": outcome["wall"],
            "p50_s": report.percentile(times, 50),
            "p99_s": report.percentile(times, 99),
            "head_p99_ms": report.percentile(heads, 99) * 1000,
            "head_p50_ms": report.percentile(heads, 50) * 1000,
            "heads": len(heads),
            "head_errors": outcome["head_error_count"],
            "cpu_s_per_gib": cpu / (len(done) * size / GiB) if done else 0.0,
            "peak_rss_mib": peak / MiB,
        }

    def browser(self):
        """
        5: the same file through incoming.js and tus-js-client in the same
        headless Chromium, against the same Incoming!!.
        """
        from .browser import Browser

        size = self.sizes.browser
        path, expected = self.data.get(size)
        server = self.start(Incoming(self.workdir, self.backend, True))
        browser = Browser()
        # Both libraries as shipped: incoming.js sizes its chunks by the
        # connection's speed (8 MiB first, then about 2 s worth each, a
        # shorter rest with the chunk before it), and tus-js-client sends
        # the whole file in one PATCH. tus-js-client in 8 MiB chunks, what
        # incoming.js sent before, is a reference.
        clients = [
            ("incoming.js", "incoming.js", 0),
            ("tus-js-client", "tus-js-client", 0),
            (f"tus-js-client {self.sizes.chunk // MiB} MiB chunks", "tus-js-client", self.sizes.chunk),
        ]
        try:
            for run in range(self.args.runs):
                log(f"browser, round {run + 1} of {self.args.runs}")
                for name, client, chunk_size in clients:
                    self.pause()
                    ticket = server.ticket()
                    seconds = browser.upload(client, path, server, ticket, chunk_size)
                    self.check_stored(server, server.uploads_url + ticket, expected)
                    values = {"seconds": seconds, "mb_s": size / seconds / 1e6}
                    self.record("browser", name, **values)
                    log(f"  {name:30} {values['mb_s']:7.1f} MB/s")
        finally:
            browser.close()
            self.stop_all()


def machine():
    info = {"cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB, 1)
        info["kernel"] = os.uname().release
        info["python"] = sys.version.split()[0]
        info["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True)
        info["nginx"] = nginx.stderr.strip().split("/")[-1]
        curl = subprocess.run(["curl", "--version"], capture_output=True, text=True)
        info["curl"] = curl.stdout.split()[1]
    except (OSError, IndexError):
        pass
    return info


MEASUREMENTS = ["single", "memory", "concurrency", "browser"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each measurement (default 5)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the suite works")
    parser.add_argument("--only", default=",".join(MEASUREMENTS),
                        help="comma-separated subset of: " + ", ".join(MEASUREMENTS))
    parser.add_argument("--pause", type=float, default=2.0, help="seconds of rest before each run")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "incoming-benchmarks"),
                        help="scratch directory for data files and server storage")
    parser.add_argument("--out", default=str(ROOT / "docs"),
                        help="where benchmark-results.{rst,json,png} go (default docs/)")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the random data files in the workdir for the next invocation")
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(wanted) - set(MEASUREMENTS)
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")

    bench = Bench(args)
    started = time.time()
    try:
        for name in MEASUREMENTS:
            if name in wanted:
                getattr(bench, name if name != "single" else "single_and_chunked")()
    finally:
        bench.stop_all()
        bench.backend.close()
    bench.results["duration_s"] = round(time.time() - started)
    bench.results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = report.write(bench.results, out)
    print(table)
    if not args.keep_data:
        shutil.rmtree(Path(args.workdir), ignore_errors=True)


if __name__ == "__main__":
    main()

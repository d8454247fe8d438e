"""
A smoke run of the benchmarks (benchmarks/run --quick: tiny sizes, one run),
so that the suite does not rot. No timing assertions: the figures of a run
this small mean nothing. What is checked is that every server starts, every
measurement produces results, every upload's bytes landed intact (the
benchmark itself fails a run whose sha256 does not match) and none failed.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def peers():
    """
    The Node peers of the benchmark (@tus/server), installed from
    benchmarks/package-lock.json if they are not there yet.
    """
    # scripts/install-system-deps (run by make test) installs them.
    for tool in ("nginx", "curl", "npm"):
        assert shutil.which(tool), f"{tool} is needed: run scripts/install-system-deps"
    assert Path("/usr/bin/chromium").exists(), "chromium is needed: run scripts/install-system-deps"
    if not (BENCHMARKS / "node_modules" / "@tus" / "server").is_dir():
        subprocess.run(
            ["npm", "ci", "--prefix", str(BENCHMARKS), "--no-audit", "--no-fund", "--loglevel=error"],
            check=True,
            timeout=300,
        )


def test_quick_benchmark_run(peers, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--runs=1",
            "--pause=0",
            "--only=single,memory,concurrency,browser",
            f"--out={out}",
            f"--workdir={tmp_path / 'work'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "benchmark-results.json").read_text())
    measurements = results["measurements"]
    servers = {"nginx PUT", "@tus/server", "Incoming!! sha256 on", "Incoming!! sha256 off"}
    assert set(measurements["single"]) == servers | {"nginx PUT + fsync", "bare receiver"}
    assert set(measurements["chunked"]) == servers - {"nginx PUT"}
    assert set(measurements["chunked, sendfile client"]) == {"Incoming!! sha256 on"}
    assert len(measurements["memory"]) == 3
    assert set(measurements["concurrency"]) == {"nginx PUT", "@tus/server", "Incoming!! sha256 on"}
    for runs in measurements["concurrency"].values():
        assert [run["failures"] for run in runs] == [0]
    for measurement in ("single", "chunked", "chunked, sendfile client", "memory"):
        for runs in measurements[measurement].values():
            assert all(run["mb_s"] > 0 and run["peak_rss_mib"] > 0 for run in runs)
    assert set(measurements["browser"]) == {"incoming.js", "tus-js-client", "tus-js-client 1 MiB chunks"}
    table = (out / "benchmark-results.rst").read_text()
    assert "Targets" in table and "Single stream" in table
    assert "single stream: Incoming!! / nginx PUT + fsync" in table
    assert "server CPU per GiB: Incoming!! / bare receiver" in table
    assert "single stream: nginx PUT / @tus/server" in table

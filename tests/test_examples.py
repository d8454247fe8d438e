"""
The example web apps as shipped, driven in headless Chromium: example 1
directly against Incoming!!, example 2 behind the shipped nginx
configuration, as a deployment would run them.
"""

import os
import subprocess
import sys

import pytest
import requests

from browser import chromium  # noqa: F401 (fixture)
from harness import ROOT, LogWatcher, free_port, random_file, sha256_of
from nginx import Nginx


class ExampleApp:
    """
    One of examples/*/app.py, run as its README says, on a loopback port.
    """

    def __init__(self, name, server, uploads, incoming_frontend):
        self.port = free_port()
        self.uploads = uploads
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "examples" / name / "app.py"),
                f"--listen=tcp:{self.port}:interface=127.0.0.1",
                f"--public-url=http://127.0.0.1:{self.port}",
                f"--incoming-backend={server.backend}",
                f"--incoming-frontend={incoming_frontend}",
                f"--uploads={uploads}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.log = LogWatcher(self.process.stdout)
        self.log.wait_for("listening on")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def tab(chromium):  # noqa: F811
    context = chromium.new_context()
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == []


def test_example_1_uploads_a_file_into_the_apps_folder(start_server, tab, tmp_path):
    server = start_server()
    app = ExampleApp("1-simple", server, tmp_path / "app-uploads", server.frontend)
    try:
        source = random_file(tmp_path / "holiday.jpg", 3_000_000, seed=11)
        tab.goto(app.url)
        tab.set_input_files("#file", str(source))
        tab.wait_for_selector("body[data-finished=yes]", timeout=60_000)
        assert tab.text_content("#status") == "Stored holiday.jpg (3000000 bytes)."
        stored = tmp_path / "app-uploads" / "holiday.jpg"
        assert sha256_of(stored) == sha256_of(source)
        # The app took the file: nothing is left in Incoming!!'s storage.
        assert not list(server.storage.glob("*.data"))
    finally:
        app.stop()


def row(page, name):
    return page.locator(f'.upload[data-name="{name}"]')


def wait_for_state(page, name, state, timeout=60):
    page.wait_for_selector(f'.upload[data-name="{name}"][data-state="{state}"]', timeout=timeout * 1000)


def wait_for_progress(page, name, fraction, timeout=60):
    page.wait_for_function(
        "([name, fraction]) => document.querySelector(`.upload[data-name='${name}'] progress`).value >= fraction",
        arg=[name, fraction],
        timeout=timeout * 1000,
        polling=50,
    )


def test_example_2_behind_nginx(start_server, tab, tmp_path):
    server = start_server("--behind-proxy", "--chunk-size=512K")
    uploads = tmp_path / "app-uploads"
    app = ExampleApp("2-dynamic", server, uploads, incoming_frontend="")
    nginx = Nginx(tmp_path / "nginx", server.frontend_port, app.port).start()
    try:
        keep = random_file(tmp_path / "keep.bin", 6_000_000, seed=12)
        drop = random_file(tmp_path / "drop.bin", 6_000_000, seed=13)
        # A slow uplink, so that there is time to pause and cancel mid-way.
        cdp = tab.context.new_cdp_session(tab)
        cdp.send("Network.enable")
        cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 4_000_000},
        )
        tab.goto(nginx.url + "/")
        tab.set_input_files("#files", [str(keep), str(drop)])

        # Both upload at once.
        wait_for_progress(tab, "keep.bin", 0.1)
        wait_for_progress(tab, "drop.bin", 0.1)

        row(tab, "keep.bin").locator(".pause").click()
        wait_for_state(tab, "keep.bin", "paused")
        row(tab, "drop.bin").locator(".cancel").click()
        wait_for_state(tab, "drop.bin", "cancelled")
        assert row(tab, "drop.bin").locator(".state").text_content() == "cancelled: cancelled on the page"
        row(tab, "keep.bin").locator(".pause").click()
        wait_for_state(tab, "keep.bin", "finished")

        # Finished only once the app has processed the file and called
        # finish_upload: the file is in the app's folder, as the page says.
        expected = sha256_of(keep)
        assert row(tab, "keep.bin").get_attribute("data-sha256") == expected
        assert sha256_of(uploads / "keep.bin") == expected
        assert sorted(p.name for p in uploads.iterdir()) == ["keep.bin"]
        ticket = row(tab, "drop.bin").get_attribute("data-ticket")
        assert requests.get(f"{nginx.url}/uploads/{ticket}").json() == {
            "state": "cancelled",
            "reason": "cancelled on the page",
        }

        # From outside, the backend API is out of reach.
        response = requests.post(nginx.url + "/incoming/backend/new_upload", data={"signalFinishURL": app.url})
        assert response.status_code == 404
    finally:
        nginx.stop()
        app.stop()

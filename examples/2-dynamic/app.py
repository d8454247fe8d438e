"""
Example 2: a page that uploads several files at once, each with its own
progress bar, pause/resume and cancel buttons.

The page asks this backend for a ticket per file (AJAX). When Incoming!!
hands a file over, this backend answers 'wait', processes the file in a
thread (computes its sha256 and moves it into its uploads folder), then
calls finish_upload: only then does the page show the file as finished.

    python examples/2-dynamic/app.py --incoming-backend http://127.0.0.1:4001 \\
        --incoming-frontend http://127.0.0.1:4000
"""

import argparse
import hashlib
import hmac
import json
import secrets
import shutil
import sys
from pathlib import Path

import treq
from klein import Klein
from twisted.internet import defer, endpoints, task, threads
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.web.server import Site

PAGE = Path(__file__).with_name("page.html")


def safe_name(name, folder):
    """
    A file name in C{folder} for a name a browser gave: no path parts, not
    hidden, not taken yet.
    """
    base = Path(name.replace("\\", "/")).name.lstrip(".") or "upload"
    candidate, n = folder / base, 1
    while candidate.exists():
        n += 1
        candidate = folder / f"{n}-{base}"
    return candidate


def process(path, folder, browser_name):
    """
    The backend's work on a finished upload, run in a thread: checksum it,
    then move it where the app keeps its files.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    target = safe_name(browser_name, folder)
    shutil.move(path, target)
    return {"name": target.name, "size": target.stat().st_size, "sha256": digest.hexdigest()}


class DynamicApp:
    app = Klein()
    log = Logger()

    def __init__(self, options):
        self.options = options
        self.secret = secrets.token_urlsafe(16)
        self.uploads = {}  # ticket -> {"state", ...}

    def _incoming(self, call, **fields):
        return treq.post(f"{self.options.incoming_backend}/incoming/backend/{call}", data=fields)

    @app.route("/")
    def page(self, request):
        request.setHeader("content-type", "text/html; charset=utf-8")
        return PAGE.read_text().replace("{{INCOMING}}", self.options.incoming_frontend)

    @app.route("/tickets", methods=["POST"])
    async def new_ticket(self, request):
        response = await self._incoming(
            "new_upload",
            signalFinishURL=self.options.public_url + "/upload_finished",
            removeFileWhenFinished="false",
            backendSecret=self.secret,
        )
        ticket = (await response.text()).strip()
        request.setHeader("content-type", "application/json")
        if response.code != 200:
            request.setResponseCode(502)
            return json.dumps({"error": ticket})
        self.uploads[ticket] = {"state": "uploading"}
        return json.dumps({"ticket": ticket})

    @app.route("/upload_finished", methods=["POST"])
    def upload_finished(self, request):
        def field(name):
            return request.args.get(name.encode(), [b""])[0].decode()

        if not hmac.compare_digest(field("backendSecret"), self.secret):
            request.setResponseCode(403)
            return "wrong secret"
        ticket = field("id")
        if field("cancelled") == "yes":
            self.uploads[ticket] = {"state": "cancelled", "reason": field("cancelReason")}
            return "done"
        if self.uploads.get(ticket, {}).get("state") != "processing":
            # A handover repeated after a lost answer is not processed twice.
            self.uploads[ticket] = {"state": "processing"}
            defer.ensureDeferred(self._process(ticket, field("filename"), field("filenameFromBrowser")))
        return "wait"

    async def _process(self, ticket, path, browser_name):
        try:
            result = await threads.deferToThread(process, path, self.options.uploads, browser_name)
            # Recorded before Incoming!! hears of it: finish_upload makes the
            # page's onfinished fire, and the page then asks for this record.
            self.uploads[ticket] = {"state": "finished", **result}
            response = await self._incoming("finish_upload", id=ticket, backendSecret=self.secret)
            answer = await response.text()
            if response.code != 200:
                raise RuntimeError(f"finish_upload answered {response.code}: {answer}")
        except Exception as e:
            self.log.failure("processing upload {ticket} failed", ticket=ticket)
            self.uploads[ticket] = {"state": "failed", "reason": str(e)}

    @app.route("/uploads/<ticket>")
    def upload(self, request, ticket):
        request.setHeader("content-type", "application/json")
        return json.dumps(self.uploads.get(ticket))


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="tcp:8080:interface=127.0.0.1", help="endpoint to serve on")
    parser.add_argument("--public-url", default="http://127.0.0.1:8080", help="where Incoming!! reaches this app")
    parser.add_argument("--incoming-backend", default="http://127.0.0.1:4001", help="Incoming!!'s backend API")
    parser.add_argument(
        "--incoming-frontend",
        default="http://127.0.0.1:4000",
        help="Incoming!!'s frontend as browsers reach it (empty: same host as this page)",
    )
    parser.add_argument("--uploads", type=Path, default=Path("uploads"), help="where processed files go")
    return parser.parse_args(argv)


async def main(reactor, argv):
    options = parse(argv)
    options.uploads.mkdir(parents=True, exist_ok=True)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    site = Site(DynamicApp(options).app.resource())
    port = await endpoints.serverFromString(reactor, options.listen).listen(site)
    address = port.getHost()
    print(f"example 2 listening on {address.host}:{address.port}", flush=True)
    await defer.Deferred()  # serve until stopped


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1:])))

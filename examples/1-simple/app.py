"""
Example 1: the simplest web app that takes its uploads through Incoming!!.

Each visit to / asks Incoming!! for a ticket and renders it into the page.
The page uploads the chosen file with incoming.js; when Incoming!! hands the
file over, this backend moves it into its own uploads folder (it asked for
removeFileWhenFinished=false, so the file is its own) and answers 'done'.
The page then shows the stored file's name and size.

Run it beside Incoming!! (which must be able to reach --public-url):

    python examples/1-simple/app.py --incoming-backend http://127.0.0.1:4001 \\
        --incoming-frontend http://127.0.0.1:4000
"""

import argparse
import hmac
import html
import json
import secrets
import shutil
import sys
from pathlib import Path

import treq
from klein import Klein
from twisted.internet import defer, endpoints, task
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.server import Site

PAGE = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>Incoming!! example 1</title>
<script src="{incoming}/incoming/frontend/incoming.js"></script>
</head>
<body>
<h1>Upload a file</h1>
<input type="file" id="file">
<progress id="progress" max="1" value="0"></progress>
<p id="status">Choose a file.</p>
<script>
const ticket = {ticket};
const status = document.getElementById("status");
document.getElementById("file").addEventListener("change", (event) => {{
  const uploader = incoming.Uploader(ticket, event.target.files[0]);
  uploader.onprogress = (u) => {{
    document.getElementById("progress").value = u.frac_complete;
    status.textContent = u.state_msg;
  }};
  uploader.onfinished = async () => {{
    const stored = await (await fetch("/stored/" + ticket)).json();
    status.textContent = `Stored ${{stored.name}} (${{stored.size}} bytes).`;
    document.body.dataset.finished = "yes";
  }};
  uploader.onerror = (u) => {{ status.textContent = `Error ${{u.error_code}}: ${{u.error_msg}}`; }};
  uploader.start();
  event.target.disabled = true;
}});
</script>
</body>
</html>
"""


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


class SimpleApp:
    app = Klein()

    def __init__(self, options):
        self.options = options
        self.secret = secrets.token_urlsafe(16)
        self.stored = {}  # ticket -> {"name", "size"}

    @app.route("/")
    async def page(self, request):
        response = await treq.post(
            self.options.incoming_backend + "/incoming/backend/new_upload",
            data={
                "signalFinishURL": self.options.public_url + "/upload_finished",
                "removeFileWhenFinished": "false",
                "backendSecret": self.secret,
            },
        )
        ticket = (await response.text()).strip()
        if response.code != 200:
            request.setResponseCode(502)
            return f"Incoming!! gave no ticket: {ticket}"
        request.setHeader("content-type", "text/html; charset=utf-8")
        return PAGE.format(incoming=html.escape(self.options.incoming_frontend), ticket=json.dumps(ticket))

    @app.route("/upload_finished", methods=["POST"])
    def upload_finished(self, request):
        def field(name):
            return request.args.get(name.encode(), [b""])[0].decode()

        if not hmac.compare_digest(field("backendSecret"), self.secret):
            request.setResponseCode(403)
            return "wrong secret"
        if field("cancelled") == "yes":
            return "done"
        target = safe_name(field("filenameFromBrowser"), self.options.uploads)
        shutil.move(field("filename"), target)
        self.stored[field("id")] = {"name": target.name, "size": target.stat().st_size}
        return "done"

    @app.route("/stored/<ticket>")
    def stored_file(self, request, ticket):
        request.setHeader("content-type", "application/json")
        return json.dumps(self.stored.get(ticket))


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
    parser.add_argument("--uploads", type=Path, default=Path("uploads"), help="where stored files go")
    return parser.parse_args(argv)


async def main(reactor, argv):
    options = parse(argv)
    options.uploads.mkdir(parents=True, exist_ok=True)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    site = Site(SimpleApp(options).app.resource())
    port = await endpoints.serverFromString(reactor, options.listen).listen(site)
    address = port.getHost()
    print(f"example 1 listening on {address.host}:{address.port}", flush=True)
    await defer.Deferred()  # serve until stopped


if __name__ == "__main__":
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, sys.argv[1:])))

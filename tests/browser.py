"""
Headless Chromium (Debian's package, driven by Playwright) for the tests of
incoming.js: a test page on its own origin that loads the library from the
Incoming!! server with a <script> tag, as a web app's page would, and
records everything its uploaders report.
"""

import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from harness import serve_on_loopback

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# The test page. {server} is the Incoming!! frontend's origin. The page keeps,
# per uploader, what a web app could see: every callback, the flags and
# messages that went by, and a snapshot of the properties at each callback.
PAGE = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>incoming.js test page</title>
<script src="{server}/incoming/frontend/incoming.js"></script>
</head>
<body>
<input type="file" id="files" multiple>
<script>
"use strict";
const PROPERTIES = [
    "upload_id", "filename", "bytes_total", "bytes_tx", "bytes_acked", "bytes_ahead",
    "frac_complete", "chunks_tx_now", "chunks_acked_now", "chunks_ahead", "state_msg",
    "cancel_msg", "error_code", "error_msg", "connected", "finished", "paused",
    "can_pause", "cancelling", "cancelled", "can_cancel",
];
const FLAGS = [
    "connected", "finished", "paused", "can_pause", "cancelling", "cancelled", "can_cancel",
];
window.uploads = {{}};

// Every request the library makes: its method, URL and body size.
window.requests = [];
const xhrOpen = XMLHttpRequest.prototype.open;
const xhrSend = XMLHttpRequest.prototype.send;
XMLHttpRequest.prototype.open = function (method, url) {{
    this.seen = {{method: method, url: String(url), size: 0}};
    return xhrOpen.apply(this, arguments);
}};
XMLHttpRequest.prototype.send = function (body) {{
    if (body) this.seen.size = body.size !== undefined ? body.size : body.length;
    window.requests.push(this.seen);
    return xhrSend.apply(this, arguments);
}};

function snapshot(u) {{
    const values = {{}};
    for (const name of PROPERTIES) values[name] = u[name];
    return values;
}}

// Start following an uploader of file number `index` of the file input (null:
// no file) with `ticket`. `hooks.progress` is JavaScript run on each
// onprogress with `u` (the uploader) and `rec` (this record) in scope, so a
// test can act at an exact point of the upload without racing it.
window.track = function (name, ticket, index, hooks) {{
    hooks = hooks || {{}};
    const file = index === null ? null : document.getElementById("files").files[index];
    const u = incoming.Uploader(ticket, file);
    const rec = {{
        u: u,
        outcome: null,         // "finished", "cancelled" or "error" (the first of these)
        callbacks: [],         // every callback but onprogress, in order
        errors: [],            // snapshots at each onerror
        progress_calls: 0,
        flags_seen: {{}},      // "connected=false": true, ...
        messages: [],          // distinct state_msg values, in order
        max_bytes_ahead: 0,
        max_chunks_ahead: 0,
        acked_went_back: false,
        tx_beyond_total: false,
        frac_out_of_range: false,
        connections: [],       // bytes_acked each time `connected` turned true
        sending_from: [],      // bytes_acked each time state_msg turned to "uploading"
        chunk_sizes: [],       // bytes confirmed by each chunk, in order
        acked_chunks_now: 0,
        at_end: null,          // snapshot at the terminal callback
        marks: {{}},           // set by hooks
    }};
    uploads[name] = rec;
    const progressHook = hooks.progress ? new Function("u", "rec", hooks.progress) : null;
    let lastAcked = 0;
    u.onprogress = function (up) {{
        rec.progress_calls++;
        for (const flag of FLAGS) rec.flags_seen[flag + "=" + up[flag]] = true;
        if (rec.messages[rec.messages.length - 1] !== up.state_msg) {{
            rec.messages.push(up.state_msg);
            if (up.state_msg === "uploading") rec.sending_from.push(up.bytes_acked);
        }}
        rec.max_bytes_ahead = Math.max(rec.max_bytes_ahead, up.bytes_ahead);
        rec.max_chunks_ahead = Math.max(rec.max_chunks_ahead, up.chunks_ahead);
        if (up.bytes_acked < lastAcked && !up.cancelled && up.error_code === null) rec.acked_went_back = true;
        if (up.chunks_acked_now > rec.acked_chunks_now) rec.chunk_sizes.push(up.bytes_acked - lastAcked);
        rec.acked_chunks_now = up.chunks_acked_now;
        lastAcked = up.bytes_acked;
        if (up.bytes_tx > up.bytes_total) rec.tx_beyond_total = true;
        if (!(up.frac_complete >= 0 && up.frac_complete <= 1)) rec.frac_out_of_range = true;
        if (up.connected && !rec.was_connected) rec.connections.push(up.bytes_acked);
        rec.was_connected = up.connected;
        const active = Object.values(uploads).filter(
            (r) => r.u.bytes_tx > 0 && r.u.bytes_acked < r.u.bytes_total).length;
        window.max_active = Math.max(window.max_active || 0, active);
        if (progressHook) progressHook(up, rec);
    }};
    const end = (what) => (up) => {{
        rec.callbacks.push(what === "error" ? "error:" + up.error_code : what);
        if (what === "error") rec.errors.push(snapshot(up));
        // Error codes below 10 report an ignored call; the upload goes on.
        if (rec.outcome === null && (what !== "error" || up.error_code >= 10)) {{
            rec.outcome = what;
            rec.at_end = snapshot(up);
        }}
    }};
    u.onfinished = end("finished");
    u.oncancelled = end("cancelled");
    u.onerror = end("error");
    if (hooks.start !== false) u.start();
    return snapshot(u);
}};

window.report = function (name) {{
    const rec = uploads[name];
    const copy = Object.assign({{}}, rec);
    delete copy.u;
    copy.now = snapshot(rec.u);
    return JSON.parse(JSON.stringify(copy));
}};
</script>
</body>
</html>
"""


class PageServer:
    """
    Serves the test page on its own loopback origin (another port than the
    Incoming!! server's, so every request of the library is cross-origin and
    goes through CORS). C{/?server=<origin>} names the Incoming!! server.
    """

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urlsplit(self.path)
                if url.path == "/favicon.ico":
                    self.send_response(204)
                    self.end_headers()
                    return
                if url.path != "/":
                    self.send_error(404)
                    return
                server = parse_qs(url.query).get("server", [""])[0]
                body = PAGE.format(server=server).encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.send_header("cache-control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = serve_on_loopback(Handler)

    @property
    def origin(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def page_url(self, incoming_server):
        return f"{self.origin}/?server={incoming_server.frontend}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class UploadPage:
    """
    One browser tab on the test page, as a test drives it.
    """

    def __init__(self, page, page_server):
        self.page = page
        self.page_server = page_server
        self.page_errors = []
        self.console = []
        self._cdp = None
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))

    def open(self, server):
        self.page.goto(self.page_server.page_url(server))
        assert self.page.evaluate("typeof incoming") == "object", self.console
        return self

    def reload(self):
        self.page.reload()
        assert self.page.evaluate("typeof incoming") == "object", self.console

    def throttle(self, upload_bytes_per_second=None, offline=False):
        """
        Emulate a slow uplink (None: full speed) or, with C{offline}, a lost
        network, through the DevTools protocol: going offline fails the
        requests in flight at once, and coming back fires the page's
        C{online} event.
        """
        if self._cdp is None:
            self._cdp = self.page.context.new_cdp_session(self.page)
            self._cdp.send("Network.enable")
        self._cdp.send(
            "Network.emulateNetworkConditions",
            {
                "offline": offline,
                "latency": 0,
                "downloadThroughput": -1,
                "uploadThroughput": upload_bytes_per_second or -1,
            },
        )

    def choose(self, *paths):
        """
        Put files into the page's file input, as a user choosing them does.
        """
        self.page.set_input_files("#files", [str(path) for path in paths])

    def upload(self, name, ticket, index=0, progress=None, start=True):
        """
        Make an uploader for file C{index} of the input (None: no file) and
        start it; C{progress}: JavaScript run at each onprogress (see PAGE).
        """
        hooks = {"start": start}
        if progress:
            hooks["progress"] = progress
        return self.page.evaluate(
            "([name, ticket, index, hooks]) => track(name, ticket, index, hooks)",
            [name, ticket, index, hooks],
        )

    def call(self, name, method, *args):
        """
        Call C{method} (start, pause, cancel) of an uploader.
        """
        return self.page.evaluate(
            "([name, method, args]) => { uploads[name].u[method](...args); return report(name); }",
            [name, method, list(args)],
        )

    def wait_until(self, name, condition, timeout=60):
        """
        Wait until the JavaScript expression C{condition}, with C{u} the
        uploader and C{rec} its record, is true.
        """
        self.page.wait_for_function(
            f"name => {{ const rec = uploads[name]; const u = rec.u; return {condition}; }}",
            arg=name,
            timeout=timeout * 1000,
            polling=50,
        )
        return self.report(name)

    def wait_for_outcome(self, name, timeout=120):
        return self.wait_until(name, "rec.outcome !== null", timeout)

    def report(self, name):
        return self.page.evaluate("name => report(name)", name)

    def evaluate(self, script, arg=None):
        return self.page.evaluate(script, arg)

    def dump(self, name):
        return json.dumps(self.report(name), indent=1)


# pytest fixtures, imported by the browser test modules.

import pytest  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def chromium():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page_server():
    server = PageServer()
    yield server
    server.close()


@pytest.fixture
def browser_page(chromium, page_server):
    """
    A fresh browser context and tab on the test page. A test fails if the
    page saw an uncaught exception: the library must report every problem
    through onerror.
    """
    context = chromium.new_context()
    page = context.new_page()
    upload_page = UploadPage(page, page_server)
    yield upload_page
    context.close()
    assert upload_page.page_errors == [], upload_page.page_errors

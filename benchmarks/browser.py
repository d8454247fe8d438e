"""
The browser measurement: one file sent from headless Chromium (Debian's, via
Playwright) to Incoming!!, once through incoming.js and once through
tus-js-client, on the same page. The page comes from its own loopback origin,
as a web app's page would, and loads incoming.js from the Incoming!! server.
"""

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from .servers import BENCH

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
TUS_JS = BENCH / "node_modules" / "tus-js-client" / "dist" / "tus.min.js"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Incoming!! browser benchmark</title>
<script src="{incoming}/incoming/frontend/incoming.js"></script>
<script src="/tus.min.js"></script>
</head><body><input type="file" id="file">
<script>
"use strict";
function theFile() {{ return document.getElementById("file").files[0]; }}

// Resolves with the milliseconds from the start to onfinished (the backend
// has taken the file: what a web app waits for) and the size of each chunk
// incoming.js sent (it sizes them by the connection's speed).
window.viaIncoming = function (ticket) {{
    return new Promise(function (resolve, reject) {{
        const started = performance.now();
        const u = incoming.Uploader(ticket, theFile());
        const chunks = [];
        let acked = 0, ackedChunks = 0;
        u.onprogress = function () {{
            if (u.chunks_acked_now > ackedChunks) {{
                chunks.push(u.bytes_acked - acked);
                ackedChunks = u.chunks_acked_now;
            }}
            acked = u.bytes_acked;
        }};
        u.onfinished = function () {{ resolve({{millis: performance.now() - started, chunks: chunks}}); }};
        u.onerror = function () {{
            if (u.error_code >= 10) reject(new Error(u.error_code + " " + u.error_msg));
        }};
        u.start();
    }});
}};

// Resolves with the milliseconds from the start to onSuccess (the last
// PATCH answered). tus-js-client's default is the whole file in one PATCH.
window.viaTusJs = function (ticket, endpoint, chunkSize) {{
    return new Promise(function (resolve, reject) {{
        const file = theFile();
        const started = performance.now();
        const upload = new tus.Upload(file, {{
            endpoint: endpoint,
            chunkSize: chunkSize || Infinity,
            metadata: {{ ticket: ticket, filename: file.name, filetype: "application/octet-stream" }},
            storeFingerprintForResuming: false,
            retryDelays: null,
            onSuccess: function () {{ resolve(performance.now() - started); }},
            onError: function (error) {{ reject(error); }},
        }});
        upload.start();
    }});
}};
</script></body></html>
"""


class PageServer:
    """
    Serves the benchmark page (``/?incoming=<Incoming!! base URL>``) and
    tus-js-client's bundle on 127.0.0.1.
    """

    def __init__(self):
        tus_js = TUS_JS.read_bytes()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/tus.min.js":
                    body, kind = tus_js, "text/javascript"
                elif not self.path.startswith("/?"):
                    self.send_error(404)
                    return
                else:
                    query = parse_qs(urlsplit(self.path).query)
                    body = PAGE.format(incoming=query["incoming"][0]).encode()
                    kind = "text/html; charset=utf-8"
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Browser:
    """
    One Chromium for all browser runs; each run gets a fresh page.
    """

    def __init__(self):
        from playwright.sync_api import sync_playwright

        self.pages = PageServer()
        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)

    def upload(self, client, path, server, ticket, chunk_size=0, timeout=600):
        """
        Send the file at C{path} with C{client} ("incoming.js" or
        "tus-js-client", in C{chunk_size} PATCHes or, with 0, one); the
        seconds the page measured.
        """
        page = self._browser.new_page()
        endpoint = server.uploads_url
        try:
            page.goto(self.pages.url + "?" + urlencode({"incoming": server.base}))
            page.wait_for_function("typeof incoming === 'object' && typeof tus === 'object'", timeout=30000)
            page.set_input_files("#file", str(path))
            page.set_default_timeout(timeout * 1000)
            if client == "incoming.js":
                result = page.evaluate("ticket => viaIncoming(ticket)", ticket)
                millis = result["millis"]
                # incoming.js sizes its chunks itself (by the connection's
                # speed, within the server's --chunk-size): say what it chose.
                sizes = [size / (1 << 20) for size in result["chunks"]]
                said = ", ".join(f"{size:.1f}" for size in sizes) if len(sizes) <= 6 else f"at most {max(sizes):.1f}"
                print(time.strftime("%H:%M:%S"), f"  incoming.js sent {len(sizes)} chunks, MiB: {said}",
                      file=sys.stderr, flush=True)
            else:
                millis = page.evaluate("([t, e, c]) => viaTusJs(t, e, c)", [ticket, endpoint, chunk_size])
            return millis / 1000
        finally:
            page.close()

    def close(self):
        self._browser.close()
        self._playwright.stop()
        self.pages.close()

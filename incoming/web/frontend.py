"""
The frontend (public listener): tus 1.0.0 with the upload ticket in
C{Upload-Metadata}, a state URL per upload that clients can wait on, and the
browser library C{incoming.js}.
"""

import re
from pathlib import Path
from urllib.parse import unquote_to_bytes

from klein import Klein
from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.web.static import File

from .. import tus
from ..errors import BadRequest, ClientError, Forbidden, NotFound, PreconditionFailed, UnsupportedMediaType
from ..receive import BodyReceiver
from .common import AppResource, add_error_handlers, answered_early, error_body, header, json_body, one_line

UPLOADS = "/incoming/frontend/uploads"
SCRIPT = Path(__file__).parent / "static" / "incoming.js"

# The two tus URLs whose requests may carry upload data (as routed_path
# gives them).
_UPLOAD_URL = re.compile(rb"/incoming/frontend/uploads/([^/]+)")
_CREATION_URL = re.compile(rb"/incoming/frontend/uploads/?")

# How long a client may wait on the state URL in one request.
MAX_WAIT = 60.0

_METHODS = "POST, GET, HEAD, PATCH, DELETE, OPTIONS"


def query(request, name, default=""):
    values = request.args.get(name.encode())
    return values[0].decode("utf-8", "replace") if values else default


def check_tus_version(request):
    version = header(request, "tus-resumable")
    if version != tus.VERSION:
        request.setHeader("tus-version", tus.VERSION)
        raise PreconditionFailed(
            f"Tus-Resumable {version[:40] if version else '(missing)'} is not supported; "
            f"this server speaks {tus.VERSION}"
        )


def routed_path(path):
    """
    A request's path as the app routes it: without the query, and
    percent-decoded as Twisted decodes it for Klein. What is decided before
    the app routes a request (whether its body is upload data, whether it
    speaks tus) is decided on this path too, so that C{%75ploads} is
    C{uploads} everywhere or nowhere.
    """
    return unquote_to_bytes(path.split(b"?", 1)[0])


def is_tus_request(request):
    path = routed_path(request.path)
    return (
        path.startswith(UPLOADS.encode())
        and not path.endswith(b"/state")
        and request.method not in (b"OPTIONS", b"GET")
    )


class Frontend:
    """
    The frontend app. L{resource} is what the public listener serves; its
    site also calls L{route_body} to stream upload data.
    """

    app = Klein()
    add_error_handlers(app)

    def __init__(self, uploads, config):
        self.uploads = uploads
        self.config = config

    def resource(self):
        return _FrontendResource(self, self.app.resource())

    # Streaming upload data

    def route_body(self, request, method, path, length):
        """
        A L{BodyReceiver} for requests whose body is upload data (tus PATCH,
        and POST with creation-with-upload), C{None} for any other request.
        """
        path = routed_path(path)
        if method == b"PATCH" and (match := _UPLOAD_URL.fullmatch(path)):
            upload_id = match.group(1).decode("ascii", "replace")
            return BodyReceiver(ensureDeferred(self._prepare_patch(request, upload_id, length)))
        if (
            method == b"POST"
            and _CREATION_URL.fullmatch(path)
            and length != 0
            and request.getHeader(b"content-type") == tus.OFFSET_CONTENT_TYPE.encode()
        ):
            return BodyReceiver(request.paced_start(lambda: self._prepare_creation(request, length)))
        return None

    def is_paced(self, method, path):
        """
        Whether a request is one to start a turn at a time (see
        L{incoming.service.UploadSite}): creations, which come in bursts
        when many uploads start at once. A creation without data is
        processed at the pacer's pace; one with data (see L{route_body})
        claims its ticket at that pace while its body waits.
        """
        return method == b"POST" and _CREATION_URL.fullmatch(routed_path(path)) is not None

    async def _prepare_patch(self, request, upload_id, length):
        check_tus_version(request)
        upload = self._claimed(upload_id)
        # Said on every answer to PATCH, errors included.
        self._expires(request, upload)
        content_type = header(request, "content-type")
        if content_type != tus.OFFSET_CONTENT_TYPE:
            raise UnsupportedMediaType(f"PATCH needs Content-Type {tus.OFFSET_CONTENT_TYPE}, not {content_type!r}")
        offset = tus.parse_count("Upload-Offset", header(request, "upload-offset"))
        if offset is None:
            raise BadRequest("PATCH needs an Upload-Offset header")
        upload_length = tus.parse_count("Upload-Length", header(request, "upload-length"))
        checksum = header(request, "upload-checksum")
        checksum = tus.parse_checksum(checksum) if checksum is not None else None
        return await self.uploads.begin_write(upload, offset, length, upload_length, checksum)

    async def _prepare_creation(self, request, length):
        check_tus_version(request)
        upload = await self._claim(request)
        if (
            upload.offset != 0
            or self.uploads.is_writing(upload)
            or upload.raw_metadata != (header(request, "upload-metadata") or "")
        ):
            # A repeated claim of an upload under way (whose first request
            # may still be sending, and goes on), or one for another file
            # (another page with the same ticket): its data is dropped. The
            # answer says the offset, and the metadata the upload was created
            # with, for the client to tell whether it is its own.
            return None
        return await self.uploads.begin_write(upload, 0, length, None, None)

    # tus

    def _claimed(self, upload_id):
        upload = self.uploads.get(upload_id)
        if upload.state == "ticketed":
            raise NotFound(f"upload {upload_id} has not been created yet (claim the ticket with POST)")
        if upload.state in ("cancelled", "failed"):
            raise upload.not_allowed("continue")
        return upload

    async def _claim(self, request):
        """
        The upload a creation request (POST) makes or claims: the ticket's
        upload, a partial upload, or a final upload assembled from partial
        ones (tus concatenation).
        """
        if request.claimed is None:
            request.claimed = await self._create(request)
        return request.claimed

    async def _create(self, request):
        raw_metadata = header(request, "upload-metadata") or ""
        metadata = tus.parse_metadata(raw_metadata)
        concat = tus.parse_concat(header(request, "upload-concat"))
        ticket = await self._ticket(metadata.pop("ticket", ""), partial=concat == "partial")
        filename = metadata.pop("filename", "") or metadata.get("name", "")
        mimetype = metadata.pop("filetype", "") or metadata.get("type", "")
        if concat.startswith("final;"):
            if header(request, "upload-length") is not None:
                raise BadRequest("a final upload takes no Upload-Length: it is the sum of its parts")
            part_ids = [tus.upload_id_from_url(url) for url in concat[len("final;") :].split()]
            return await self.uploads.claim_final(
                ticket, part_ids, concat, filename, mimetype, metadata, raw_metadata
            )
        length = tus.parse_count("Upload-Length", header(request, "upload-length"))
        deferred = header(request, "upload-defer-length")
        if deferred is not None and deferred.strip() != "1":
            raise BadRequest("Upload-Defer-Length must be 1")
        if (length is None) == (deferred is None):
            raise BadRequest("give either Upload-Length or Upload-Defer-Length: 1")
        if concat == "partial":
            if length is None:
                raise BadRequest("a partial upload needs its Upload-Length")
            return await self.uploads.create_partial(ticket, length, raw_metadata)
        return await self.uploads.claim(ticket, length, filename, mimetype, metadata, raw_metadata)

    async def _ticket(self, ticket, partial):
        """
        The ticket's upload; without a ticket, in ticketless mode, a fresh
        ticket (none for a partial upload, which is never handed over).
        """
        if ticket:
            return self.uploads.ticket(ticket)
        if not self.config.ticketless_handover:
            raise Forbidden("an upload ticket is required: Upload-Metadata key 'ticket'")
        return None if partial else await self.uploads.ticketless()

    @app.route(UPLOADS + "/", methods=["POST"], strict_slashes=False)
    async def create(self, request):
        if request.body_receiver is not None:
            await request.body_receiver.outcome
        upload = await self._claim(request)
        request.setHeader("location", self._url(request, upload.id))
        # The offset and metadata, with or without data, as a HEAD would
        # give them: a client that claims again (a lost answer, a reloaded
        # page) checks that the upload is its file's and goes on from the
        # server's offset, one round trip sooner than after a HEAD. (A claim
        # with data has just stored what it carried.)
        if request.body_receiver is None:
            await self.uploads.settled(upload)
        request.setHeader("upload-offset", str(self.uploads.offset(upload)))
        if upload.raw_metadata:
            request.setHeader("upload-metadata", upload.raw_metadata)
        self._expires(request, upload)
        request.setResponseCode(201)
        return b""

    @app.route(UPLOADS + "/<upload_id>", methods=["HEAD"])
    async def head(self, request, upload_id):
        upload = self._claimed(upload_id)
        await self.uploads.settled(upload)
        request.setHeader("upload-offset", str(self.uploads.offset(upload)))
        if upload.length is None:
            request.setHeader("upload-defer-length", "1")
        else:
            request.setHeader("upload-length", str(upload.length))
        if upload.raw_metadata:
            request.setHeader("upload-metadata", upload.raw_metadata)
        if upload.concat:
            request.setHeader("upload-concat", upload.concat)
        self._expires(request, upload)
        return b""

    @app.route(UPLOADS + "/<upload_id>", methods=["PATCH"])
    async def patch(self, request, upload_id):
        await request.body_receiver.outcome
        upload = self.uploads.get(upload_id)
        request.setHeader("upload-offset", str(self.uploads.offset(upload)))
        self._expires(request, upload)
        request.setResponseCode(204)
        return b""

    @app.route(UPLOADS + "/<upload_id>", methods=["DELETE"])
    async def delete(self, request, upload_id):
        upload = self.uploads.get(upload_id)
        reason = one_line(query(request, "reason")) or "cancelled by the user"
        await self.uploads.cancel_by_frontend(upload, reason)
        request.setResponseCode(204)
        return b""

    # Beyond tus

    @app.route(UPLOADS + "/<upload_id>/state", methods=["GET"])
    async def state(self, request, upload_id):
        """
        The upload's state as JSON. With C{known=<state>&wait=<seconds>} the
        answer waits until the state is another one (or the time is up), so
        a client learns of the handover's end without tight polling.
        """
        upload = self.uploads.get(upload_id)
        known = query(request, "known")
        try:
            wait = min(MAX_WAIT, max(0.0, float(query(request, "wait", "0"))))
        except ValueError:
            raise BadRequest("wait must be a number of seconds")
        if known and wait:
            waiting = self.uploads.watch(upload, known, wait)
            request.notifyFinish().addErrback(lambda _: waiting.cancel())
            try:
                await waiting
            except CancelledError:
                return b""  # the client went away
        await self.uploads.settled(upload)
        request.setHeader("cache-control", "no-store")
        return json_body(request, self.uploads.status(upload))

    @app.route("/incoming/frontend/incoming.js", methods=["GET"])
    def script(self, request):
        request.setHeader("cache-control", "no-cache")
        # The script is small enough to send whole every time, and Twisted's
        # answer to many ranges stalls and keeps the file open for good.
        request.requestHeaders.removeHeader(b"range")
        return File(str(SCRIPT), defaultType="application/javascript")

    # Helpers

    def _url(self, request, upload_id):
        """
        The absolute URL of an upload, as the client reaches this server:
        behind a reverse proxy (with --behind-proxy), as the proxy says.
        """
        scheme = "https" if request.isSecure() else "http"
        host = header(request, "host")
        if self.config.behind_proxy:
            forwarded = tus.parse_forwarded(header(request, "forwarded"))
            scheme = (
                forwarded.get("proto") or _first(header(request, "x-forwarded-proto")) or scheme
            )
            host = forwarded.get("host") or _first(header(request, "x-forwarded-host")) or host
        if not host:
            return f"{UPLOADS}/{upload_id}"
        return f"{scheme}://{host}{UPLOADS}/{upload_id}"

    def _expires(self, request, upload):
        expires = self.uploads.expires(upload)
        if expires is not None:
            request.setHeader("upload-expires", tus.http_date(expires))

    def options_headers(self, request):
        request.setHeader("tus-version", tus.VERSION)
        request.setHeader("tus-extension", ",".join(tus.EXTENSIONS))
        request.setHeader("tus-checksum-algorithm", ",".join(tus.CHECKSUM_ALGORITHMS))
        if self.config.max_size:
            request.setHeader("tus-max-size", str(self.config.max_size))
        if self.config.chunk_size:
            # The largest chunk incoming.js may send (none when absent).
            request.setHeader("incoming-chunk-size", str(self.config.chunk_size))

    def cors_headers(self, request):
        try:
            origin = header(request, "origin")
        except BadRequest:
            return  # no origin that could be allowed
        if not origin:
            return
        allowed = self.config.cors_origins
        if "*" in allowed:
            request.setHeader("access-control-allow-origin", "*")
        elif origin in allowed:
            request.setHeader("access-control-allow-origin", origin)
            request.setHeader("vary", "Origin")
        else:
            return
        request.setHeader("access-control-expose-headers", ", ".join(tus.RESPONSE_HEADERS))
        if request.method == b"OPTIONS" and request.getHeader(b"access-control-request-method"):
            request.setHeader("access-control-allow-methods", _METHODS)
            request.setHeader("access-control-allow-headers", ", ".join(tus.REQUEST_HEADERS))
            request.setHeader("access-control-max-age", "86400")


def _first(value):
    """
    The first of a comma-separated list of values (the client end of a
    chain of proxies), or C{None}.
    """
    if not value:
        return None
    return value.split(",")[0].strip() or None


class _FrontendResource(AppResource):
    """
    Adds what every frontend answer needs (CORS, C{Tus-Resumable}), answers
    OPTIONS (tus discovery and CORS preflight alike), and checks the tus
    version before the Klein app routes the request.
    """

    def __init__(self, frontend, routes):
        super().__init__(routes)
        self._frontend = frontend

    def render(self, request):
        self._frontend.cors_headers(request)
        request.setHeader("tus-resumable", tus.VERSION)
        if request.method == b"HEAD":
            # Also on errors: no cache may keep an offset or its absence.
            request.setHeader("cache-control", "no-store")
        if request.method == b"OPTIONS":
            self._frontend.options_headers(request)
            request.setResponseCode(204)
            return b""
        if is_tus_request(request):
            try:
                check_tus_version(request)
            except ClientError as e:
                answered_early(request)
                return error_body(request, e.code, e.message)
        return super().render(request)

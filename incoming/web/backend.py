"""
The backend API (served on the private backend listener only), compatible
with Incoming!! 0.1: the same calls, parameter names and defaults, under
C{/incoming/backend/} and the alias C{/incoming/0.1/backend/}.
"""

from urllib.parse import urlsplit

from klein import Klein

from .. import tus
from ..errors import BadRequest, TooLarge
from .common import add_error_handlers, json_body, one_line, text_body

NEW = "/incoming/backend"
OLD = "/incoming/0.1/backend"  # the path of Incoming!! 0.1, for its backends

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


def param(request, name, default=None):
    """
    A form value (query string or urlencoded body), as text.
    """
    values = request.args.get(name.encode())
    if not values:
        if default is None:
            raise BadRequest(f"missing parameter {name}")
        return default
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"parameter {name} is not UTF-8 text")


def boolean_param(request, name, default):
    value = param(request, name, default).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"parameter {name} must be true or false, not {value[:40]!r}")


def url_param(request, name):
    url = param(request, name).strip()
    try:
        parts = urlsplit(url)
        absolute = parts.scheme in ("http", "https") and parts.hostname
    except ValueError:  # such as a bracketed host that is no IP address
        absolute = False
    if not absolute:
        raise BadRequest(f"parameter {name} must be an absolute http or https URL")
    return url


class BackendAPI:
    app = Klein()
    add_error_handlers(app)

    def __init__(self, uploads):
        self.uploads = uploads

    def _checked(self, request):
        if getattr(request, "body_too_large", False):
            raise TooLarge("request body too large")

    def _upload(self, request, upload_id=None):
        self._checked(request)
        return self.uploads.get_for_backend(
            upload_id or param(request, "id"), param(request, "backendSecret", "")
        )

    @app.route(NEW + "/new_upload", methods=["POST"])
    @app.route(OLD + "/new_upload", methods=["POST"])
    async def new_upload(self, request):
        self._checked(request)
        signal_finish_url = url_param(request, "signalFinishURL")
        dest_type = param(request, "destType", "file")
        if dest_type != "file":
            raise BadRequest(f"destType {dest_type!r} is not supported (only 'file')")
        remove = boolean_param(request, "removeFileWhenFinished", "true")
        secret = param(request, "backendSecret", "")
        max_size = tus.parse_count("parameter maxSize", param(request, "maxSize", "0"))
        upload = await self.uploads.new_ticket(signal_finish_url, remove, secret, max_size)
        return text_body(request, upload.id)

    @app.route(NEW + "/cancel_upload", methods=["POST"])
    @app.route(OLD + "/cancel_upload", methods=["POST"])
    async def cancel_upload(self, request):
        upload = self._upload(request)
        reason = one_line(param(request, "reason", "")) or "cancelled by the backend"
        await self.uploads.cancel_by_backend(upload, reason)
        return text_body(request, "ok")

    @app.route(NEW + "/finish_upload", methods=["POST"])
    @app.route(OLD + "/finish_upload", methods=["POST"])
    async def finish_upload(self, request):
        upload = self._upload(request)
        await self.uploads.finish_by_backend(upload)
        return text_body(request, "ok")

    @app.route(NEW + "/upload/<upload_id>", methods=["GET"])
    @app.route(OLD + "/upload/<upload_id>", methods=["GET"])
    async def status(self, request, upload_id):
        upload = self._upload(request, upload_id)
        await self.uploads.settled(upload)
        return json_body(request, self.uploads.status(upload))


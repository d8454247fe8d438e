"""
What the backend and frontend web apps share: answers in plain text or
JSON, and error handling that turns every failure into a one-line message.
"""

import json
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.web.resource import Resource
from werkzeug.exceptions import BadHost, HTTPException

from ..errors import BadRequest, ClientError

log = Logger()


def header(request, name):
    """
    A request header as text, C{None} when absent.

    @raise BadRequest: when it is not ASCII, as HTTP header values of
        Incoming!!'s protocols always are.
    """
    value = request.getHeader(name.encode("ascii"))
    if value is None:
        return None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest(f"header {name} must be ASCII")


def one_line(text, limit=500):
    """
    C{text} given by a client (such as a cancel reason) as one line of at
    most C{limit} characters: it is said again in answers, in headers and
    in the log, which are one line each.
    """
    printable = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(printable.split())[:limit]


def wants_json(request):
    accept = request.getHeader(b"accept") or b""
    return b"application/json" in accept.lower()


def json_body(request, value, code=200):
    request.setResponseCode(code)
    request.setHeader("content-type", "application/json")
    return json.dumps(value).encode()


def text_body(request, text, code=200):
    request.setResponseCode(code)
    request.setHeader("content-type", "text/plain; charset=utf-8")
    return text.encode()


def error_body(request, code, message):
    """
    An error answer: the message alone on one line, or C{{"error": message}}
    for a client that accepts JSON.
    """
    if request.method == b"HEAD":
        # No body, but say it where a client can read it.
        request.setHeader("incoming-error", message.encode("ascii", "replace"))
    if wants_json(request):
        return json_body(request, {"error": message}, code)
    return text_body(request, message, code)


def answered_early(request):
    """
    The request is answered without its handler: a body receiver it may have
    has nobody to read its verdict, which is the same or moot.
    """
    receiver = getattr(request, "body_receiver", None)
    if receiver is not None:
        receiver.outcome.addErrback(lambda _: None)


def add_error_handlers(app):
    """
    Make C{app} answer client errors with their code and message, unknown
    URLs and methods with 404 and 405, and anything unexpected with a 500
    that says it was logged (the traceback goes to the log, not the client).
    URLs are matched as given: no redirects (which tus clients do not
    follow) for doubled slashes.
    """
    app.url_map.merge_slashes = False

    @app.handle_errors(ClientError)
    def client_error(_instance, request, failure):
        answered_early(request)
        return error_body(request, failure.value.code, failure.value.message)

    @app.handle_errors(HTTPException)
    def routing_error(_instance, request, failure):
        answered_early(request)
        error = failure.value
        if error.code == 404:
            message = f"no such URL: {request.path.decode('latin-1')}"
        elif error.code == 405:
            message = f"method {request.method.decode('latin-1')} not allowed here"
        else:
            message = error.description or error.name
        return error_body(request, error.code, message)

    @app.handle_errors(Exception)
    def unexpected(_instance, request, failure):
        answered_early(request)
        log.failure("error while serving {method} {path}", failure, method=request.method, path=request.path)
        return error_body(request, 500, "internal server error (logged)")


class AppResource(Resource):
    """
    Serves a Klein app, answering first what Klein would answer in HTML or
    not at all: a URL that is not UTF-8 text.
    """

    isLeaf = True

    def __init__(self, routes):
        super().__init__()
        self._routes = routes

    def render(self, request):
        try:
            unquote_to_bytes(request.uri).decode("utf-8")
            (request.getHeader(b"host") or b"").decode("utf-8")
        except UnicodeDecodeError:
            answered_early(request)
            return error_body(request, 400, "the URL or Host header is not valid UTF-8")
        try:
            return self._routes.render(request)
        except BadHost:
            # Raised by the URL map before any error handler is in place.
            answered_early(request)
            return error_body(request, 400, "the Host header is not a valid host name")

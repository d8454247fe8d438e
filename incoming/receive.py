"""
The streaming body receiver.

Twisted's web server normally collects a request body whole (in memory or a
temporary file) before any resource sees it. L{UploadRequest} instead asks
the site, as soon as the headers are in, whether the body is upload data; if
so, every chunk read from the socket goes to a L{BodyReceiver}, which hands
it in batches to a worker thread that digests it and appends it to the
upload's file. While the writer is behind, the connection is paused, so
memory stays bounded whatever the upload size. The resource that answers the
request then only waits for L{BodyReceiver.outcome}.
"""

import io

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server

from .errors import ClientError

# Non-upload requests (backend API forms, small JSON) never need more.
MAX_PLAIN_BODY = 256 * 1024


class UploadRequest(server.Request):
    """
    A request whose body, when it carries upload data, is streamed to
    storage instead of being buffered.

    The site decides through its C{route_body(request, method, path, length)}
    method, which returns a L{BodyReceiver} or C{None}.
    """

    body_receiver = None
    body_too_large = False
    claimed = None
    # Answers here are text or JSON and say so; never guess text/html.
    defaultContentType = None

    def _effective_method(self, command):
        """
        The method to serve: C{X-HTTP-Method-Override} when given (for
        clients that cannot send PATCH or DELETE), else the request's own.
        """
        override = self.requestHeaders.getRawHeaders(b"x-http-method-override")
        if override and override[0].strip():
            return override[0].strip().upper()
        return command

    def gotLength(self, length):
        route = getattr(self.channel.site, "route_body", None)
        receiver = None
        if route is not None:
            # Method and path are parsed by the channel but only handed to
            # the request once the body is complete; the channel is the one
            # place that knows them now.
            method = self._effective_method(self.channel._command)
            receiver = route(self, method, self.channel._path, length)
        if receiver is not None:
            self.body_receiver = receiver
            receiver.attach(self.channel.transport)
            self.content = io.BytesIO()
        elif length is not None and length > MAX_PLAIN_BODY:
            self.body_too_large = True
            self.content = io.BytesIO()
        else:
            super().gotLength(length)

    def handleContentChunk(self, data):
        if self.body_receiver is not None:
            self.body_receiver.dataReceived(data)
        elif self.body_too_large:
            pass
        elif self.content.tell() + len(data) > MAX_PLAIN_BODY:
            # A chunked body that turns out too large: stop keeping it.
            self.body_too_large = True
            self.content = io.BytesIO()
        else:
            self.content.write(data)

    def requestReceived(self, command, path, version):
        if self.body_receiver is not None:
            self.body_receiver.bodyEnded()
        if self.body_too_large:
            # Keep Twisted from parsing a form out of the discarded body.
            self.requestHeaders.removeHeader(b"content-type")
        super().requestReceived(self._effective_method(command), path, version)

    def connectionLost(self, reason):
        if self.body_receiver is not None:
            self.body_receiver.connectionLost()
            # Nobody may be left to answer (the client is gone before its
            # body was): what was stored is kept, the verdict has no reader.
            self.body_receiver.outcome.addErrback(lambda _: None)
        super().connectionLost(reason)


class BodyReceiver:
    """
    Takes one request body, chunk by chunk, to a write session of an upload.

    The write session (see L{incoming.uploads.WriteSession}) arrives as the
    result of a L{Deferred}: claiming an upload or taking over from a stale
    writer may take a moment, and the chunks that come in meanwhile wait here
    (the connection is paused once they pass the high-water mark). If the
    Deferred fails with a L{ClientError}, the body is read and dropped and the
    error is the outcome.

    @ivar outcome: fires with the session's result once the body has ended
        (or the connection was lost) and every byte is stored; fails with the
        L{ClientError} that refused or stopped the upload.
    """

    log = Logger()

    # Bytes waiting for the writer before the connection is paused, and the
    # level at which it is resumed. A batch is at most high_water bytes.
    high_water = 4 << 20
    low_water = 1 << 20

    def __init__(self, session_ready):
        self.outcome = Deferred()
        self._session = None
        self._error = None
        self._discard = False
        self._pending = []
        self._pending_bytes = 0
        self._writing = False
        self._body_over = False
        self._complete = False
        self._finished = False
        self._transport = None
        self._paused = False
        session_ready.addCallbacks(self._session_ready, self._refused)

    @property
    def dropped(self):
        """
        Whether the connection ended before the body did.
        """
        return self._body_over and not self._complete

    def attach(self, transport):
        self._transport = transport

    def abort(self):
        """
        Drop the connection (a newer request takes over this upload). The
        bytes received so far are kept.
        """
        if self._transport is not None and not self._body_over:
            self._transport.abortConnection()

    # Events from the request.

    def dataReceived(self, data):
        if self._discard:
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= self.high_water:
            self._pause()
        self._pump()

    def bodyEnded(self):
        self._body_over = True
        self._complete = True
        self._pump()

    def connectionLost(self):
        if self._body_over:
            return
        self._body_over = True
        self._pump()

    # The pipeline.

    def _session_ready(self, session):
        if session is None:
            # Nothing to write (the data is already there): drop the body.
            self._stop(None)
        else:
            self._session = session
            session.receiver = self
        self._resume()
        self._pump()

    def _refused(self, failure):
        self._stop(_client_error(failure, "accepting the upload data failed"))
        self._resume()
        self._pump()

    def _stop(self, error):
        """
        Keep what was written, drop the rest of the body.
        """
        if self._error is None:
            self._error = error
        self._discard = True
        self._pending = []
        self._pending_bytes = 0

    def _pump(self):
        if self._writing:
            return
        if self._pending and self._session is not None and not self._discard:
            self._write_batch()
        elif self._body_over and (self._session is not None or self._discard):
            self._finish()

    def _write_batch(self):
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        room = self._session.limit - self._session.written
        if sum(map(len, batch)) > room:
            batch = _first_bytes(batch, room)
            self._stop(self._session.too_large())
        self._writing = True
        d = deferToThread(self._session.write, batch)
        d.addCallbacks(self._written, self._write_failed)

    def _written(self, _):
        self._writing = False
        if self._pending_bytes <= self.low_water:
            self._resume()
        self._pump()

    def _write_failed(self, failure):
        self._writing = False
        self._stop(_client_error(failure, "storing upload data failed"))
        self._resume()
        self._pump()

    def _finish(self):
        if self._finished or not self._body_over:
            return
        self._finished = True
        if self._session is None:
            if self._error is None:
                self.outcome.callback(None)
            else:
                self.outcome.errback(Failure(self._error))
            return
        d = self._session.close(self._complete, self._error)
        d.chainDeferred(self.outcome)

    def _pause(self):
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pauseProducing()

    def _resume(self):
        if self._paused:
            self._paused = False
            self._transport.resumeProducing()


def _client_error(failure, what):
    """
    The L{ClientError} in C{failure}, or for anything unexpected a logged
    failure and a plain 500 error.
    """
    if failure.check(ClientError):
        return failure.value
    BodyReceiver.log.failure(what, failure)
    return ClientError("internal server error (logged)", 500)


def _first_bytes(buffers, count):
    """
    The first C{count} bytes of C{buffers}, as a list of buffers.
    """
    kept = []
    for buffer in buffers:
        if count <= 0:
            break
        kept.append(buffer[:count])
        count -= len(buffer)
    return kept

"""
Builds the server from a L{Config}: storage, registry, the uploads service,
and the two listeners (public frontend, private backend API).
"""

import gc

from twisted.application.service import MultiService, Service
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.server import Site

from .config import Options
from .handover import Backend
from .pacing import TurnPacer
from .receive import UploadRequest
from .registry.files import FileRegistry
from .storage.local import LocalStorage
from .uploads import Uploads
from .web.backend import BackendAPI
from .web.common import AppResource
from .web.frontend import Frontend

__all__ = ["Options", "makeService", "build"]


class UploadChannel(HTTPChannel):
    """
    The HTTP connection of both listeners. A request line or header line
    longer than Twisted allows, or a request Twisted cannot parse, gets an
    answer that says so; Twisted itself would close the connection without a
    word, or with a bare status line. While an upload body comes
    in, the idle timeout (C{--receive-timeout}) counts only the time the
    server was reading from the connection: an upload that waits its turn
    to read, behind thousands of others, is not dropped for the wait.
    """

    def timeoutConnection(self):
        silence = self._upload_silence()
        if silence is None or silence.seconds() >= self.timeOut:
            super().timeoutConnection()
        elif silence.held:
            # No timer while the server holds the connection.
            silence.when_released(self._time_rest_of_silence)
        else:
            self._time_rest_of_silence()

    def _time_rest_of_silence(self):
        """
        Look again when the client can have been silent for the whole
        period, if its upload body is still coming in.
        """
        silence = self._upload_silence()
        if silence is not None:
            period = self.timeOut
            self.setTimeout(period - silence.seconds())
            # Data from the client starts a full period again.
            self.timeOut = period

    def _upload_silence(self):
        """
        The L{ClientSilence} of the upload body coming in, or C{None}.
        """
        receiver = getattr(self.requests[-1], "body_receiver", None) if self.requests else None
        if receiver is None or not receiver.receiving:
            return None
        return receiver.silence

    def lineLengthExceeded(self, line):
        self._answer_and_close(
            b"431 Request Header Fields Too Large", f"request line or header longer than {self.MAX_LENGTH} bytes"
        )

    def _respondToBadRequestAndDisconnect(self):
        # Twisted's answer to a request it cannot parse (bad request line,
        # bad or conflicting headers, too many of them, a malformed chunked
        # or multipart body) is a bare status line: say what was wrong.
        # Twisted passes no reason; it is read from the parser's state (the
        # limits it checks, and whether it was reading the head or the body).
        if self._receivedHeaderSize > self.totalHeadersSize:
            reason = f"request line and headers longer than {self.totalHeadersSize} bytes in all"
        elif self._receivedHeaderCount > self.maxHeaders:
            reason = f"more than {self.maxHeaders} request headers"
        elif self.line_mode:
            reason = "malformed request line or header"
        else:
            # The headers were accepted; the body was not.
            reason = "malformed request body"
        self._answer_and_close(b"400 Bad Request", reason)

    def _maybeChooseTransferDecoder(self, header, data):
        # Twisted reads Content-Length with int(), which refuses more than
        # 4300 digits: the ValueError escaped from headerReceived, the client
        # got no answer and the log a traceback. False stops the request.
        try:
            return super()._maybeChooseTransferDecoder(header, data)
        except ValueError:
            self._respondToBadRequestAndDisconnect()
            return False

    def _answer_and_close(self, status, message):
        """
        Answer with C{status} and the one-line C{message} as plain text, then
        close the connection. (No response has started: Twisted parses no
        request while one is being answered.)
        """
        body = message.encode()
        self.transport.write(
            b"HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, len(body), body)
        )
        self.loseConnection()


class UploadSite(Site):
    """
    A site whose requests stream upload data to storage (see
    L{UploadRequest}) and that keeps per-request access lines out of the log:
    the log tells upload events, one line each.
    """

    protocol = UploadChannel
    requestFactory = UploadRequest
    noisy = False
    # How many of the requests C{is_paced} picks start in one turn of the
    # reactor; the rest wait for the turns after, first come first served.
    # 500 uploads created at once, all started in the same few turns, held
    # the reactor thread for 40-150 ms at a time while their creations, then
    # their answers, then their PATCHes went through, and the requests of
    # uploads already going waited behind them (HEAD p99 62-83 ms; 24-32 ms
    # with eight per turn, at the same MB/s).
    paced_per_turn = 8

    def __init__(self, resource, route_body=None, is_paced=None, timeout=None):
        super().__init__(resource, timeout=timeout)
        self.route_body = route_body
        self.is_paced = is_paced
        self.pacer = TurnPacer(reactor, self.paced_per_turn) if is_paced is not None else None

    def log(self, request):
        pass


class Listener(Service):
    """
    Listens on an endpoint string and says where in the log. A listener that
    cannot start (port taken, bad description) stops the server at once.
    """

    log = Logger()

    def __init__(self, name, description, factory):
        self.name = name
        self.description = description
        self.factory = factory
        self.port = None

    def privilegedStartService(self):
        super().privilegedStartService()
        failures = []
        endpoint = serverFromString(reactor, self.description)
        endpoint.listen(self.factory).addCallbacks(self._listening, failures.append)
        if failures:
            failures[0].raiseException()

    def _listening(self, port):
        self.port = port
        address = port.getHost()
        self.log.info(
            "{name} listening on {host}:{port}",
            name=self.name,
            host=getattr(address, "host", address),
            port=getattr(address, "port", ""),
        )

    def stopService(self):
        super().stopService()
        if self.port is not None:
            return self.port.stopListening()


def build(config):
    """
    The whole server as one service.
    """
    storage = LocalStorage(config.storage)
    registry = FileRegistry(config.storage, reactor)
    backend = Backend(reactor, config.handover_timeout, config.handover_retry_period)
    uploads = Uploads(config, storage, registry, backend, reactor)
    frontend = Frontend(uploads, config)

    top = MultiService()
    # Started first and stopped last: the saves of the others' last moves land.
    registry.setServiceParent(top)
    uploads.setServiceParent(top)
    frontend_site = UploadSite(
        frontend.resource(), frontend.route_body, frontend.is_paced, timeout=config.receive_timeout
    )
    Listener("frontend", config.frontend, frontend_site).setServiceParent(top)
    backend_site = UploadSite(AppResource(BackendAPI(uploads).app.resource()), timeout=config.receive_timeout)
    Listener("backend", config.backend, backend_site).setServiceParent(top)
    return top


def _freeze_startup_objects():
    """
    Keep what exists once the server has started (modules, classes, the
    restored uploads) out of the garbage collector's full collections.

    They live as long as the process, yet every full collection walked all
    of them again: about 60,000 objects, which paused the reactor thread for
    30-40 ms each time, and every request waiting on it. Frozen objects are
    still freed when nothing refers to them any more.
    """
    gc.collect()
    gc.freeze()


def makeService(options):
    reactor.callWhenRunning(_freeze_startup_objects)
    return build(options["app_config"])

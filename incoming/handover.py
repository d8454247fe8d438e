"""
Calls from Incoming!! to the backend's signalFinishURL: the handover of a
finished file and the notice of a cancelled upload, with retries.
"""

import json
import random
from http.cookiejar import DefaultCookiePolicy

from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.internet import task
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.error import ConnectionClosed
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseNeverReceived,
    _HTTP11ClientFactory,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory
from zope.interface import implementer


def _connection_closed_under(error):
    """
    Whether a POST failed because the backend closed the connection it went
    out on before answering (not because the POST was cancelled).
    """
    if isinstance(error, RequestNotSent):
        return True
    if isinstance(error, (RequestTransmissionFailed, ResponseNeverReceived)):
        return all(reason.check(ConnectionClosed) for reason in error.reasons)
    return False


class HandoverFailed(Exception):
    """
    One attempt to reach the backend did not get a usable answer.
    """


# The longest answer read from the backend, which needs only "done" or
# "wait": a longer one (a proxy's error page, a backend streaming without
# end) is not read further, so that it costs neither memory nor reading
# time, on every retry.
MAX_ANSWER = 64 * 1024


class _AnswerTooLong(Exception):
    pass


class _Answer(Protocol):
    """
    Reads the body of the backend's answer into L{finished}, or fails it
    with L{_AnswerTooLong} and closes the connection as soon as the body
    says (Content-Length) or turns out to be longer than L{MAX_ANSWER}.
    Cancelling L{finished} (the attempt timed out) closes the connection
    too, rather than reading on.
    """

    def __init__(self, length):
        self._length = length
        self._chunks = []
        self._size = 0
        self.finished = Deferred(lambda finished: self.transport.loseConnection())

    def connectionMade(self):
        if self._length is not UNKNOWN_LENGTH and self._length > MAX_ANSWER:
            self._too_long()

    def dataReceived(self, data):
        if self.finished.called:
            return
        self._size += len(data)
        if self._size > MAX_ANSWER:
            self._too_long()
        else:
            self._chunks.append(data)

    def connectionLost(self, reason):
        if self.finished.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self._chunks))
        else:
            self.finished.errback(reason)

    def _too_long(self):
        self._chunks = []
        self.transport.loseConnection()
        self.finished.errback(_AnswerTooLong())


class _QuietFactory(_HTTP11ClientFactory):
    # One log line per connection to the backend says nothing the handover
    # lines do not already say.
    noisy = False


@implementer(IAgentEndpointFactory)
class _BackendEndpoints:
    """
    Where the handover connects: straight to the address when the backend's
    URL names one (the common case, a backend on the same machine or
    network), through name resolution otherwise.

    Twisted's agent resolves every host, IP addresses included, through a
    L{HostnameEndpoint}, which defines a new class on each connect; the
    interface bookkeeping for that class took a seventh of the reactor
    thread's time when hundreds of uploads were handed over at once.
    """

    def __init__(self, reactor, timeout):
        self._reactor = reactor
        self._timeout = timeout
        self._tls = BrowserLikePolicyForHTTPS()

    def endpointForURI(self, uri):
        host = uri.host.decode("ascii")
        if isIPAddress(host):
            endpoint = TCP4ClientEndpoint(self._reactor, host, uri.port, timeout=self._timeout)
        elif isIPv6Address(host):
            endpoint = TCP6ClientEndpoint(self._reactor, host, uri.port, timeout=self._timeout)
        else:
            endpoint = HostnameEndpoint(self._reactor, host, uri.port, timeout=self._timeout)
        if uri.scheme == b"http":
            return endpoint
        if uri.scheme == b"https":
            return wrapClientTLS(self._tls.creatorForNetloc(uri.host, uri.port), endpoint)
        raise SchemeNotSupported(f"unsupported scheme: {uri.scheme.decode('ascii', 'replace')}")


class Backend:
    """
    The backend as Incoming!! sees it: one POST per attempt, form-encoded,
    with the fields of the original Incoming!! server and a few more.
    """

    log = Logger()

    # Retry delays: first_delay, doubled per attempt up to max_delay, each
    # scaled by a random factor in [0.5, 1] so that many uploads whose
    # backend came back do not all retry at the same instant.
    first_delay = 1.0
    max_delay = 300.0
    # Idle connections kept open to each backend: about as many as
    # handovers in flight when hundreds of uploads finish at once.
    connections_kept = 8

    def __init__(self, reactor, request_timeout, retry_period):
        self._reactor = reactor
        self._timeout = request_timeout
        self._retry_period = retry_period
        # Connections are kept open for the next call: when hundreds of
        # uploads finish at once, connecting anew for each handover took a
        # twentieth of the reactor thread's time. The pool drops a
        # connection as soon as the backend closes it, and a POST that
        # went out on one the backend was closing at that instant is sent
        # again at once (see _post).
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = self.connections_kept
        self._pool._factory = _QuietFactory
        endpoints = _BackendEndpoints(reactor, request_timeout)
        # A cookie the backend sets in one answer would otherwise go back
        # with every later handover, whoever's upload it is.
        no_cookies = IndexableCookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        agent = Agent.usingEndpointFactory(reactor, endpoints, pool=self._pool)
        self._http = HTTPClient(agent, cookiejar=no_cookies)

    def close(self):
        return self._pool.closeCachedConnections()

    def handover_fields(self, upload, location):
        return {
            "id": upload.id,
            "filename": location,
            "filenameFromBrowser": upload.filename,
            "backendSecret": upload.backend_secret,
            "cancelled": "no",
            "cancelReason": "",
            "size": str(upload.offset),
            "mimetype": upload.mimetype,
            "sha256": upload.sha256,
            "metadata": json.dumps(upload.metadata),
        }

    def cancel_fields(self, upload):
        return {
            "id": upload.id,
            "filename": "",
            "filenameFromBrowser": upload.filename,
            "backendSecret": upload.backend_secret,
            "cancelled": "yes",
            "cancelReason": upload.cancel_reason,
            "size": str(upload.offset),
            "mimetype": upload.mimetype,
            "sha256": "",
            "metadata": json.dumps(upload.metadata),
        }

    def post(self, upload, fields):
        """
        One attempt: POST C{fields} to the upload's signalFinishURL.

        @return: a L{Deferred} firing with C{"done"} or C{"wait"}, or failing
            with L{HandoverFailed} (refused, timed out, not 200, or any other
            answer).
        """
        d = ensureDeferred(self._post(upload.signal_finish_url, fields))
        d.addTimeout(self._timeout, self._reactor, onTimeoutCancel=self._timed_out)
        d.addErrback(self._explain)
        return d

    def _timed_out(self, result, timeout):
        raise HandoverFailed(f"backend did not answer within {timeout:g} s")

    async def _post(self, url, fields):
        try:
            response = await self._http.post(url, data=fields, unbuffered=True)
        except Exception as e:
            if not _connection_closed_under(e):
                raise
            # Most likely a kept-alive connection that the backend closed
            # as this request went out on it: the backend answered nothing,
            # and a new connection will do. (Twisted sends only idempotent
            # requests again by itself.)
            response = await self._http.post(url, data=fields, unbuffered=True)
        answer = _Answer(response.length)
        response.deliverBody(answer)
        try:
            data = await answer.finished
        except _AnswerTooLong:
            raise HandoverFailed(
                f"backend's answer is too long: HTTP {response.code} with more than {MAX_ANSWER} bytes"
            ) from None
        # "done" and "wait" are the same in every charset a backend uses;
        # anything else is only said in the log.
        body = data.decode("utf-8", "replace").strip()
        if response.code != 200:
            raise HandoverFailed(f"backend answered HTTP {response.code}: {body[:200]!r}")
        answer = body.lower()
        if answer not in ("done", "wait"):
            raise HandoverFailed(f"backend answered {body[:200]!r}, not 'done' or 'wait'")
        return answer

    def _explain(self, failure):
        if failure.check(HandoverFailed):
            return failure
        # Twisted's HTTP client wraps what went wrong on the connection in a
        # list of failures; the first says it.
        reasons = getattr(failure.value, "reasons", None) or [failure]
        reason = reasons[0]
        raise HandoverFailed(f"backend unreachable: {reason.getErrorMessage() or reason.type.__name__}")

    async def post_until(self, upload, fields, deadline, what):
        """
        POST C{fields} until an attempt succeeds or C{deadline} (reactor
        time) has passed, waiting longer after each failure.

        @return: the backend's answer, C{"done"} or C{"wait"}.
        @raise HandoverFailed: when the deadline passed first.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self.post(upload, fields)
            except HandoverFailed as e:
                delay = self.retry_delay(attempt)
                if self._reactor.seconds() + delay > deadline:
                    raise HandoverFailed(f"{what} gave up after {attempt} attempts: {e}")
                self.log.warn(
                    "upload {upload_id}: {what} attempt {attempt} failed ({error}); retrying in {delay:.1f} s",
                    upload_id=upload.id,
                    what=what,
                    attempt=attempt,
                    error=e,
                    delay=delay,
                )
                await task.deferLater(self._reactor, delay)

    def retry_delay(self, attempt):
        base = min(self.max_delay, self.first_delay * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)

"""
The streaming body receiver.

Twisted's web server normally collects a request body whole (in memory or a
temporary file) before any resource sees it. L{UploadRequest} instead asks
the site, as soon as the headers are in, whether the body is upload data; if
so, every chunk read from the socket goes to a L{BodyReceiver}, which hands
it in batches to a worker thread that appends it to the upload's file and
digests it. While the writer is behind, the connection is paused, and
uploads read in turns, a few at a time, so memory stays flat whatever the
size and number of uploads. The resource that answers the
request then only waits for L{BodyReceiver.outcome}. docs/performance.rst
explains the hot path and its measurements.
"""

import io
import re
import threading

from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web import server

from . import heap
from .errors import ClientError
from .priority import BulkThread

# Non-upload requests (backend API forms, small JSON) never need more.
MAX_PLAIN_BODY = 256 * 1024

# A header value of visible ASCII characters and spaces.
_PRINTABLE = re.compile(rb"[\x20-\x7e\t]*")

# An HTTP method name (a token, RFC 9110).
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


heap.keep_freed_memory()


class UploadRequest(server.Request):
    """
    A request whose body, when it carries upload data, is streamed to
    storage instead of being buffered.

    The site decides through its C{route_body(request, method, path, length)}
    method, which returns a L{BodyReceiver} or C{None}. A site with a
    C{is_paced(method, path)} method and a C{pacer} (a
    L{incoming.pacing.TurnPacer}) has the requests it picks processed at the
    pacer's pace.
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
        An override that is no method name at all is ignored, and so is one
        on a HEAD or to a HEAD: whether the client reads a body in the answer
        is decided by the method it sent, and an answer framed for the other
        would leave it waiting or confused.
        """
        override = self.requestHeaders.getRawHeaders(b"x-http-method-override")
        if command == b"HEAD" or not override or not _METHOD.fullmatch(override[0].strip()):
            return command
        method = override[0].strip().upper()
        return command if method == b"HEAD" else method

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
        method = self._effective_method(command)
        site = self.channel.site
        is_paced = getattr(site, "is_paced", None)
        if is_paced is not None and self.body_receiver is None and is_paced(method, path):
            # Parsed already; processed when the pacer has room.
            site.pacer.start(lambda: self._process(method, path, version))
        else:
            self._process(method, path, version)

    def paced_start(self, start):
        """
        Run the coroutine function C{start} when the site's pacer has room
        (at once on a site without one): a L{Deferred} of its result. For
        work a request's headers start while its body comes in, such as the
        claim of a creation that carries data. If the client left while it
        waited, C{start} is not run, as a paced request is then dropped.
        """
        pacer = getattr(self.channel.site, "pacer", None)
        if pacer is None:
            return ensureDeferred(start())
        ready = Deferred()

        def run():
            if self._disconnected:
                ready.errback(ClientError("the client left before its creation was processed"))
            else:
                ensureDeferred(start()).chainDeferred(ready)

        pacer.start(run)
        return ready

    def _process(self, method, path, version):
        if self._disconnected:
            # The client left while the request waited for its turn.
            return
        if self.body_receiver is not None:
            self.body_receiver.bodyEnded()
        content_type = self.requestHeaders.getRawHeaders(b"content-type")
        if self.body_too_large or (content_type and not _PRINTABLE.fullmatch(content_type[0])):
            # Keep Twisted from parsing a form out of the discarded body, or
            # from failing on control characters in the header.
            self.requestHeaders.removeHeader(b"content-type")
        super().requestReceived(method, path, version)

    def connectionLost(self, reason):
        if self.body_receiver is not None:
            self.body_receiver.connectionLost()
            # Nobody may be left to answer (the client is gone before its
            # body was): what was stored is kept, the verdict has no reader.
            self.body_receiver.outcome.addErrback(lambda _: None)
        super().connectionLost(reason)


class ClientSilence:
    """
    How long a client has sent nothing while the server was reading from
    its connection. The time the server holds the connection paused
    (waiting for its turn to read, for its writer, for its claim) is the
    server's doing, not the client's silence, and does not count.
    """

    def __init__(self, clock):
        self._clock = clock
        # Silence counted before _since; _since is None while held.
        self._counted = 0.0
        self._since = clock.seconds()
        self._on_release = None

    def heard(self):
        """
        The client sent something.
        """
        self._counted = 0.0
        if self._since is not None:
            self._since = self._clock.seconds()

    def hold(self):
        self._counted = self.seconds()
        self._since = None

    def release(self):
        self._since = self._clock.seconds()
        call, self._on_release = self._on_release, None
        if call is not None:
            call()

    def when_released(self, call):
        """
        Call C{call} when the server next reads from the connection.
        """
        self._on_release = call

    @property
    def held(self):
        return self._since is None

    def seconds(self):
        if self._since is None:
            return self._counted
        return self._counted + self._clock.seconds() - self._since


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
    # level at which it is resumed. A batch is at most about high_water
    # bytes, and at most two are in memory per upload (one being written,
    # one filling): 1 MiB keeps the server's peak RSS within a few MiB of
    # its idle size while batches stay large enough that the cost of
    # handing one to a thread is small. Larger marks measured no faster for
    # a lone upload. While other uploads read or wait to, the mark is twice
    # as high: every batch costs the same hand-overs between threads
    # whatever its size, and with hundreds of uploads they contend for the
    # cores and the GIL (500 uploads at once: 3-12% more bytes a second in
    # four of five A/Bs, -1.5% in the other; about 0.3 s less server CPU a
    # round). The turns' limit still bounds what all uploads hold together
    # (see _ReadTurns).
    high_water = 1 << 20
    shared_high_water = 2 << 20
    low_water = 256 << 10
    # The most an upload connection reads from its socket at once (Twisted's
    # default is 64 KiB): fewer, larger reads mean fewer trips through the
    # reactor and the HTTP parser for each MiB. While other uploads read or
    # wait to, 512 KiB took 7-9% less server CPU than 256 KiB (500 uploads
    # at once). A lone upload reads 256 KiB: with 512 KiB, the server's peak
    # RSS once rose by 5 MiB during a 4 GiB upload, past the 64 MiB that
    # the benchmark holds it to.
    read_size = 256 << 10
    shared_read_size = 512 << 10
    # Where the time comes from (see ClientSilence).
    clock = reactor

    def __init__(self, session_ready):
        self.outcome = Deferred()
        self._session = None
        self._error = None
        self._discard = False
        # The chunks waiting for the writer, shared with the worker thread
        # that drains them: only touched under _lock.
        self._lock = threading.Lock()
        self._pending = []
        self._pending_bytes = 0
        self._writing = False
        self._body_over = False
        self._complete = False
        self._finished = False
        self._transport = None
        # How long the client has sent nothing (a ClientSilence, from
        # attach); whether the transport is paused is whether it is held.
        self.silence = None
        self._high_water = self.high_water
        # Reading stops while this upload holds _high_water bytes (_full,
        # until it is down to low_water) or until it is its turn to read
        # (_waiting_turn).
        self._full = False
        self._waiting_turn = False
        _turns.join(self)
        session_ready.addCallbacks(self._session_ready, self._refused)

    @property
    def receiving(self):
        """
        Whether the body is still coming in.
        """
        return self._transport is not None and not self._body_over

    @property
    def dropped(self):
        """
        Whether the connection ended before the body did.
        """
        return self._body_over and not self._complete

    def attach(self, transport):
        self._transport = transport
        self.silence = ClientSilence(self.clock)
        self._set_sizes()
        # It may have to wait for its turn to read (see _ReadTurns).
        self._update_reading()

    def abort(self):
        """
        Drop the connection (a newer request takes over this upload). The
        bytes received so far are kept.
        """
        if self._transport is not None and not self._body_over:
            self._transport.abortConnection()

    # Events from the request.

    def dataReceived(self, data):
        self.silence.heard()
        if self._discard:
            return
        with self._lock:
            self._pending.append(data)
            self._pending_bytes += len(data)
            full = self._pending_bytes >= self._high_water
        if full:
            self._full = True
            self._update_reading()
        _turns.hold(self, len(data))
        self._pump()

    def bodyEnded(self):
        self._body_over = True
        self._complete = True
        _turns.leave(self)
        self._pump()

    def connectionLost(self):
        if self._body_over:
            return
        self._body_over = True
        _turns.leave(self)
        self._pump()

    # The pipeline.

    def _session_ready(self, session):
        if session is None:
            # Nothing to write (the data is already there): drop the body.
            self._stop(None)
        else:
            self._session = session
            session.receiver = self
        self._pump()

    def _refused(self, failure):
        self._stop(_client_error(failure, "accepting the upload data failed"))
        self._pump()

    def _stop(self, error):
        """
        Keep what was written, drop the rest of the body.
        """
        if self._error is None:
            self._error = error
        with self._lock:
            self._discard = True
            dropped, self._pending, self._pending_bytes = self._pending_bytes, [], 0
        _turns.release(dropped)
        # Read on, and drop, the rest of the body.
        self._full = False
        self._update_reading()

    def _pump(self):
        if self._writing:
            return
        if self._session is not None and not self._discard and self._pending_bytes:
            self._writing = True
            d = _writers.run(self._drain, self._session)
            d.addCallbacks(self._drained, self._write_failed)
        elif self._body_over and (self._session is not None or self._discard):
            self._finish()

    def _drain(self, session):
        """
        Write batches of pending chunks until none is left; runs in a worker
        thread, while the reactor thread goes on reading into the next
        batch.

        Going back to the reactor after each batch would put two thread
        switches between any two batches, and on a busy machine each switch
        can wait milliseconds for a core: the writer then spent more time
        waiting to be handed its next batch than writing. Draining in a loop
        keeps it writing as long as data comes in.

        @return: whether the body went past the bytes the request may add
            (what fits was written).
        """
        while True:
            with self._lock:
                batch, size = self._take_batch()
            if not size:
                return False
            if self._full:
                # There is room again: read on while this batch is written.
                reactor.callFromThread(self._resume_if_low)
            # A lone upload hashes beside its writes; many share the cores.
            hash_beside = _writers.busy <= 1
            try:
                room = session.limit - session.written
                if size > room:
                    session.write(_split(batch, room)[0], hash_beside)
                    return True
                session.write(batch, hash_beside)
            finally:
                _turns.release(size)

    def _take_batch(self):
        """
        The pending chunks to write next and their size (under the lock);
        a size of 0 when there are none.
        """
        if self._discard or not self._pending_bytes:
            return [], 0
        batch, size = self._pending, self._pending_bytes
        self._pending, self._pending_bytes = [], 0
        return batch, size

    def _drained(self, too_large):
        self._writing = False
        if too_large:
            self._stop(self._session.too_large())
        # Chunks that arrived after the worker's last look are written by
        # the next drain.
        self._pump()
        self._resume_if_low()

    def _write_failed(self, failure):
        self._writing = False
        self._stop(_client_error(failure, "storing upload data failed"))
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

    def _resume_if_low(self):
        if self._full and self._pending_bytes <= self.low_water:
            self._full = False
            self._update_reading()

    def wait_turn(self):
        """
        Stop reading until L{start_turn} (see L{_ReadTurns}).
        """
        self._waiting_turn = True
        self._update_reading()

    def start_turn(self):
        self._waiting_turn = False
        self._set_sizes()
        self._update_reading()

    def _set_sizes(self):
        """
        The read size and high-water mark for a lone upload, or for one
        among others.
        """
        crowded = _turns.crowded
        self._high_water = self.shared_high_water if crowded else self.high_water
        if hasattr(self._transport, "bufferSize"):
            self._transport.bufferSize = self.shared_read_size if crowded else self.read_size

    def _update_reading(self):
        if self._transport is None:
            return
        paused = self._full or self._waiting_turn
        if paused and not self.silence.held:
            self.silence.hold()
            self._transport.pauseProducing()
        elif self.silence.held and not paused:
            self.silence.release()
            self._transport.resumeProducing()


class _WriterThreads:
    """
    The threads that write upload data, apart from the reactor's pool
    (which takes fsyncs and other blocking calls), and the number of
    uploads that have data being written or waiting for a writer.

    Few threads: a writer mostly waits for the disk or for a core. Under
    500 simultaneous uploads, 4 writers took as much per second as 10 did
    and answered other requests (HEAD p99) in half the time; 20 took less.
    They yield the CPU to the reactor thread (see L{incoming.priority}).
    """

    count = 4

    def __init__(self):
        self._pool = None
        self.busy = 0

    def run(self, drain, session):
        """
        C{drain(session)} in a writer thread; a L{Deferred} of its result.
        Called from the reactor thread.
        """
        if self._pool is None:
            self._pool = ThreadPool(minthreads=0, maxthreads=self.count, name="incoming-writer")
            self._pool.threadFactory = BulkThread
            self._pool.start()
            reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)
        self.busy += 1
        d = deferToThreadPool(reactor, self._pool, drain, session)
        d.addBoth(self._done)
        return d

    def _done(self, result):
        self.busy -= 1
        return result


_writers = _WriterThreads()


class _ReadTurns:
    """
    Which uploads read from their sockets now: at most L{readers} at once,
    the others wait, paused, in the order they came.

    With hundreds of fast uploads reading at once, every pass of the reactor
    went over a hundred or more ready sockets, and a HEAD or any other
    request waited for the whole pass (HEAD p99 75-90 ms under 500 uploads);
    each upload also read in small pieces between pauses. Taken in turns,
    the passes are short and the bytes go in at about the same rate
    (docs/performance.rst). A waiting client loses nothing: its bytes wait
    in the kernel's socket buffers.

    An upload gives up its turn when its body ends or its connection is
    lost and, while others wait, once it has read L{turn_bytes}, or when it
    read less than L{slow_bytes} between two checks L{check_period} apart:
    it then waits at the back of the line. So once others wait, a slow or
    silent client keeps its turn for a tenth of a second at most. Between
    its turns a client can send only what its socket's receive buffer
    holds: the shorter a slow client's turn, the sooner the line comes
    round to it again (checks 50 ms apart rather than 100 took hundreds of
    slow clients 7% less time, and 500 fast uploads the same).

    Six readers: with reads of L{BodyReceiver.shared_read_size}, eight made a
    HEAD under 500 uploads wait longer (p99 61 against 42 ms) for no more
    bytes per second.

    Memory: an upload holds at most about two high-water marks of its
    receiver; uploads that gave up their turn may still hold theirs until
    written, so no turn starts while all uploads together hold more than
    L{limit} bytes read but not yet written.

    Used from the reactor thread, except L{release}, which worker threads
    call too.
    """

    readers = 6
    turn_bytes = 8 << 20
    check_period = 0.05
    slow_bytes = 512 << 10
    limit = 16 << 20

    def __init__(self, idle_trim):
        self._lock = threading.Lock()
        # Told when uploads start and stop reading (see heap.IdleTrim).
        self._idle_trim = idle_trim
        self.held = 0
        # The uploads whose turn it is, each with [bytes read in this turn,
        # bytes read at the last check (None before the first)], in the
        # order their turns began; and those waiting, first in line first.
        # Only touched in the reactor thread.
        self._reading = {}
        self._waiting = {}
        self._check = None

    @property
    def crowded(self):
        """
        Whether more than one upload reads or waits to.
        """
        return len(self._reading) + len(self._waiting) > 1

    def join(self, receiver):
        self._idle_trim.busy()
        self._waiting[receiver] = None
        receiver.wait_turn()
        self._admit()

    def leave(self, receiver):
        self._waiting.pop(receiver, None)
        if self._reading.pop(receiver, None) is not None:
            self._admit()
        if not self._reading and not self._waiting:
            self._idle_trim.idle()

    def hold(self, receiver, count):
        """
        C{receiver} read C{count} bytes, which it holds until written.
        """
        with self._lock:
            self.held += count
        turn = self._reading.get(receiver)
        if turn is not None:
            turn[0] += count
            if turn[0] >= self.turn_bytes and self._waiting:
                self._end_turn(receiver)
                self._admit()

    def release(self, count):
        """
        C{count} bytes held are written (or dropped); from any thread.
        """
        with self._lock:
            self.held -= count
            # Turns held back by the limit may start once it is reached
            # again from above.
            due = self.held <= self.limit < self.held + count
        if due:
            reactor.callFromThread(self._admit)

    def _admit(self):
        while self._waiting and len(self._reading) < self.readers and self.held <= self.limit:
            receiver = next(iter(self._waiting))
            del self._waiting[receiver]
            self._reading[receiver] = [0, None]
            receiver.start_turn()
        # Turns are checked only while somebody waits for one.
        if self._waiting and self._check is None:
            self._check = reactor.callLater(self.check_period, self._check_turns)
        elif not self._waiting and self._check is not None:
            self._check.cancel()
            self._check = None

    def _check_turns(self):
        self._check = None
        for receiver, turn in list(self._reading.items()):
            taken, at_last_check = turn
            if at_last_check is not None and taken - at_last_check < self.slow_bytes:
                self._end_turn(receiver)
            else:
                turn[1] = taken
        self._admit()

    def _end_turn(self, receiver):
        del self._reading[receiver]
        self._waiting[receiver] = None
        receiver.wait_turn()


_turns = _ReadTurns(heap.IdleTrim(reactor))


def _client_error(failure, what):
    """
    The L{ClientError} in C{failure}, or for anything unexpected a logged
    failure and a plain 500 error.
    """
    if failure.check(ClientError):
        return failure.value
    BodyReceiver.log.failure(what, failure)
    return ClientError("internal server error (logged)", 500)


def _split(buffers, count):
    """
    The buffers C{buffers} cut after their first C{count} bytes: two lists
    of buffers (views where a buffer is cut, not copies).
    """
    head, tail = [], []
    for buffer in buffers:
        if count >= len(buffer):
            head.append(buffer)
            count -= len(buffer)
        elif count > 0:
            view = memoryview(buffer)
            head.append(view[:count])
            tail.append(view[count:])
            count = 0
        else:
            tail.append(buffer)
    return head, tail

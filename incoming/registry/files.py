"""
Upload records in a journal in the storage directory, beside the data: each
save appends the record as one line of JSON (a removal, a line naming the
upload), and at start the last line of each upload stands. A crash leaves
the old record or the new one: a line cut short is dropped at start.

The writing (and the fsyncs that make a record durable) happens in one
thread of the registry's own, never on the reactor thread: a burst of new
uploads would otherwise stall every connection for the length of hundreds
of fsyncs. Saves that arrive while the thread is busy wait for the next
batch, where the newest record of an upload replaces any older one still
waiting; the batch is one append, made durable by one fdatasync. (A file
per record, written, fsynced and renamed, cost 0.8 ms of CPU per save: a
fifth of the server's CPU under 500 simultaneous uploads.)

Once the journal has grown to several times the size of the records it
holds, it is rewritten with just those, to a new file renamed over it.
Records in files of their own (C{<id>.json}, as earlier versions kept them)
are moved into the journal at start.
"""

import errno
import json
import os
import threading
import time
from pathlib import Path

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Cooperator
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ..errors import InsufficientStorage
from . import IRegistry

JOURNAL = "uploads.journal"
_COMPACTING = JOURNAL + ".tmp"
# Records of earlier versions, one file each, and their temporary files.
_LEGACY_SUFFIX = ".json"
_LEGACY_TEMP_SUFFIX = ".json.tmp"
# The journal is rewritten once it is over this size and this many times
# the size of the records it holds.
_COMPACT_MIN_BYTES = 1 << 20
_COMPACT_RATIO = 4
# Seconds a save_later waits, for other saves to join its batch and for
# the reactor thread to be done with what it was doing. Saved at once,
# each chunk's offset had the registry's thread running (and holding the
# GIL) while the reactor thread answered the chunk: 0.1-0.15 ms of every
# chunk's turnaround.
_LATER_DELAY = 0.05

# How long the reactor thread goes on waking the waiters of written saves
# before it serves its connections again (see FileRegistry._batch_written).
# Twisted's Cooperator would take 10 ms; under 500 uploads at once, HEAD
# p99 was 29.5 ms with 4 and 34.5 with 10, against 47.5 with no slices
# (4 interleaved rounds).
WAKE_SLICE = 0.004


@attrs.define
class _Pending:
    """
    What is to become of one upload's record in the next batch: C{record}
    written (C{None}: the record removed), and who waits for it.
    """

    record: dict | None
    durable: bool
    waiters: list = attrs.Factory(list)


@implementer(IRegistry)
class FileRegistry(Service):
    log = Logger()
    name = "registry"

    def __init__(self, directory, reactor):
        self.directory = Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="incoming-registry")
        self._pending = {}
        self._writing = {}  # the batch being written (never empty while it is)
        self._later = None  # the call that writes saves that could wait
        # How many written batches still have waiters to wake, and what
        # wakes them a few at a time (see _batch_written).
        self._waking = 0
        self._cooperator = Cooperator(
            terminationPredicateFactory=_wake_slice, scheduler=lambda call: self._reactor.callLater(0, call)
        )
        self._drained = []
        self._journal = self.directory / JOURNAL
        self._fd = None
        self._loaded = False
        # Each upload's record as its line in the journal (without the line
        # end); written by the registry's thread, read by the reactor's.
        self._lines = {}
        self._lines_lock = threading.Lock()
        self._live_bytes = 0
        self._journal_bytes = 0

    def startService(self):
        super().startService()
        self._load()
        self._pool.start()

    def stopService(self):
        super().stopService()
        self._write_pending()
        d = self._wait_drained()
        d.addCallback(lambda _: self._pool.stop())
        d.addCallback(lambda _: self._close())
        return d

    def _wait_drained(self):
        if not self._writing and not self._waking:
            return succeed(None)
        d = Deferred()
        self._drained.append(d)
        return d

    def save(self, record, durable):
        return self._enqueue(record["id"], record, durable)

    def save_later(self, record):
        return self._enqueue(record["id"], record, False, later=True)

    def remove(self, upload_id):
        return self._enqueue(upload_id, None, False)

    def flushed(self, upload_id):
        entry = self._pending.get(upload_id) or self._writing.get(upload_id)
        if entry is None:
            return succeed(None)
        d = Deferred()
        entry.waiters.append(d)
        # Only the waiting counts here: a failed save has its own reader.
        d.addErrback(lambda _: None)
        self._write_pending()  # a save_later, waited for now
        return d

    def _enqueue(self, upload_id, record, durable, later=False):
        earlier = self._pending.pop(upload_id, None)
        entry = _Pending(record, durable)
        if earlier is not None:
            # Superseded before it was written: the newer record stands for
            # both, and is as durable as either asked.
            entry.durable = durable or earlier.durable
            entry.waiters = earlier.waiters
        d = Deferred()
        entry.waiters.append(d)
        self._pending[upload_id] = entry
        # While a batch is being written, the next one starts once it is.
        if not self._writing:
            if not (later and self._pool.started):
                self._write_next_batch()
            elif self._later is None:
                self._later = self._reactor.callLater(_LATER_DELAY, self._write_later)
        return d

    def _write_later(self):
        self._later = None
        self._write_pending()

    def _write_pending(self):
        """
        Start writing the pending saves, unless a batch is being written:
        they then follow it.
        """
        if self._pending and not self._writing:
            self._write_next_batch()

    def _write_next_batch(self):
        if self._later is not None:
            self._later.cancel()
            self._later = None
        batch, self._pending = self._pending, {}
        self._writing = batch
        if self._pool.started:
            written = deferToThreadPool(self._reactor, self._pool, self._write_batch, batch)
        else:
            # Before start or after stop (a last save during shutdown).
            written = succeed(self._write_batch(batch))
        written.addCallback(self._batch_written, batch)

    def _batch_written(self, outcomes, batch):
        """
        Wake whoever waits for the saves of C{batch}, now written. Each
        waiter goes on at once with its request (answers it, starts a
        handover, saves again), and a batch written under many uploads has
        hundreds: woken together, they held the reactor thread for 20-60 ms,
        every other connection waiting. So they are woken a few at a time,
        for at most L{WAKE_SLICE} at a stretch, with the reactor's other
        work in between.
        """
        self._writing = {}
        self._waking += 1
        waking = self._wake(outcomes, batch)
        if self._pool.started:
            self._cooperator.cooperate(waking)
        else:
            for _ in waking:  # before start or after stop: all at once
                pass

    def _wake(self, outcomes, batch):
        try:
            for upload_id, entry in batch.items():
                outcome = outcomes.get(upload_id)
                for d in entry.waiters:
                    if outcome is None:
                        d.callback(None)
                    else:
                        d.errback(outcome)
                    yield
        finally:
            self._waking -= 1
        # A waiter may have saved again, and so started the next batch.
        self._write_pending()
        if not self._writing and not self._waking:
            drained, self._drained = self._drained, []
            for d in drained:
                d.callback(None)

    def _write_batch(self, batch):
        """
        In the registry's thread: append C{batch} to the journal. Returns the
        failures by upload id (all of them, or none).
        """
        self._load()
        lines = {}  # each upload's new line; None: its record is removed
        appended = []
        durable = False
        for upload_id, entry in batch.items():
            if entry.record is None:
                lines[upload_id] = None
                appended.append(_encode({"remove": upload_id}))
            else:
                lines[upload_id] = _encode(entry.record)
                appended.append(lines[upload_id])
                durable = durable or entry.durable
        try:
            self._append(b"".join(line + b"\n" for line in appended), durable)
        except Exception:
            # Handed to whoever waits for these saves, on the reactor thread.
            failure = Failure()
            return {upload_id: failure for upload_id in batch}
        with self._lines_lock:
            for upload_id, line in lines.items():
                self._live_bytes -= len(self._lines.pop(upload_id, b""))
                if line is not None:
                    self._lines[upload_id] = line
                    self._live_bytes += len(line)
        if self._journal_bytes > max(_COMPACT_MIN_BYTES, _COMPACT_RATIO * self._live_bytes):
            self._compact()
        return {}

    def _append(self, data, durable):
        if self._fd is None:
            created = not self._journal.exists()
            self._fd = os.open(self._journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            if created:
                self._sync_directory()
        try:
            if os.write(self._fd, data) != len(data):
                raise OSError(errno.ENOSPC, "short write")
            if durable:
                os.fdatasync(self._fd)
        except OSError as e:
            # No line of this batch may stay behind, whole or in part: the
            # records before it stand, and stay true.
            try:
                os.ftruncate(self._fd, self._journal_bytes)
            except OSError:
                pass
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientStorage("storage is full: the upload's state could not be saved")
            raise
        self._journal_bytes += len(data)

    def _compact(self):
        """
        Rewrite the journal with the current records only. If that fails,
        the journal as it was stays, and stays true.

        @return: whether it was rewritten.
        """
        with self._lines_lock:
            data = b"".join(line + b"\n" for line in self._lines.values())
        temp = self.directory / _COMPACTING
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, self._journal)
            self._sync_directory()
        except OSError as e:
            temp.unlink(missing_ok=True)
            self.log.warn("rewriting the upload journal failed, it grows on: {error}", error=e)
            return False
        self._close()
        self._journal_bytes = len(data)
        return True

    def _close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _sync_directory(self):
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # Reading the records at start

    def _load(self):
        """
        Read the journal (and any records of earlier versions) into memory,
        once, before anything is written.
        """
        if self._loaded:
            return
        self._loaded = True
        (self.directory / _COMPACTING).unlink(missing_ok=True)
        legacy = list(self.directory.glob("*" + _LEGACY_SUFFIX))
        records = self._read_legacy_records(legacy)
        records.update(self._read_journal())
        for upload_id, line in records.items():
            self._lines[upload_id] = line
            self._live_bytes += len(line)
        legacy += self.directory.glob("*" + _LEGACY_TEMP_SUFFIX)
        # The files go once their records are safe in the journal; until
        # then they are read again at every start.
        if legacy and self._compact():
            for path in legacy:
                path.unlink(missing_ok=True)

    def _read_legacy_records(self, paths):
        records = {}
        for path in paths:
            try:
                record = json.loads(path.read_bytes())
                records[record["id"]] = _encode(record)
            except (OSError, ValueError, KeyError, TypeError) as e:
                self.log.warn("skipping unreadable upload record {path}: {error}", path=str(path), error=e)
        return records

    def _read_journal(self):
        """
        The records in the journal, as lines by upload id; a last line cut
        short by a crash is cut off the file.
        """
        try:
            data = self._journal.read_bytes()
        except FileNotFoundError:
            return {}
        end = data.rfind(b"\n") + 1
        if end < len(data):
            self.log.warn("dropping an upload record cut short in {path}", path=str(self._journal))
            os.truncate(self._journal, end)
        self._journal_bytes = end
        records = {}
        for number, line in enumerate(data[:end].splitlines(), 1):
            try:
                entry = json.loads(line)
                if "remove" in entry:
                    records.pop(entry["remove"], None)
                else:
                    records[entry["id"]] = line
            except (ValueError, KeyError, TypeError) as e:
                self.log.warn("skipping unreadable line {number} of {path}: {error}",
                              number=number, path=str(self._journal), error=e)
        return records

    def load_all(self):
        self._load()
        with self._lines_lock:
            lines = list(self._lines.values())
        return succeed([json.loads(line) for line in lines])

    def upload_ids(self):
        self._load()
        with self._lines_lock:
            return list(self._lines)


def _encode(entry):
    return json.dumps(entry, separators=(",", ":")).encode()


def _wake_slice():
    """
    For the Cooperator that wakes waiters: whether a stretch of waking has
    taken its slice.
    """
    end = time.monotonic() + WAKE_SLICE
    return lambda: time.monotonic() >= end

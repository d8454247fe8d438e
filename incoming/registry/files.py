"""
Upload records as JSON files in the storage directory, beside the data:
written to a temporary file, then renamed over the old one, so a crash at
any point leaves either the old record or the new one.

The writing (and the fsyncs that make a record durable) happens in one
thread of the registry's own, never on the reactor thread: a burst of new
uploads would otherwise stall every connection for the length of hundreds
of fsyncs. Saves that arrive while the thread is busy wait for the next
batch, where the newest record of an upload replaces any older one still
waiting and one directory fsync covers the whole batch.
"""

import errno
import json
import os
from pathlib import Path

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from ..errors import InsufficientStorage
from . import IRegistry

RECORD_SUFFIX = ".json"
_TEMP_SUFFIX = ".json.tmp"


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
        self._drained = []

    def startService(self):
        super().startService()
        self._pool.start()

    def stopService(self):
        super().stopService()
        d = self._wait_drained()
        d.addCallback(lambda _: self._pool.stop())
        return d

    def _wait_drained(self):
        if not self._writing:
            return succeed(None)
        d = Deferred()
        self._drained.append(d)
        return d

    def _path(self, upload_id):
        return self.directory / (upload_id + RECORD_SUFFIX)

    def save(self, record, durable):
        return self._enqueue(record["id"], record, durable)

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
        return d

    def _enqueue(self, upload_id, record, durable):
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
        if not self._writing:
            self._write_next_batch()
        return d

    def _write_next_batch(self):
        batch, self._pending = self._pending, {}
        self._writing = batch
        if self._pool.started:
            written = deferToThreadPool(self._reactor, self._pool, self._write_batch, batch)
        else:
            # Before start or after stop (a last save during shutdown).
            written = succeed(self._write_batch(batch))
        written.addCallback(self._batch_written, batch)

    def _batch_written(self, outcomes, batch):
        self._writing = {}
        for upload_id, entry in batch.items():
            outcome = outcomes.get(upload_id)
            for d in entry.waiters:
                if outcome is None:
                    d.callback(None)
                else:
                    d.errback(outcome)
        # A waiter may have saved again, and so started the next batch.
        if self._pending and not self._writing:
            self._write_next_batch()
        if not self._writing:
            drained, self._drained = self._drained, []
            for d in drained:
                d.callback(None)

    def _write_batch(self, batch):
        """
        In the registry's thread: carry out C{batch}. Returns the failures by
        upload id; the others succeeded.
        """
        outcomes = {}
        synced = False
        for upload_id, entry in batch.items():
            try:
                if entry.record is None:
                    self._unlink(upload_id)
                else:
                    self._write(entry.record, entry.durable)
                    synced = synced or entry.durable
            except Exception:
                # Handed to whoever waits for this save, on the reactor thread.
                outcomes[upload_id] = Failure()
        if synced:
            self._sync_directory()
        return outcomes

    def _write(self, record, durable):
        path = self._path(record["id"])
        temp = path.with_suffix(_TEMP_SUFFIX)
        data = json.dumps(record, separators=(",", ":")).encode()
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, "short write")
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
        except OSError as e:
            temp.unlink(missing_ok=True)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                # The previous record stays in place, and stays true.
                raise InsufficientStorage("storage is full: the upload's state could not be saved")
            raise

    def _unlink(self, upload_id):
        for path in (self._path(upload_id), self._path(upload_id).with_suffix(_TEMP_SUFFIX)):
            path.unlink(missing_ok=True)

    def _sync_directory(self):
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def load_all(self):
        for leftover in self.directory.glob("*" + _TEMP_SUFFIX):
            # A save that a crash interrupted; the record before it stands.
            leftover.unlink(missing_ok=True)
        records = []
        for upload_id in self.upload_ids():
            path = self._path(upload_id)
            try:
                records.append(json.loads(path.read_bytes()))
            except (OSError, ValueError) as e:
                self.log.warn("skipping unreadable upload record {path}: {error}", path=str(path), error=e)
        return succeed(records)

    def upload_ids(self):
        return [
            entry.name[: -len(RECORD_SUFFIX)]
            for entry in os.scandir(self.directory)
            if entry.name.endswith(RECORD_SUFFIX)
        ]

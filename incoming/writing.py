"""
One request's worth of upload data on its way to storage: appended in a
worker thread and digested beside it, committed (or, for a chunk whose checksum does
not match, rolled back) when the request ends.
"""

import errno
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.threads import deferToThread

from .errors import ChecksumMismatch, InsufficientStorage, TooLarge
from .priority import lower_priority

# The threads that hash upload data while worker threads write it (see
# WriteSession.write). Hashing is CPU work: more threads than cores would
# only queue; a second one on a single core still overlaps with the writes.
# Like the writers, they yield the CPU to the reactor thread.
_hashers = ThreadPoolExecutor(
    max_workers=max(2, os.cpu_count() or 1),
    thread_name_prefix="incoming-hash",
    initializer=lower_priority,
)


class WriteSession:
    """
    One request's worth of data for one upload: appends what the receiver
    hands over (in a worker thread), digests it on the way, and on close
    commits the new offset or, for a checksummed chunk that does not match,
    rolls the file back.

    @ivar limit: how many bytes this request may add.
    @ivar written: how many it has added so far.
    """

    # The Upload-Length a request declares for an upload whose length was
    # deferred; set by whoever opens the session.
    declared_length = None

    def __init__(self, uploads, upload, stored_file, digest, checksum, limit):
        self.uploads = uploads
        self.upload = upload
        self.file = stored_file
        self.digest = digest
        self.limit = limit
        self.written = 0
        self.start = upload.offset
        self.receiver = None
        self.closed = Deferred()
        self._checksum = checksum
        if checksum is not None:
            self._chunk_digest = hashlib.new(checksum[0])
            # Restored if the chunk is rejected: the whole-upload digest must
            # not include bytes that are dropped.
            self._digest_before = digest.copy() if digest is not None else None

    @property
    def visible_offset(self):
        """
        The offset a client may see now: a checksummed chunk counts only
        once it is verified.
        """
        if self._checksum is not None:
            return self.start
        return self.start + self.written

    def too_large(self):
        if self.upload.length is not None:
            return TooLarge(
                f"upload {self.upload.id} would grow past its length of {self.upload.length} bytes"
            )
        return TooLarge(
            f"upload {self.upload.id} would exceed the limit of {self.start + self.limit} bytes"
        )

    def write(self, buffers, hash_beside=True):
        """
        Append C{buffers} and feed them to the digests; runs in a worker
        thread. If the append fails, the digests do not include C{buffers}.

        With C{hash_beside}, the hashing runs beside the append, in a thread
        of its own: for a single upload sha256 (about 1.6 GB/s on one core)
        takes about twice as long as the append, both release the GIL, and
        done one after the other they made this the slowest stage of the
        pipeline. When several uploads are writing, their writers already
        keep the cores busy, and handing each batch to another thread only
        adds thread switches: the caller then hashes here, after the append.
        """
        if not hash_beside:
            self._append(buffers)
            self._digest(buffers)
        else:
            before = self._digests_now()
            digested = _hashers.submit(self._digest, buffers)
            try:
                self._append(buffers)
            except BaseException:
                digested.result()
                self._restore_digests(before)
                raise
            digested.result()
        self.written += sum(map(len, buffers))

    def _append(self, buffers):
        try:
            self.file.append(buffers)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientStorage(
                    "storage is full: the chunk was not stored; "
                    f"the upload can resume from offset {self.start + self.written}"
                )
            raise

    def _digest(self, buffers):
        for buffer in buffers:
            if self.digest is not None:
                self.digest.update(buffer)
            if self._checksum is not None:
                self._chunk_digest.update(buffer)

    def _digests_now(self):
        return (
            self.digest.copy() if self.digest is not None else None,
            self._chunk_digest.copy() if self._checksum is not None else None,
        )

    def _restore_digests(self, before):
        digest, chunk_digest = before
        if digest is not None:
            self.digest = digest
        if chunk_digest is not None:
            self._chunk_digest = chunk_digest

    def abort(self):
        if self.receiver is not None:
            self.receiver.abort()

    def close(self, complete, error):
        """
        The request is over: C{complete} if its body arrived whole, C{error}
        if it was stopped.

        @return: a L{Deferred} firing with the upload, or failing with the
            L{ClientError} to answer.
        """
        d = ensureDeferred(self._close(complete, error))
        d.addBoth(self._closed)
        return d

    async def _close(self, complete, error):
        # An empty chunk is checked too: its checksum must be that of no
        # bytes.
        if self._checksum is not None and (self.written or (complete and error is None)):
            verified = complete and error is None
            if verified and self._chunk_digest.digest() != self._checksum[1]:
                error = ChecksumMismatch(
                    f"{self._checksum[0]} checksum mismatch: the chunk was discarded; "
                    f"resend it from offset {self.start}"
                )
                verified = False
            if not verified:
                await deferToThread(self.file.truncate, self.start)
                self.digest = self._digest_before
                self.written = 0
        await self.uploads.stored(self, accepted=error is None)
        if error is not None:
            raise error
        return self.upload

    def _closed(self, result):
        self.file.close()
        self.uploads.writer_closed(self)
        self.closed.callback(None)
        return result

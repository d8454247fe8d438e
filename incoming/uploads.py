"""
All uploads of one server: issuing tickets, claiming them, writing data,
timeouts, handovers and cancellations. Every transition of an upload goes
through here and is persisted before anyone is told of it.
"""

import hashlib
import hmac
import re
import secrets

import attrs
from twisted.application.service import Service
from twisted.internet import task
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    TooLarge,
)
from .handover import HandoverFailed
from .upload import TERMINAL_STATES, Upload
from .writing import WriteSession

# Upload ids are made here (token_urlsafe); anything else is not an id and
# never reaches a file name.
_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")

_REHASH_CHUNK = 1 << 20

# How many partial uploads one ticket may make. Parallel uploads use a
# handful; each partial is a record in memory and in the journal until the
# final upload or the idle timeout, and those of zero bytes are not limited
# by the ticket's size.
MAX_PARTS = 256

@attrs.frozen
class Limits:
    """
    The size limit that applies to one upload.
    """

    server_max: int
    ticket_max: int

    @property
    def max_size(self):
        limits = [size for size in (self.server_max, self.ticket_max) if size > 0]
        return min(limits) if limits else 0

    def check(self, length):
        if self.max_size and length > self.max_size:
            raise TooLarge(f"upload of {length} bytes exceeds the limit of {self.max_size} bytes")


class Uploads(Service):
    """
    The uploads of this server, kept in memory and in the registry.
    """

    log = Logger()

    def __init__(self, config, storage, registry, backend, clock):
        self.config = config
        self.storage = storage
        self.registry = registry
        self.backend = backend
        self.clock = clock
        self._uploads = {}
        self._writers = {}
        self._digests = {}
        self._rehashing = {}
        self._watchers = {}
        self._timers = {}
        self._tasks = set()
        self._assembling = {}
        self._sweeper = task.LoopingCall(self.sweep)
        self._sweeper.clock = clock

    # Service

    def startService(self):
        super().startService()
        d = self.registry.load_all()
        d.addCallback(self._restore)
        d.addCallback(lambda _: self._sweeper.start(self.config.sweep_interval, now=True))

    def stopService(self):
        super().stopService()
        if self._sweeper.running:
            self._sweeper.stop()
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        for d in list(self._tasks):
            d.cancel()
        for upload_id in list(self._watchers):
            self._wake_watchers(upload_id)
        return self.backend.close()

    def _restore(self, records):
        for record in records:
            try:
                upload = Upload.from_record(record)
            except Exception:
                self.log.failure("skipping upload record that cannot be restored: {record}", record=record)
                continue
            self._uploads[upload.id] = upload
            self._resume(upload)
        self.log.info("restored {count} uploads", count=len(self._uploads))

    def _resume(self, upload):
        state = upload.state
        if state == "receiving":
            # The data file is the truth: bytes written before a crash count,
            # unless they belong to a checksummed chunk never verified.
            size = self.storage.size(upload.id)
            if upload.checksum_pending or size < upload.offset:
                self._truncate(upload.id, min(size, upload.offset))
                size = min(size, upload.offset)
            upload.offset = size
            upload.checksum_pending = False
        if state in ("ticketed", "receiving"):
            self._watch_idle(upload)
        elif state == "handing_over":
            self._start(self._hand_over(upload))
        elif state == "awaiting_confirmation":
            self._watch_confirmation(upload)
        elif upload.notice_pending:
            self._start(self._send_cancel_notice(upload))

    def _truncate(self, upload_id, size):
        stored = self.storage.open(upload_id)
        try:
            stored.truncate(size)
        finally:
            stored.close()

    # Looking uploads up

    def get(self, upload_id):
        upload = self._uploads.get(upload_id) if _ID.fullmatch(upload_id or "") else None
        if upload is None:
            raise NotFound(f"no upload with id {upload_id!r}")
        return upload

    def get_for_backend(self, upload_id, secret):
        upload = self.get(upload_id)
        if not hmac.compare_digest(upload.backend_secret.encode(), (secret or "").encode()):
            raise Forbidden(f"wrong backendSecret for upload {upload_id}")
        return upload

    def is_writing(self, upload):
        """
        Whether a request is writing to C{upload} now.
        """
        return upload.id in self._writers

    def offset(self, upload):
        writer = self._writers.get(upload.id)
        return writer.visible_offset if writer is not None else upload.offset

    async def settled(self, upload):
        """
        Wait until what a client is told next of C{upload} is what a restart
        would find: a request whose connection dropped has stored what it
        received (so the offset is the true one), and the upload's record is
        saved (states change in memory first, on disk a moment later).
        """
        writer = self._writers.get(upload.id)
        if writer is not None and writer.receiver is not None and writer.receiver.dropped:
            await writer.closed
        await self.registry.flushed(upload.id)

    def expires(self, upload):
        """
        When an unfinished upload will be cancelled if nothing happens, or
        C{None}.
        """
        if upload.state in ("ticketed", "receiving"):
            return upload.touched + self.config.idle_timeout
        return None

    def status(self, upload):
        return {
            "id": upload.id,
            "state": upload.state,
            "offset": self.offset(upload),
            "length": upload.length,
            "filename": upload.filename,
            "mimetype": upload.mimetype,
            "sha256": upload.sha256 or None,
            "cancelReason": upload.cancel_reason or None,
        }

    def watch(self, upload, known_state, timeout):
        """
        A L{Deferred} that fires with C{upload} once its state is no longer
        C{known_state}, or after C{timeout} seconds.
        """
        if upload.state != known_state or not self.running:
            return succeed(upload)
        d = Deferred(lambda d: self._forget_watcher(upload.id, d))
        self._watchers.setdefault(upload.id, []).append(d)
        d.addTimeout(timeout, self.clock, onTimeoutCancel=lambda result, timeout: upload)
        return d

    def _forget_watcher(self, upload_id, d):
        watchers = self._watchers.get(upload_id, [])
        if d in watchers:
            watchers.remove(d)

    def _wake_watchers(self, upload_id):
        for d in self._watchers.pop(upload_id, []):
            d.callback(self._uploads.get(upload_id))

    # Backend API

    async def new_ticket(self, signal_finish_url, remove_file_when_finished, backend_secret, max_size):
        now = self.clock.seconds()
        upload = Upload(
            id=secrets.token_urlsafe(18),
            signal_finish_url=signal_finish_url,
            remove_file_when_finished=remove_file_when_finished,
            backend_secret=backend_secret,
            max_size=max_size,
            created=now,
            touched=now,
        )
        self._uploads[upload.id] = upload
        await self._save(upload, durable=True)
        self._watch_idle(upload)
        self.log.info("upload {upload_id}: ticket issued", upload_id=upload.id)
        return upload

    async def finish_by_backend(self, upload):
        if upload.state == "finished":
            return
        if upload.state not in ("handing_over", "awaiting_confirmation"):
            raise upload.not_allowed("finish_upload")
        await self._finish(upload, "confirm")

    async def cancel_by_backend(self, upload, reason):
        if upload.state not in ("ticketed", "receiving"):
            raise upload.not_allowed("cancel_upload")
        await self._cancel(upload, reason)

    # Frontend

    def limits(self, upload):
        return Limits(self.config.max_size, upload.max_size)

    def ticket(self, ticket):
        """
        The upload of C{ticket}, as a client presents it.
        """
        try:
            upload = self.get(ticket)
        except NotFound:
            raise Forbidden("unknown or expired upload ticket")
        if upload.is_partial:
            raise Forbidden("that is a partial upload, not an upload ticket")
        return upload

    async def ticketless(self):
        """
        A ticket for a client that came without one, in ticketless mode.
        """
        return await self.new_ticket(self.config.ticketless_handover, True, "", 0)

    async def claim(self, upload, length, filename, mimetype, metadata, raw_metadata=""):
        """
        Claim the ticket C{upload} for an upload of C{length} bytes (C{None}:
        deferred). Claiming again with the same length gives the same upload,
        so a client that lost the answer can go on.
        """
        # A claim that comes while a final upload is assembled under this
        # ticket comes second, and finds it claimed.
        await self._assembled(upload)
        if upload.state == "ticketed":
            if length is not None:
                self.limits(upload).check(length)
            upload.length = length
            upload.filename = filename
            upload.mimetype = mimetype
            upload.metadata = metadata
            upload.raw_metadata = raw_metadata
            upload.touched = self.clock.seconds()
            upload.transition("claim")
            self._digests[upload.id] = self._new_digest()
            await self._save(upload, durable=True)
            self._wake_watchers(upload.id)
            self.log.info(
                "upload {upload_id}: claimed for {filename!r}, {length} bytes",
                upload_id=upload.id,
                filename=filename,
                length="deferred" if length is None else length,
            )
            if length == 0 and upload.state == "receiving":
                await self._complete_stored(upload)
            if upload.state == "cancelled":
                # While its record was saved or its file made durable.
                raise upload.not_allowed("claim")
            return upload
        if upload.state in ("cancelled", "failed"):
            raise upload.not_allowed("claim")
        if upload.length != length or upload.concat:
            raise Conflict(f"upload ticket already used for an upload of {upload.length} bytes")
        return upload

    # tus concatenation: partial uploads, assembled into a final one

    async def create_partial(self, ticket, length, raw_metadata):
        """
        A new partial upload of C{length} bytes under C{ticket} (C{None} in
        ticketless mode). The pieces of one ticket together stay within its
        size limit.
        """
        if ticket is not None:
            if ticket.state != "ticketed":
                raise Conflict(f"upload ticket already used for an upload of {ticket.length} bytes")
            limits = self.limits(ticket)
            pieces = [part.length for part in self._parts_of(ticket)]
            if len(pieces) >= MAX_PARTS:
                raise Forbidden(f"an upload ticket makes at most {MAX_PARTS} partial uploads")
            limits.check(sum(pieces) + length)
        else:
            self.limits(Upload(id="", signal_finish_url="")).check(length)
        now = self.clock.seconds()
        upload = Upload(
            id=secrets.token_urlsafe(18),
            signal_finish_url="",
            max_size=ticket.max_size if ticket is not None else 0,
            created=now,
            touched=now,
            length=length,
            raw_metadata=raw_metadata,
            concat="partial",
            parent=ticket.id if ticket is not None else "",
        )
        upload.transition("claim")
        self._uploads[upload.id] = upload
        self._digests[upload.id] = self._new_digest()
        await self._save(upload, durable=True)
        self._watch_idle(upload)
        self.log.info(
            "upload {upload_id}: partial upload of {length} bytes for ticket {ticket}",
            upload_id=upload.id,
            length=length,
            ticket=upload.parent or "(none)",
        )
        return upload

    async def claim_final(self, upload, part_ids, concat, filename, mimetype, metadata, raw_metadata):
        """
        Claim the ticket C{upload} for the concatenation of the partial
        uploads C{part_ids}, which must all be complete. Their data is
        assembled before this returns; then the handover starts.
        """
        await self._assembled(upload)
        if upload.state != "ticketed":
            if upload.concat == concat:
                return upload
            raise Conflict(f"upload ticket already used for an upload of {upload.length} bytes")
        parts = [self._complete_part(part_id, upload) for part_id in part_ids]
        length = sum(part.length for part in parts)
        self.limits(upload).check(length)
        self._assembling[upload.id] = done = Deferred()
        try:
            # Assembled while the ticket is still unclaimed: a crash here
            # leaves the parts and the ticket as they were.
            await deferToThread(self.storage.concatenate, upload.id, [part.id for part in parts])
            digest = await deferToThread(self._rehash, upload.id, length)
            if upload.state != "ticketed":
                # Cancelled while assembled: the parts stay as they were.
                self.storage.remove(upload.id)
                raise upload.not_allowed("claim")
            self._digests[upload.id] = digest
            upload.length = upload.offset = length
            upload.filename, upload.mimetype, upload.metadata = filename, mimetype, metadata
            upload.raw_metadata = raw_metadata
            upload.concat = concat
            upload.touched = self.clock.seconds()
            upload.transition("claim")
            await self._save(upload, durable=True)
            self.log.info(
                "upload {upload_id}: claimed for {filename!r}, {length} bytes from {count} partial uploads",
                upload_id=upload.id,
                filename=filename,
                length=length,
                count=len(parts),
            )
            for part in parts:
                await self._forget(part)
            await self._complete_stored(upload)
        finally:
            del self._assembling[upload.id]
            done.callback(None)
        return upload

    async def _assembled(self, ticket):
        """
        Wait until no final upload is being assembled under C{ticket}.
        """
        while ticket.id in self._assembling:
            await self._assembling[ticket.id]

    def _parts_of(self, ticket):
        """
        The partial uploads made under C{ticket}.
        """
        return [u for u in self._uploads.values() if u.is_partial and u.parent == ticket.id]

    def _complete_part(self, part_id, ticket):
        try:
            part = self.get(part_id)
        except NotFound:
            raise BadRequest(f"Upload-Concat names an unknown upload {part_id!r}")
        # Partial uploads made without a ticket (ticketless mode) have none.
        parents = {ticket.id, ""} if self.config.ticketless_handover else {ticket.id}
        if not part.is_partial or part.parent not in parents:
            raise BadRequest(f"upload {part_id} is not a partial upload of this ticket")
        if part.state != "receiving" or part.offset != part.length or part.id in self._writers:
            raise Conflict(f"partial upload {part_id} is not complete ({part.offset} of {part.length} bytes)")
        return part

    async def _forget(self, upload):
        self._uploads.pop(upload.id, None)
        self._digests.pop(upload.id, None)
        self._cancel_timer(upload.id)
        await self.registry.remove(upload.id)
        self.storage.remove(upload.id)

    async def _complete_stored(self, upload):
        stored = self.storage.open(upload.id)
        try:
            await self._complete(upload, stored)
        finally:
            stored.close()

    async def cancel_by_frontend(self, upload, reason):
        if upload.state == "finished":
            return  # tus termination of a completed upload: the file is the backend's now
        if upload.state not in ("ticketed", "receiving"):
            raise upload.not_allowed("cancel")
        await self._cancel(upload, reason)

    async def begin_write(self, upload, offset, content_length, length, checksum):
        """
        Prepare to take a request's data at C{offset}. A request still
        writing to the same upload is taken to be stale (its client has
        since come back on a new connection): it is stopped, and keeps what
        it stored, before this one starts. Bytes are never interleaved.

        @param length: the C{Upload-Length} the request declares, or C{None}.
        @param checksum: (algorithm, digest) of the chunk, or C{None}.
        @return: a L{WriteSession}, or C{None} when the request carries no
            data to write.
        """
        await self._digest_for(upload)
        while (writer := self._writers.get(upload.id)) is not None:
            writer.abort()
            await writer.closed
        # No waiting from here on: this request now owns the upload.
        if upload.concat.startswith("final"):
            raise Forbidden(f"upload {upload.id} is assembled from partial uploads and takes no PATCH")
        if upload.state != "receiving":
            if upload.state != "ticketed" and offset == upload.offset == upload.length and not content_length:
                return None
            raise upload.not_allowed("write")
        if offset != upload.offset:
            raise Conflict(f"Upload-Offset {offset} does not match the upload's offset {upload.offset}")
        if length is not None:
            self._check_length(upload, length)
        room = self._room(upload, length)
        if content_length is not None and content_length > room:
            raise TooLarge(
                f"{content_length} bytes at offset {offset} would exceed the "
                f"{'size limit' if upload.length is None and length is None else 'length'} of "
                f"{offset + room} bytes"
            )
        stored = self.storage.open_at(upload.id, upload.offset)
        if checksum is not None:
            upload.checksum_pending = True
            await self._save(upload)
        session = WriteSession(self, upload, stored, self._digests[upload.id], checksum, room)
        # A deferred length is set only by a request that succeeds whole.
        session.declared_length = length if upload.length is None else None
        self._writers[upload.id] = session
        return session

    def _check_length(self, upload, length):
        if upload.length is None:
            if length < upload.offset:
                raise BadRequest(f"Upload-Length {length} is less than the {upload.offset} bytes already stored")
            self.limits(upload).check(length)
        elif length != upload.length:
            raise BadRequest(f"Upload-Length {length} differs from the upload's length {upload.length}")

    def _room(self, upload, declared_length=None):
        length = upload.length if upload.length is not None else declared_length
        if length is not None:
            return length - upload.offset
        max_size = self.limits(upload).max_size
        return max_size - upload.offset if max_size else 1 << 62

    async def _digest_for(self, upload):
        """
        The running sha256 of the bytes stored so far. After a restart it is
        computed once from the file; otherwise it was kept while the bytes
        arrived.
        """
        if upload.id in self._digests or upload.state != "receiving":
            return
        if upload.id not in self._rehashing:
            self._rehashing[upload.id] = deferToThread(self._rehash, upload.id, upload.offset)
        try:
            digest = await self._rehashing[upload.id]
        finally:
            self._rehashing.pop(upload.id, None)
        self._digests.setdefault(upload.id, digest)

    def _new_digest(self):
        """
        A fresh running sha256, or C{None} with --no-digest.
        """
        return None if self.config.no_digest else hashlib.sha256()

    def _rehash(self, upload_id, size):
        digest = self._new_digest()
        stored = self.storage.open(upload_id)
        try:
            stored.truncate(size)
            if digest is not None:
                for chunk in stored.read(_REHASH_CHUNK):
                    digest.update(chunk)
        finally:
            stored.close()
        return digest

    async def stored(self, session, accepted):
        """
        A write session is over (C{accepted}: its request succeeded whole):
        commit the offset it reached and, if that is the end of the upload,
        start the handover.
        """
        upload = session.upload
        if upload.state != "receiving":
            # Cancelled while the data was coming in; nothing to commit.
            return
        # A record that changes only the offset need not be on disk before
        # the answer: a restart takes the offset from the data file's size
        # (see _resume). A verified checksum or a declared length must be.
        progress_only = not upload.checksum_pending and not (accepted and session.declared_length is not None)
        if accepted and session.declared_length is not None:
            upload.length = session.declared_length
        self._digests[upload.id] = session.digest
        upload.offset = session.start + session.written
        upload.touched = self.clock.seconds()
        upload.checksum_pending = False
        if upload.offset == upload.length and not upload.is_partial:
            await self._complete(upload, session.file)
        elif progress_only:
            self._save_progress(upload)
        else:
            await self._save(upload)

    async def _complete(self, upload, stored_file):
        """
        All bytes are in: make them durable, then hand the file over.
        """
        await deferToThread(stored_file.sync)
        if upload.state != "receiving":
            return  # cancelled meanwhile: nothing to hand over
        digest = self._digests.pop(upload.id)
        upload.sha256 = digest.hexdigest() if digest is not None else ""
        upload.handover_started = self.clock.seconds()
        upload.transition("all_received")
        await self._save(upload, durable=True)
        self.log.info(
            "upload {upload_id}: completed, {size} bytes, sha256 {sha256}",
            upload_id=upload.id,
            size=upload.offset,
            sha256=upload.sha256,
        )
        self._changed(upload)
        self._start(self._hand_over(upload))

    def writer_closed(self, session):
        if self._writers.get(session.upload.id) is session:
            del self._writers[session.upload.id]

    # Lifecycle

    async def _save(self, upload, durable=False):
        await self.registry.save(upload.to_record(), durable)

    def _save_progress(self, upload):
        """
        Save C{upload}'s new offset a moment later, without waiting:
        whoever asks for the offset next has it saved at once and waits for
        it (L{settled}). Each chunk of a chunked upload is answered that
        much sooner.
        """
        d = self.registry.save_later(upload.to_record())
        # Nothing is lost: after a restart the data file has the offset.
        d.addErrback(lambda f: self.log.warn(
            "upload {upload_id}: saving its offset failed: {error}", upload_id=upload.id, error=f.value))

    def _changed(self, upload):
        self._cancel_timer(upload.id)
        self._wake_watchers(upload.id)

    def _start(self, coroutine):
        d = ensureDeferred(coroutine)
        self._tasks.add(d)
        d.addErrback(lambda f: f.trap(CancelledError))
        d.addErrback(lambda f: self.log.failure("background task failed", f))
        d.addBoth(lambda _: self._tasks.discard(d))

    async def _stop_writer(self, upload):
        while (writer := self._writers.get(upload.id)) is not None:
            writer.abort()
            await writer.closed

    async def _cancel(self, upload, reason):
        await self._stop_writer(upload)
        upload.transition("cancel", reason)
        await self._end(upload, "cancelled", reason)
        self._start(self._send_cancel_notice(upload))
        # A ticket's partial uploads can make no final upload any more:
        # their files go now, not at their idle timeout.
        if not upload.is_partial:
            for part in self._parts_of(upload):
                if part.state == "receiving":
                    await self._cancel(part, f"upload ticket {upload.id} was cancelled")

    async def _end(self, upload, how, reason):
        upload.ended = self.clock.seconds()
        upload.notice_pending = how in ("cancelled", "failed") and not upload.is_partial
        await self._save(upload, durable=True)
        self._digests.pop(upload.id, None)
        self.storage.remove(upload.id)
        self.log.info("upload {upload_id}: {how} ({reason})", upload_id=upload.id, how=how, reason=reason)
        self._changed(upload)

    async def _send_cancel_notice(self, upload):
        if not upload.notice_pending:
            return
        deadline = self.clock.seconds() + self.config.handover_retry_period
        fields = self.backend.cancel_fields(upload)
        try:
            await self.backend.post_until(upload, fields, deadline, "cancel notice")
        except HandoverFailed as e:
            self.log.warn("upload {upload_id}: {error}", upload_id=upload.id, error=e)
        upload.notice_pending = False
        if upload.id in self._uploads:
            await self._save(upload)

    async def _hand_over(self, upload):
        deadline = upload.handover_started + self.config.handover_retry_period
        fields = self.backend.handover_fields(upload, self.storage.location(upload.id))
        try:
            answer = await self.backend.post_until(upload, fields, deadline, "handover")
        except HandoverFailed as e:
            if upload.state == "handing_over":
                upload.transition("fail", str(e))
                await self._end(upload, "failed", e)
                await self._send_cancel_notice(upload)
            return
        if upload.state != "handing_over":
            return  # finish_upload came first
        if answer == "done":
            await self._finish(upload, "backend_done")
        else:
            upload.wait_started = self.clock.seconds()
            upload.transition("backend_wait")
            await self._save(upload, durable=True)
            self.log.info("upload {upload_id}: backend will confirm later", upload_id=upload.id)
            self._changed(upload)
            self._watch_confirmation(upload)

    async def _finish(self, upload, event):
        upload.transition(event)
        upload.ended = self.clock.seconds()
        await self._save(upload, durable=True)
        if upload.remove_file_when_finished:
            self.storage.remove(upload.id)
        self.log.info("upload {upload_id}: handed over", upload_id=upload.id)
        self._changed(upload)

    # Timeouts

    def _watch_idle(self, upload):
        self._set_timer(upload, upload.touched + self.config.idle_timeout, self._idle_check)

    def _idle_check(self, upload):
        now = self.clock.seconds()
        if upload.id in self._writers:
            upload.touched = now
        if now < upload.touched + self.config.idle_timeout:
            self._watch_idle(upload)
            return
        reason = "ticket expired" if upload.state == "ticketed" else "idle timeout"
        self._start(self._cancel(upload, reason))

    def _watch_confirmation(self, upload):
        self._set_timer(
            upload, upload.wait_started + self.config.confirmation_timeout, self._confirmation_overdue
        )

    def _confirmation_overdue(self, upload):
        if upload.state == "awaiting_confirmation":
            self._start(self._cancel(upload, "backend did not call finish_upload in time"))

    def _set_timer(self, upload, when, action):
        self._cancel_timer(upload.id)
        delay = max(0.0, when - self.clock.seconds())
        self._timers[upload.id] = self.clock.callLater(delay, action, upload)

    def _cancel_timer(self, upload_id):
        timer = self._timers.pop(upload_id, None)
        if timer is not None and timer.active():
            timer.cancel()

    # Sweeping

    def _kept_for_backend(self, upload):
        """
        A finished upload whose backend asked to keep the file and has not
        moved it yet: the file is the backend's, and so stays with its record.
        """
        return (
            upload.state == "finished"
            and not upload.remove_file_when_finished
            and self.storage.size(upload.id) > 0
        )

    def sweep(self):
        """
        Forget uploads that ended longer than the retention period ago, and
        remove data and state files that belong to no upload.
        """
        now = self.clock.seconds()
        for upload in list(self._uploads.values()):
            if upload.state in TERMINAL_STATES and now - upload.ended > self.config.retention:
                if self._kept_for_backend(upload):
                    continue
                del self._uploads[upload.id]
                self._remove_record(upload.id, "upload {upload_id}: record removed after retention")
        for upload_id in set(self.storage.upload_ids()) - set(self._uploads):
            self.storage.remove(upload_id)
            self.log.info("removed orphaned data of upload {upload_id}", upload_id=upload_id)
        for upload_id in set(self.registry.upload_ids()) - set(self._uploads):
            self._remove_record(upload_id, "removed orphaned state of upload {upload_id}")

    def _remove_record(self, upload_id, message):
        d = self.registry.remove(upload_id)
        d.addCallback(lambda _: self.log.info(message, upload_id=upload_id))
        d.addErrback(lambda f: self.log.failure("removing the record of {upload_id}", f, upload_id=upload_id))

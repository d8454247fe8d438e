"""
The upload record and its lifecycle state machine.

    ticketed -> receiving -> handing_over <-> awaiting_confirmation -> finished

and, before the handover has ended, ``cancelled`` (frontend DELETE, backend
``cancel_upload``, a timeout) or ``failed`` (the handover never succeeded).
The machine only decides which transitions are legal; the code that drives
it (L{incoming.uploads}) persists every transition before acknowledging it.
"""

import attrs
from automat import MethodicalMachine, NoTransition

from .errors import Conflict, Gone

TERMINAL_STATES = frozenset({"finished", "cancelled", "failed"})


class Lifecycle:
    """
    The state of one upload, restricted to the transitions of the design.
    """

    _machine = MethodicalMachine()

    def __init__(self, upload):
        self._upload = upload

    @_machine.state(initial=True, serialized="ticketed")
    def ticketed(self):
        "A ticket was issued; no client has claimed it yet."

    @_machine.state(serialized="receiving")
    def receiving(self):
        "A client claimed the ticket and is sending bytes."

    @_machine.state(serialized="handing_over")
    def handing_over(self):
        "All bytes are in; the backend is being told."

    @_machine.state(serialized="awaiting_confirmation")
    def awaiting_confirmation(self):
        "The backend answered 'wait' and will call finish_upload."

    @_machine.state(serialized="finished")
    def finished(self):
        "The backend has taken the file."

    @_machine.state(serialized="cancelled")
    def cancelled(self):
        "Cancelled by the frontend, the backend or a timeout."

    @_machine.state(serialized="failed")
    def failed(self):
        "The handover never succeeded in time."

    @_machine.input()
    def claim(self):
        "A client claimed the ticket."

    @_machine.input()
    def all_received(self):
        "The last byte is stored."

    @_machine.input()
    def backend_done(self):
        "The backend answered the handover with 'done'."

    @_machine.input()
    def backend_wait(self):
        "The backend answered the handover with 'wait'."

    @_machine.input()
    def confirm(self):
        "The backend called finish_upload."

    @_machine.input()
    def cancel(self, reason):
        "The frontend, the backend or a timeout cancelled the upload."

    @_machine.input()
    def fail(self, reason):
        "The handover could not be delivered in time."

    @_machine.output()
    def _keep_reason(self, reason):
        self._upload.cancel_reason = reason

    @_machine.serializer()
    def _serialize(self, state):
        return state

    @_machine.unserializer()
    def _unserialize(self, state):
        return state

    ticketed.upon(claim, enter=receiving, outputs=[])
    ticketed.upon(cancel, enter=cancelled, outputs=[_keep_reason])
    receiving.upon(all_received, enter=handing_over, outputs=[])
    receiving.upon(cancel, enter=cancelled, outputs=[_keep_reason])
    handing_over.upon(backend_done, enter=finished, outputs=[])
    handing_over.upon(backend_wait, enter=awaiting_confirmation, outputs=[])
    # finish_upload may overtake the 'wait' answer of the handover request.
    handing_over.upon(confirm, enter=finished, outputs=[])
    handing_over.upon(fail, enter=failed, outputs=[_keep_reason])
    awaiting_confirmation.upon(confirm, enter=finished, outputs=[])
    awaiting_confirmation.upon(cancel, enter=cancelled, outputs=[_keep_reason])

    @property
    def name(self):
        return self._serialize()

    def restore(self, name):
        self._unserialize(name)


@attrs.define(eq=False)
class Upload:
    """
    One upload ticket and everything known about its upload.

    C{offset} counts the bytes stored and confirmed; C{length} is C{None}
    while the client defers it. C{concat} is C{"partial"} for a tus partial
    upload (whose C{parent} is the ticket it was made under) and
    C{"final;<urls>"} for an upload assembled from partial ones.
    """

    id: str
    signal_finish_url: str
    dest_type: str = "file"
    remove_file_when_finished: bool = True
    backend_secret: str = ""
    max_size: int = 0
    created: float = 0.0
    touched: float = 0.0
    length: int | None = None
    offset: int = 0
    filename: str = ""
    mimetype: str = ""
    metadata: dict = attrs.Factory(dict)
    sha256: str = ""
    cancel_reason: str = ""
    handover_started: float = 0.0
    handover_attempts: int = 0
    wait_started: float = 0.0
    ended: float = 0.0
    checksum_pending: bool = False
    notice_pending: bool = False
    raw_metadata: str = ""
    concat: str = ""
    parent: str = ""
    lifecycle: Lifecycle = attrs.field(default=None, init=False)

    def __attrs_post_init__(self):
        self.lifecycle = Lifecycle(self)

    _PERSISTED = (
        "id",
        "signal_finish_url",
        "dest_type",
        "remove_file_when_finished",
        "backend_secret",
        "max_size",
        "created",
        "touched",
        "length",
        "offset",
        "filename",
        "mimetype",
        "metadata",
        "sha256",
        "cancel_reason",
        "handover_started",
        "handover_attempts",
        "wait_started",
        "ended",
        "checksum_pending",
        "notice_pending",
        "raw_metadata",
        "concat",
        "parent",
    )

    @property
    def is_partial(self):
        """
        A tus partial upload: a piece of a file, never handed over itself.
        """
        return self.concat == "partial"

    @property
    def state(self):
        return self.lifecycle.name

    @property
    def is_over(self):
        return self.state in TERMINAL_STATES

    def to_record(self):
        record = {name: getattr(self, name) for name in self._PERSISTED}
        record["state"] = self.state
        return record

    @classmethod
    def from_record(cls, record):
        upload = cls(**{name: record[name] for name in cls._PERSISTED if name in record})
        upload.lifecycle.restore(record["state"])
        return upload

    def transition(self, event, *args):
        """
        Feed C{event} (an input name of L{Lifecycle}) to the state machine;
        an illegal transition becomes the client error that explains it.
        """
        try:
            getattr(self.lifecycle, event)(*args)
        except NoTransition:
            raise self.not_allowed(event) from None

    def not_allowed(self, what):
        if self.state in ("cancelled", "failed"):
            reason = f": {self.cancel_reason}" if self.cancel_reason else ""
            return Gone(f"upload {self.id} is {self.state}{reason}")
        return Conflict(f"cannot {what.replace('_', ' ')}: upload {self.id} is {self.state}")

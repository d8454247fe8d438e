"""
The errors a client can cause, each with the HTTP status it is answered with
and a one-line message that says what went wrong.
"""


class ClientError(Exception):
    """
    A request that cannot be served as asked; answered with C{code} and
    C{message}, never with a traceback.
    """

    code = 400

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __repr__(self):
        return f"<{type(self).__name__} {self.code} {self.message!r}>"


class BadRequest(ClientError):
    code = 400


class Forbidden(ClientError):
    code = 403


class NotFound(ClientError):
    code = 404


class Conflict(ClientError):
    """
    The request does not fit the upload's current state (wrong offset,
    ticket already used, too late to cancel, ...).
    """

    code = 409


class Gone(ClientError):
    """
    The upload was cancelled or has failed; its data is no more.
    """

    code = 410


class PreconditionFailed(ClientError):
    code = 412


class TooLarge(ClientError):
    code = 413


class UnsupportedMediaType(ClientError):
    code = 415


class ChecksumMismatch(ClientError):
    code = 460


class InsufficientStorage(ClientError):
    """
    The disk is full: the upload stays resumable, the chunk is not kept.
    """

    code = 507

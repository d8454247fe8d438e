"""
Upload records as JSON files in the storage directory, beside the data:
written to a temporary file, then renamed over the old one, so a crash at
any point leaves either the old record or the new one.
"""

import errno
import json
import os
from pathlib import Path

from twisted.internet.defer import succeed
from twisted.logger import Logger
from zope.interface import implementer

from ..errors import InsufficientStorage
from . import IRegistry

RECORD_SUFFIX = ".json"
_TEMP_SUFFIX = ".json.tmp"


@implementer(IRegistry)
class FileRegistry:
    log = Logger()

    def __init__(self, directory):
        self.directory = Path(directory).absolute()
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, upload_id):
        return self.directory / (upload_id + RECORD_SUFFIX)

    def save(self, record, durable):
        # Small files on a local disk: writing inline costs less than a
        # thread hop, and keeps saves of one upload in order.
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
        if durable:
            self._sync_directory()
        return succeed(None)

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

    def remove(self, upload_id):
        for path in (self._path(upload_id), self._path(upload_id).with_suffix(_TEMP_SUFFIX)):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        return succeed(None)

    def upload_ids(self):
        return [
            entry.name[: -len(RECORD_SUFFIX)]
            for entry in os.scandir(self.directory)
            if entry.name.endswith(RECORD_SUFFIX)
        ]

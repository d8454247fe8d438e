"""
The write session's two ways of digesting: beside the append (one upload
writing) and after it (several writing at once) give the same sha256.
"""

import hashlib
from types import SimpleNamespace

import pytest

from incoming.storage.local import LocalStorage
from incoming.writing import WriteSession


@pytest.mark.parametrize("hash_beside", [True, False])
def test_both_ways_of_hashing_digest_exactly_the_bytes_stored(tmp_path, hash_beside):
    storage = LocalStorage(tmp_path)
    upload = SimpleNamespace(id="u1", offset=0, length=None)
    session = WriteSession(None, upload, storage.open_at("u1", 0), hashlib.sha256(), None, 1 << 30)
    batches = [[b"x" * 70_000, b"y" * 5], [b"z" * (1 << 20)], [b"tail"]]
    for batch in batches:
        session.write(batch, hash_beside)
    session.file.close()
    data = b"".join(b"".join(batch) for batch in batches)
    assert session.written == len(data)
    assert (tmp_path / "u1.data").read_bytes() == data
    assert session.digest.hexdigest() == hashlib.sha256(data).hexdigest()

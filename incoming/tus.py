"""
The tus 1.0.0 wire format: header values in and out.
"""

import base64
import binascii
import hashlib
import re
from email.utils import formatdate
from urllib.parse import urlsplit

from .errors import BadRequest

VERSION = "1.0.0"
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "termination",
    "expiration",
    "checksum",
    "concatenation",
)
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"

# Request headers a browser may send and response headers it may read,
# for CORS.
REQUEST_HEADERS = (
    "Tus-Resumable",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Offset",
    "Upload-Checksum",
    "Upload-Concat",
    "Content-Type",
    "X-HTTP-Method-Override",
    "X-Requested-With",
)
RESPONSE_HEADERS = (
    "Location",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Defer-Length",
    "Upload-Metadata",
    "Upload-Expires",
    "Incoming-Chunk-Size",
)

_METADATA_KEY = re.compile(r"[^\s,]+")


# Far more digits than any byte count needs (2 ** 63 has 19), and far
# fewer than the 4300 past which Python refuses to convert a number at all.
# Numbers in between are numbers: a length too large for any limit is a 413,
# an offset no upload reaches a 409.
_MAX_DIGITS = 100


def parse_count(name, value):
    """
    A non-negative integer header or parameter such as C{Upload-Offset}, or
    C{None} when it is absent.
    """
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        raise BadRequest(f"{name} must be a non-negative integer, not {value[:40]!r}")
    if len(value.lstrip("0")) > _MAX_DIGITS:
        raise BadRequest(f"{name} must be a byte count of at most {_MAX_DIGITS} digits")
    return int(value)


def parse_metadata(header):
    """
    The C{Upload-Metadata} header as a dict of key to text (C{""} for a key
    given without a value). Values that are not UTF-8 are kept as base64
    text.
    """
    metadata = {}
    if not header or not header.strip():
        return metadata
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        key = parts[0]
        if not _METADATA_KEY.fullmatch(key) or len(parts) > 2:
            raise BadRequest("Upload-Metadata must be comma-separated 'key base64value' pairs")
        if key in metadata:
            raise BadRequest(f"Upload-Metadata: key {key!r} is given twice")
        if len(parts) == 1:
            metadata[key] = ""
            continue
        try:
            raw = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"Upload-Metadata: the value of {key!r} is not valid base64")
        try:
            metadata[key] = raw.decode("utf-8")
        except UnicodeDecodeError:
            metadata[key] = parts[1]
    return metadata


def http_date(timestamp):
    """
    An RFC 9110 date, as C{Upload-Expires} wants it.
    """
    return formatdate(timestamp, usegmt=True)


def parse_concat(header):
    """
    The C{Upload-Concat} header: C{""} (none), C{"partial"}, or
    C{"final;<url> <url> ..."} as given.
    """
    if header is None:
        return ""
    value = header.strip()
    if value == "partial" or (value.startswith("final;") and value[len("final;") :].split()):
        return value
    raise BadRequest("Upload-Concat must be 'partial' or 'final;<url> <url> ...'")


def upload_id_from_url(url):
    """
    The upload id at the end of an upload URL (absolute or relative).
    """
    try:
        path = urlsplit(url).path
    except ValueError:  # such as a bracketed host that is no IP address
        path = ""
    prefix, _, upload_id = path.rstrip("/").rpartition("/")
    if not prefix.endswith("/uploads") or not upload_id:
        raise BadRequest(f"Upload-Concat: {url[:80]!r} is not an upload URL")
    return upload_id


_FORWARDED_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*("[^"]*"|[^;,]*)')


def parse_forwarded(header):
    """
    The parameters of the first (client-side) element of an RFC 7239
    C{Forwarded} header, lower-cased names, quotes removed.
    """
    if not header:
        return {}
    first = header.split(",")[0]
    return {
        name.lower(): value.strip('"')
        for name, value in _FORWARDED_PAIR.findall(first)
    }


CHECKSUM_ALGORITHMS = ("sha1", "sha256", "md5")

def parse_checksum(header):
    """
    The (algorithm, digest) of a tus C{Upload-Checksum} header value.
    """
    try:
        algorithm, encoded = header.strip().split(" ", 1)
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (ValueError, binascii.Error):
        raise BadRequest("Upload-Checksum must be '<algorithm> <base64 digest>'")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise BadRequest(
            f"checksum algorithm {algorithm!r} is not supported "
            f"(use one of {', '.join(CHECKSUM_ALGORITHMS)})"
        )
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise BadRequest(f"Upload-Checksum: not a {algorithm} digest")
    return algorithm, digest

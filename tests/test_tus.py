"""
The tus 1.0.0 frontend: core protocol, the extensions the server
advertises, the ticket, CORS.
"""

import base64
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor, wait
from urllib.parse import urlsplit

import requests

from incoming.uploads import MAX_PARTS
from incoming.web.frontend import SCRIPT

from harness import TusClient, b64, open_patch

MiB = 1024 * 1024


def test_options_advertises_the_protocol(server):
    response = requests.options(server.uploads_url)
    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "expiration",
        "checksum",
        "concatenation",
    }
    assert "sha1" in response.headers["Tus-Checksum-Algorithm"].split(",")
    assert response.headers["Tus-Max-Size"] == str(64 << 30)
    # No chunk size limit unless --chunk-size sets one.
    assert "Incoming-Chunk-Size" not in response.headers


def test_options_advertises_the_chunk_size_limit(start_server):
    server = start_server("--chunk-size=50M")
    response = requests.options(server.uploads_url, headers={"Origin": "http://app.example"})
    assert response.headers["Incoming-Chunk-Size"] == str(50 << 20)
    assert "Incoming-Chunk-Size" in response.headers["Access-Control-Expose-Headers"]


def test_claim_patch_head(server, backend, tus):
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 10, filename="t.txt", filetype="text/plain")
    assert url == f"{server.frontend}/incoming/frontend/uploads/{ticket}"
    head = tus.head(url)
    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == "0"
    assert head.headers["Upload-Length"] == "10"
    assert head.headers["Cache-Control"] == "no-store"
    assert "Upload-Expires" in head.headers
    response = tus.patch(url, 0, b"01234")
    assert (response.status_code, response.headers["Upload-Offset"]) == (204, "5")
    assert "Upload-Expires" in response.headers
    assert tus.offset(url) == 5


def test_claiming_again_with_same_length_gives_the_same_upload(server, backend, tus):
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 10)
    tus.patch(url, 0, b"abc")
    assert tus.create(ticket, 10) == url
    assert tus.offset(url) == 3
    response = tus.http.post(
        server.uploads_url, headers={"Upload-Length": "11", "Upload-Metadata": f"ticket {b64(ticket)}"}
    )
    assert response.status_code == 409
    assert response.text == "upload ticket already used for an upload of 10 bytes"


def test_a_claim_says_the_offset_and_metadata_as_a_head_would(server, backend, tus):
    """
    A claim without data is answered with the upload's offset and
    metadata: a client that claims again (a reloaded page) learns where to
    go on and whose file the upload is without a HEAD.
    """
    ticket = server.new_ticket(backend)
    metadata = f"ticket {b64(ticket)},filename {b64('a.bin')}"
    headers = {"Upload-Length": "10", "Upload-Metadata": metadata}
    first = tus.http.post(server.uploads_url, headers=headers)
    assert (first.status_code, first.headers["Upload-Offset"]) == (201, "0")
    tus.patch(first.headers["Location"], 0, b"abcd")
    again = tus.http.post(server.uploads_url, headers=headers)
    assert (again.status_code, again.headers["Upload-Offset"]) == (201, "4")
    assert again.headers["Upload-Metadata"] == metadata


def test_ticket_is_required_and_must_be_known(server, tus):
    response = tus.http.post(server.uploads_url, headers={"Upload-Length": "5"})
    assert (response.status_code, response.text) == (
        403,
        "an upload ticket is required: Upload-Metadata key 'ticket'",
    )
    response = tus.http.post(
        server.uploads_url, headers={"Upload-Length": "5", "Upload-Metadata": f"ticket {b64('nope')}"}
    )
    assert (response.status_code, response.text) == (403, "unknown or expired upload ticket")


def test_malformed_headers_are_400(server, backend, tus):
    ticket = server.new_ticket(backend)

    def post(**headers):
        return tus.http.post(server.uploads_url, headers=headers)

    response = post(**{"Upload-Length": "5", "Upload-Metadata": "ticket ***"})
    assert (response.status_code, response.text) == (400, "Upload-Metadata: the value of 'ticket' is not valid base64")
    response = post(**{"Upload-Length": "five", "Upload-Metadata": f"ticket {b64(ticket)}"})
    assert (response.status_code, response.text) == (400, "Upload-Length must be a non-negative integer, not 'five'")
    response = post(**{"Upload-Length": "9" * 5000, "Upload-Metadata": f"ticket {b64(ticket)}"})
    assert (response.status_code, response.text) == (400, "Upload-Length must be a byte count of at most 100 digits")
    response = post(**{"Upload-Metadata": f"ticket {b64(ticket)}"})
    assert (response.status_code, response.text) == (400, "give either Upload-Length or Upload-Defer-Length: 1")
    response = post(
        **{"Upload-Concat": "final;http://[x/incoming/frontend/uploads/a", "Upload-Metadata": f"ticket {b64(ticket)}"}
    )
    assert (response.status_code, response.text) == (
        400,
        "Upload-Concat: 'http://[x/incoming/frontend/uploads/a' is not an upload URL",
    )
    url = tus.create(ticket, 5)
    response = tus.patch(url, "x", b"1")
    assert (response.status_code, response.text) == (400, "Upload-Offset must be a non-negative integer, not 'x'")
    response = tus.patch(url, "9" * 5000, b"1")
    assert (response.status_code, response.text) == (400, "Upload-Offset must be a byte count of at most 100 digits")


def test_offset_mismatch_is_409_and_nothing_is_written(server, backend, tus):
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 10)
    tus.patch(url, 0, b"abc")
    response = tus.patch(url, 2, b"zzz")
    assert (response.status_code, response.text) == (409, "Upload-Offset 2 does not match the upload's offset 3")
    assert tus.offset(url) == 3


def test_wrong_content_type_is_415(server, backend, tus):
    url = tus.create(server.new_ticket(backend), 10)
    response = tus.patch(url, 0, b"abc", **{"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert tus.offset(url) == 0


def test_past_the_length_is_413(server, backend, tus):
    url = tus.create(server.new_ticket(backend), 4)
    response = tus.patch(url, 0, b"12345")
    assert response.status_code == 413
    assert tus.offset(url) == 0


def test_unsupported_version_is_412(server, backend, tus):
    url = tus.create(server.new_ticket(backend), 4)
    response = requests.head(url, headers={"Tus-Resumable": "0.2.2"})
    assert response.status_code == 412
    assert response.headers["Tus-Version"] == "1.0.0"
    response = requests.patch(
        url, data=b"1234", headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    )
    assert response.status_code == 412
    assert response.text == "Tus-Resumable (missing) is not supported; this server speaks 1.0.0"
    response = requests.head(url, headers={"Tus-Resumable": "9" * 10000})
    assert response.headers["Incoming-Error"] == f"Tus-Resumable {'9' * 40} is not supported; this server speaks 1.0.0"


def test_checksum_match_and_mismatch(server, backend, tus):
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 8)
    good = "sha1 " + base64.b64encode(hashlib.sha1(b"abcd").digest()).decode()
    assert tus.patch(url, 0, b"abcd", **{"Upload-Checksum": good}).status_code == 204

    bad = "sha256 " + base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    response = tus.patch(url, 4, b"efgh", **{"Upload-Checksum": bad})
    assert response.status_code == 460
    assert response.text == "sha256 checksum mismatch: the chunk was discarded; resend it from offset 4"
    assert tus.offset(url) == 4
    assert (server.storage / f"{ticket}.data").read_bytes() == b"abcd"

    response = tus.patch(url, 4, b"efgh", **{"Upload-Checksum": "crc32 AAAA"})
    assert response.status_code == 400
    good = "sha256 " + base64.b64encode(hashlib.sha256(b"efgh").digest()).decode()
    assert tus.patch(url, 4, b"efgh", **{"Upload-Checksum": good}).status_code == 204
    # The whole-file digest does not include the discarded chunk.
    assert backend.next_call()["sha256"] == hashlib.sha256(b"abcdefgh").hexdigest()


def create_with_upload(server, tus, ticket, length, data, filename="file.bin"):
    metadata = f"ticket {b64(ticket)},filename {b64(filename)}"
    return tus.http.post(
        server.uploads_url,
        data=data,
        headers={
            "Upload-Length": str(length),
            "Upload-Metadata": metadata,
            "Content-Type": "application/offset+octet-stream",
        },
    )


def test_creation_with_upload(server, backend, tus):
    ticket = server.new_ticket(backend)
    response = create_with_upload(server, tus, ticket, 8, b"hello")
    assert response.status_code == 201
    assert response.headers["Upload-Offset"] == "5"
    assert response.headers["Upload-Metadata"] == f"ticket {b64(ticket)},filename {b64('file.bin')}"
    url = response.headers["Location"]
    assert tus.patch(url, 5, b"!!!").status_code == 204
    assert backend.next_call()["sha256"] == hashlib.sha256(b"hello!!!").hexdigest()


def test_a_repeated_creation_with_upload_keeps_what_is_stored(server, backend, tus):
    """
    A client that lost the answer to its creation sends it again, data and
    all: the data already stored stays, the answer says where to go on.
    """
    ticket = server.new_ticket(backend)
    url = create_with_upload(server, tus, ticket, 8, b"hello").headers["Location"]
    again = create_with_upload(server, tus, ticket, 8, b"HELLO")
    assert (again.status_code, again.headers["Location"]) == (201, url)
    assert again.headers["Upload-Offset"] == "5"
    assert tus.patch(url, 5, b"!!!").status_code == 204
    assert backend.next_call()["sha256"] == hashlib.sha256(b"hello!!!").hexdigest()


def test_a_repeated_creation_with_upload_leaves_the_running_patch_alone(server, backend, tus):
    """
    A page reloaded (or a second tab) claims again with its data while the
    first request still sends: that request goes on, the repeat's data is
    dropped and its answer says where the upload is.
    """
    ticket = server.new_ticket(backend)
    data = os.urandom(4 * MiB)
    url = create_with_upload(server, tus, ticket, len(data), b"").headers["Location"]
    with open_patch(url, 0, len(data), data[:MiB]) as first:
        tus.wait_for_offset(url, MiB)
        again = create_with_upload(server, tus, ticket, len(data), b"x" * MiB)
        assert (again.status_code, again.headers["Location"]) == (201, url)
        assert int(again.headers["Upload-Offset"]) >= MiB
        first.sendall(data[MiB:])
        first.settimeout(30)
        assert first.recv(100).startswith(b"HTTP/1.1 204 ")
    assert backend.next_call()["received_sha256"] == hashlib.sha256(data).hexdigest()


def test_a_creation_with_upload_for_another_file_stores_nothing(server, backend, tus):
    """
    Another page with the same ticket and a file of the same length: its
    data is dropped, and the answer shows the metadata of the file the
    upload was created for, so that the page can tell it is not its own.
    """
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 8, filename="mine.bin", filetype="")
    theirs = create_with_upload(server, tus, ticket, 8, b"THEIR", filename="theirs.bin")
    assert (theirs.status_code, theirs.headers["Location"]) == (201, url)
    assert theirs.headers["Upload-Offset"] == "0"
    assert "filename " + b64("mine.bin") in theirs.headers["Upload-Metadata"]
    assert tus.patch(url, 0, b"mine!!!!").status_code == 204
    assert backend.next_call()["sha256"] == hashlib.sha256(b"mine!!!!").hexdigest()


def test_deferred_length(server, backend, tus):
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, None)
    head = tus.head(url)
    assert head.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in head.headers
    assert tus.patch(url, 0, b"abc").status_code == 204
    response = tus.patch(url, 3, b"de", **{"Upload-Length": "5"})
    assert response.status_code == 204
    assert tus.head(url).headers["Upload-Length"] == "5"
    assert backend.next_call()["sha256"] == hashlib.sha256(b"abcde").hexdigest()


def test_per_ticket_max_size(server, backend, tus):
    ticket = server.new_ticket(backend, maxSize="100")
    response = tus.http.post(
        server.uploads_url, headers={"Upload-Length": "101", "Upload-Metadata": f"ticket {b64(ticket)}"}
    )
    assert (response.status_code, response.text) == (413, "upload of 101 bytes exceeds the limit of 100 bytes")


def test_cors(server, backend, tus):
    preflight = requests.options(
        server.uploads_url,
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "upload-offset,tus-resumable",
        },
    )
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Upload-Offset" in preflight.headers["Access-Control-Allow-Headers"]
    url = tus.create(server.new_ticket(backend), 3)
    response = tus.http.head(url, headers={"Origin": "https://app.example"})
    exposed = response.headers["Access-Control-Expose-Headers"]
    assert "Upload-Offset" in exposed and "Location" in exposed


def test_cors_limited_to_configured_origins(start_server):
    server = start_server("--cors-origins", "https://good.example")
    good = requests.options(server.uploads_url, headers={"Origin": "https://good.example"})
    assert good.headers["Access-Control-Allow-Origin"] == "https://good.example"
    bad = requests.options(server.uploads_url, headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in bad.headers


def test_state_url_long_polls_until_the_state_changes(server, backend, tus):
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 3)
    assert tus.state(url)["state"] == "receiving"
    # Nothing changes: the answer comes after the wait, same state.
    assert tus.state(url, known="receiving", wait=0.2)["state"] == "receiving"
    tus.patch(url, 0, b"abc")
    assert tus.wait_until_over(url)["state"] == "finished"


def test_incoming_js_is_served(server):
    response = requests.get(server.frontend + "/incoming/frontend/incoming.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/javascript"


def test_incoming_js_is_sent_whole_whatever_the_range(server):
    script = SCRIPT.read_bytes()
    for ranges in ("bytes=0-9", "bytes=" + ",".join(["0-"] * 300), "bytes=99999999-"):
        response = requests.get(server.frontend + "/incoming/frontend/incoming.js", headers={"Range": ranges})
        assert (response.status_code, response.content) == (200, script)


def partial_upload(server, tus, ticket, data):
    """
    A complete partial upload of C{data} under C{ticket}: its URL.
    """
    response = tus.http.post(
        server.uploads_url,
        headers={"Upload-Length": str(len(data)), "Upload-Concat": "partial", "Upload-Metadata": f"ticket {b64(ticket)}"},
    )
    assert response.status_code == 201, response.text
    url = response.headers["Location"]
    assert tus.patch(url, 0, data).status_code == 204
    assert tus.head(url).headers["Upload-Concat"] == "partial"
    return url


def start_assembly(server, tus, ticket, urls):
    """
    Send the final upload of the partial uploads C{urls} and return once the
    server has begun assembling it (its data file exists): a future of the
    answer.
    """
    concat = "final;" + " ".join(urlsplit(url).path for url in urls)
    headers = {"Tus-Resumable": "1.0.0", "Upload-Concat": concat, "Upload-Metadata": f"ticket {b64(ticket)}"}
    pool = ThreadPoolExecutor(1)
    answer = pool.submit(requests.post, server.uploads_url, headers=headers, timeout=60)
    pool.shutdown(wait=False)
    data = server.storage / f"{ticket}.data"
    while not data.exists():
        answered, _ = wait([answer], timeout=0.01)
        assert not answered, answer.result().text
    return answer


def test_concatenation_assembles_partial_uploads(server, backend, tus):
    ticket = server.new_ticket(backend)

    def partial(data):
        return partial_upload(server, tus, ticket, data)

    urls = [partial(b"hello"), partial(b" "), partial(b"world")]
    assert ticket not in "".join(urls)
    concat = "final;" + " ".join(urlsplit(url).path for url in urls)
    response = tus.http.post(
        server.uploads_url,
        headers={"Upload-Concat": concat, "Upload-Metadata": f"ticket {b64(ticket)},filename {b64('hw.txt')}"},
    )
    assert response.status_code == 201, response.text
    url = response.headers["Location"]
    assert url.endswith(ticket)
    call = backend.next_call()
    assert call["sha256"] == call["received_sha256"] == hashlib.sha256(b"hello world").hexdigest()
    assert call["filenameFromBrowser"] == "hw.txt"
    head = tus.head(url)
    assert head.headers["Upload-Concat"] == concat
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == "11"
    assert tus.patch(url, 11, b"").status_code == 403
    for part in urls:
        assert tus.head(part).status_code == 404


def test_a_plain_claim_during_assembly_finds_the_ticket_taken(server, backend, tus):
    ticket = server.new_ticket(backend)
    parts = [os.urandom(64 * MiB), os.urandom(64 * MiB)]
    urls = [partial_upload(server, tus, ticket, data) for data in parts]

    final = start_assembly(server, tus, ticket, urls)
    response = tus.http.post(
        server.uploads_url, headers={"Upload-Length": "5", "Upload-Metadata": f"ticket {b64(ticket)}"}
    )
    assert (response.status_code, response.text) == (409, f"upload ticket already used for an upload of {128 * MiB} bytes")
    assert final.result().status_code == 201
    call = backend.next_call()
    assert call["received_sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()


def test_a_final_upload_cancelled_during_assembly_leaves_no_file(server, backend, tus):
    ticket = server.new_ticket(backend)
    urls = [partial_upload(server, tus, ticket, os.urandom(64 * MiB)) for _ in range(2)]

    final = start_assembly(server, tus, ticket, urls)
    url = server.uploads_url + ticket
    assert tus.http.delete(url, params={"reason": "changed my mind"}).status_code == 204
    response = final.result()
    assert (response.status_code, response.text) == (410, f"upload {ticket} is cancelled: changed my mind")
    assert not (server.storage / f"{ticket}.data").exists()
    head = tus.head(url)
    assert (head.status_code, head.headers["Incoming-Error"]) == (410, f"upload {ticket} is cancelled: changed my mind")


def test_cancelling_a_ticket_cancels_its_partial_uploads(server, backend, tus):
    ticket = server.new_ticket(backend)
    parts = [partial_upload(server, tus, ticket, data) for data in (b"hello", b"world")]
    part_files = [server.storage / f"{urlsplit(url).path.rsplit('/', 1)[1]}.data" for url in parts]
    assert all(path.exists() for path in part_files)

    assert tus.http.delete(server.uploads_url + ticket).status_code == 204
    for url, path in zip(parts, part_files):
        head = tus.head(url)
        assert (head.status_code, head.headers["Incoming-Error"]) == (
            410,
            f"upload {urlsplit(url).path.rsplit('/', 1)[1]} is cancelled: upload ticket {ticket} was cancelled",
        )
        assert not path.exists()


def test_a_ticket_makes_a_bounded_number_of_partial_uploads(server, backend, tus):
    ticket = server.new_ticket(backend)
    headers = {"Upload-Length": "0", "Upload-Concat": "partial", "Upload-Metadata": f"ticket {b64(ticket)}"}
    answers = [tus.http.post(server.uploads_url, headers=headers) for _ in range(MAX_PARTS + 1)]
    assert [answer.status_code for answer in answers] == [201] * MAX_PARTS + [403]
    assert answers[-1].text == f"an upload ticket makes at most {MAX_PARTS} partial uploads"


def test_final_upload_needs_complete_parts_of_its_ticket(server, backend, tus):
    ticket = server.new_ticket(backend)
    other = server.new_ticket(backend)
    response = tus.http.post(
        server.uploads_url,
        headers={"Upload-Length": "5", "Upload-Concat": "partial", "Upload-Metadata": f"ticket {b64(ticket)}"},
    )
    part = response.headers["Location"]
    final = {"Upload-Concat": f"final;{part}", "Upload-Metadata": f"ticket {b64(ticket)}"}
    response = tus.http.post(server.uploads_url, headers=final)
    assert response.status_code == 409
    assert response.text.endswith("is not complete (0 of 5 bytes)")
    tus.patch(part, 0, b"12345")
    response = tus.http.post(server.uploads_url, headers={**final, "Upload-Metadata": f"ticket {b64(other)}"})
    assert response.status_code == 400
    assert response.text.endswith("is not a partial upload of this ticket")
    response = tus.http.post(server.uploads_url, headers={"Upload-Concat": "final;", "Upload-Metadata": f"ticket {b64(ticket)}"})
    assert response.status_code == 400


def test_method_override(server, backend, tus):
    url = tus.create(server.new_ticket(backend), 4)
    response = tus.http.post(
        url,
        data=b"abcd",
        headers={
            "X-HTTP-Method-Override": "PATCH",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert (response.status_code, response.headers["Upload-Offset"]) == (204, "4")
    assert backend.next_call()["sha256"] == hashlib.sha256(b"abcd").hexdigest()


def test_locations_behind_a_proxy(start_server, backend):
    server = start_server("--behind-proxy")
    tus = TusClient(server)
    metadata = {"Upload-Length": "1"}
    ticket = server.new_ticket(backend)
    response = tus.http.post(
        server.uploads_url,
        headers={**metadata, "Upload-Metadata": f"ticket {b64(ticket)}", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "up.example"},
    )
    assert response.headers["Location"] == f"https://up.example/incoming/frontend/uploads/{ticket}"
    ticket = server.new_ticket(backend)
    response = tus.http.post(
        server.uploads_url,
        headers={**metadata, "Upload-Metadata": f"ticket {b64(ticket)}", "Forwarded": 'for=1.2.3.4;proto=https;host="files.example:8443"'},
    )
    assert response.headers["Location"] == f"https://files.example:8443/incoming/frontend/uploads/{ticket}"


def test_forwarded_headers_are_ignored_unless_behind_a_proxy(server, backend, tus):
    ticket = server.new_ticket(backend)
    response = tus.http.post(
        server.uploads_url,
        headers={"Upload-Length": "1", "Upload-Metadata": f"ticket {b64(ticket)}", "X-Forwarded-Host": "evil.example"},
    )
    assert response.headers["Location"] == f"{server.frontend}/incoming/frontend/uploads/{ticket}"


def test_ticketless_mode_hands_over_to_the_configured_url(start_server, backend):
    server = start_server("--ticketless-handover", backend.url)
    tus = TusClient(server)
    response = tus.http.post(
        server.uploads_url, headers={"Upload-Length": "3", "Upload-Metadata": f"filename {b64('t.txt')}"}
    )
    assert response.status_code == 201
    url = response.headers["Location"]
    assert tus.patch(url, 0, b"abc").status_code == 204
    call = backend.next_call()
    assert call["id"] == url.rsplit("/", 1)[1]
    assert call["filenameFromBrowser"] == "t.txt"
    assert call["received_sha256"] == hashlib.sha256(b"abc").hexdigest()

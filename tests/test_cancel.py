"""
Cancellation by the frontend (tus DELETE) and by the backend (cancel_upload).
"""


def test_frontend_delete_notifies_backend_and_removes_partial_file(server, backend, tus):
    ticket = server.new_ticket(backend, backendSecret="b")
    url = tus.create(ticket, 1000, filename="x.bin")
    assert tus.patch(url, 0, b"a" * 400).status_code == 204
    assert (server.storage / f"{ticket}.data").stat().st_size == 400

    response = tus.http.delete(url, params={"reason": "changed my mind"})
    assert response.status_code == 204

    call = backend.next_call()
    assert call["cancelled"] == "yes"
    assert call["cancelReason"] == "changed my mind"
    assert call["filename"] == ""
    assert call["filenameFromBrowser"] == "x.bin"
    assert call["backendSecret"] == "b"
    assert not (server.storage / f"{ticket}.data").exists()
    assert tus.head(url).status_code == 410
    response = tus.patch(url, 400, b"b" * 600)
    assert response.status_code == 410
    assert "cancelled: changed my mind" in response.text
    assert tus.state(url)["state"] == "cancelled"


def test_backend_cancel_upload_notifies_backend_and_reaches_the_frontend(server, backend, tus):
    ticket = server.new_ticket(backend, backendSecret="b")
    url = tus.create(ticket, 1000)
    assert tus.patch(url, 0, b"a" * 10).status_code == 204

    response = server.backend_call("cancel_upload", id=ticket, backendSecret="b", reason="quota exceeded")
    assert (response.status_code, response.text) == (200, "ok")

    call = backend.next_call()
    assert (call["cancelled"], call["cancelReason"]) == ("yes", "quota exceeded")
    status = tus.state(url, known="receiving")
    assert status["state"] == "cancelled"
    assert status["cancelReason"] == "quota exceeded"
    assert not (server.storage / f"{ticket}.data").exists()


def test_cancel_reasons_are_one_line(server, backend, tus):
    """
    A reason is said again in answers, headers and the log: control
    characters in it become spaces, and it is cut at 500 characters.
    """
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 10)
    assert tus.http.delete(url, params={"reason": "line one\r\nline two\x00 end"}).status_code == 204
    assert backend.next_call()["cancelReason"] == "line one line two end"
    assert tus.head(url).headers["Incoming-Error"] == f"upload {ticket} is cancelled: line one line two end"

    ticket = server.new_ticket(backend)
    assert server.backend_call("cancel_upload", id=ticket, reason="x\ny" * 1000).text == "ok"
    assert backend.next_call()["cancelReason"] == ("x y" * 1000)[:500]


def test_unclaimed_ticket_can_be_cancelled(server, backend):
    ticket = server.new_ticket(backend)
    assert server.backend_call("cancel_upload", id=ticket).text == "ok"
    assert backend.next_call()["cancelled"] == "yes"
    assert server.status(ticket)["state"] == "cancelled"


def test_cancel_after_handover_started_is_refused(server, backend, tus):
    backend.answer = "wait"
    ticket = server.new_ticket(backend)
    url = tus.create(ticket, 3)
    assert tus.patch(url, 0, b"abc").status_code == 204
    backend.next_call()
    assert tus.state(url, known="handing_over")["state"] == "awaiting_confirmation"

    response = server.backend_call("cancel_upload", id=ticket)
    assert response.status_code == 409
    assert response.text == f"cannot cancel upload: upload {ticket} is awaiting_confirmation"
    response = tus.http.delete(url)
    assert response.status_code == 409

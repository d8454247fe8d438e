"""
The backend API: compatible with Incoming!! 0.1, private, with clear errors.
"""

import requests


def test_backend_api_is_not_served_on_the_frontend_listener(server, backend):
    response = requests.post(
        server.frontend + "/incoming/backend/new_upload", data={"signalFinishURL": backend.url}
    )
    assert response.status_code == 404
    assert response.text == "no such URL: /incoming/backend/new_upload"


def test_frontend_is_not_served_on_the_backend_listener(server):
    response = requests.options(server.backend + "/incoming/frontend/uploads/")
    assert response.status_code in (404, 405)


def test_old_api_path_works(server, backend):
    response = requests.post(
        server.backend + "/incoming/0.1/backend/new_upload",
        data={"signalFinishURL": backend.url, "destType": "file", "removeFileWhenFinished": "false"},
    )
    assert response.status_code == 200
    ticket = response.text
    assert server.status(ticket)["state"] == "ticketed"


def test_status_reports_the_upload(server, backend, tus):
    ticket = server.new_ticket(backend, backendSecret="x")
    url = tus.create(ticket, 10, filename="n.txt", filetype="text/plain")
    tus.patch(url, 0, b"12345")
    status = server.status(ticket, "x")
    assert status == {
        "id": ticket,
        "state": "receiving",
        "offset": 5,
        "length": 10,
        "filename": "n.txt",
        "mimetype": "text/plain",
        "sha256": None,
        "cancelReason": None,
    }


def test_wrong_secret_is_403_and_unknown_id_is_404(server, backend):
    ticket = server.new_ticket(backend, backendSecret="right")
    response = server.backend_call("cancel_upload", id=ticket, backendSecret="wrong")
    assert response.status_code == 403
    assert response.text == f"wrong backendSecret for upload {ticket}"
    response = server.backend_call("finish_upload", id="A" * 24, backendSecret="right")
    assert response.status_code == 404
    assert response.text == "no upload with id 'AAAAAAAAAAAAAAAAAAAAAAAA'"


def test_errors_are_json_when_asked(server):
    response = requests.post(
        server.backend + "/incoming/backend/new_upload", headers={"Accept": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"error": "missing parameter signalFinishURL"}


def test_bad_new_upload_parameters(server, backend):
    def error(**params):
        response = server.backend_call("new_upload", **params)
        assert response.status_code == 400
        return response.text

    assert error(signalFinishURL="ftp://x/y") == "parameter signalFinishURL must be an absolute http or https URL"
    assert error(signalFinishURL="/relative") == "parameter signalFinishURL must be an absolute http or https URL"
    assert error(signalFinishURL="http://[::1/x") == "parameter signalFinishURL must be an absolute http or https URL"
    assert error(signalFinishURL="http://[zz]/x") == "parameter signalFinishURL must be an absolute http or https URL"
    assert (
        error(signalFinishURL=backend.url, maxSize="\u00b2")
        == "parameter maxSize must be a non-negative integer, not '\u00b2'"
    )
    assert (
        error(signalFinishURL=backend.url, maxSize="9" * 5000)
        == "parameter maxSize must be a byte count of at most 100 digits"
    )
    assert error(signalFinishURL=backend.url, destType="ceph") == "destType 'ceph' is not supported (only 'file')"
    assert (
        error(signalFinishURL=backend.url, removeFileWhenFinished="maybe")
        == "parameter removeFileWhenFinished must be true or false, not 'maybe'"
    )


def test_finish_upload_before_the_handover_is_refused(server, backend):
    ticket = server.new_ticket(backend)
    response = server.backend_call("finish_upload", id=ticket)
    assert response.status_code == 409
    assert response.text == f"cannot finish upload: upload {ticket} is ticketed"

import pytest

from harness import IncomingServer, TestBackend, TusClient


@pytest.fixture
def backend():
    test_backend = TestBackend()
    yield test_backend
    test_backend.close()


@pytest.fixture
def start_server(tmp_path):
    """
    Start Incoming!! with extra command-line options; stopped after the test.
    """
    servers = []

    def start(*options, storage=None):
        server = IncomingServer(storage or tmp_path / "storage", *options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(start_server):
    return start_server()


@pytest.fixture
def tus(server):
    return TusClient(server)

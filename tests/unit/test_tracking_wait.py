"""mlflow.wait_s: a tracking server that is still starting is waited for (bounded), one that never comes is named."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from ragsweep.search.tracking.runs import TrackingUnreachable, check_tracking


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK" if self.path == "/health" else b"{}")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def late_server() -> Iterator[str]:
    """An HTTP server that starts listening 3 s from now, like MLflow on a first kubectl apply."""
    port = _free_port()
    server: list[http.server.HTTPServer] = []

    def start() -> None:
        time.sleep(3)
        server.append(http.server.HTTPServer(("127.0.0.1", port), _Health))
        server[0].serve_forever()

    threading.Thread(target=start, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    if server:
        server[0].shutdown()


def test_a_server_that_starts_within_wait_s_is_used(late_server: str) -> None:
    with pytest.raises(TrackingUnreachable, match="unreachable"):
        check_tracking(late_server)  # asked once: not up yet
    check_tracking(late_server, wait_s=30)


def test_a_server_that_never_comes_fails_after_wait_s_naming_it() -> None:
    uri = f"http://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(TrackingUnreachable, match=r"unreachable after waiting 2 s \(mlflow.wait_s\)") as e:
        check_tracking(uri, wait_s=2)
    assert time.monotonic() - t0 >= 2
    assert uri in str(e.value)

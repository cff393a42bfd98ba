"""Error paths of the LLM client and server start-up, against a scripted local HTTP server.

A fake is right here: these tests are about how failures are reported, not about answers.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ragsweep.pipelines.llm_client.client import ChatRequest, LLMClient, LLMError
from ragsweep.search.serving.engines import ManagedServer, ServerError

OK_BODY = {
    "id": "x",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


class Script:
    """Responses to hand out in order (the last one repeats); counts requests."""

    def __init__(self, *steps: tuple[int, dict[str, str], bytes]) -> None:
        self.steps, self.count = list(steps), 0


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, headers, body = script.steps[min(script.count, len(script.steps) - 1)]
            script.count += 1
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", **headers}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", script
    server.shutdown()


REQ = [ChatRequest((("user", "hi"),), max_tokens=4)]


def _json(obj: dict) -> bytes:
    return json.dumps(obj).encode()


def test_500_forever_gives_up_with_the_endpoint_named(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.steps = [(500, {}, _json({"error": {"message": "boom"}}))]
    with pytest.raises(LLMError, match=f"{url} answered HTTP 500") as e:
        LLMClient(url, "m", max_retries=2, timeout_s=5).complete(REQ)
    assert e.value.retryable and script.count == 3  # first try + 2 retries, then a clear error, no hang


def test_400_is_not_retried(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.steps = [(400, {}, _json({"error": {"message": "bad request"}}))]
    with pytest.raises(LLMError, match="HTTP 400") as e:
        LLMClient(url, "m", max_retries=3).complete(REQ)
    assert not e.value.retryable and script.count == 1


def test_429_is_retried_after_retry_after(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.steps = [(429, {"Retry-After": "1"}, _json({"error": {"message": "slow down"}})), (200, {}, _json(OK_BODY))]
    client = LLMClient(url, "m", max_retries=2)
    assert client.complete(REQ)[0].text == "hi"
    assert script.count == 2 and client.stats.requests == 1


def test_truncated_json_is_a_clear_error(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.steps = [(200, {}, _json(OK_BODY)[:40])]
    with pytest.raises(LLMError, match=f"{url} sent an unreadable response"):
        LLMClient(url, "m", max_retries=0).complete(REQ)


def test_all_replicas_down_names_the_last_one_tried(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.steps = [(503, {}, _json({"error": {"message": "down"}}))]
    client = LLMClient([url, url + "/"], "m", max_retries=0)
    with pytest.raises(LLMError, match="HTTP 503"):
        client.complete(REQ)
    assert client.stats.failovers == 1 and script.count == 2


class _Sleeper(ManagedServer):
    """A 'server' that never answers: start-up must time out with the log tail."""

    def command(self, port: int) -> list[str]:
        return [sys.executable, "-c", "print('loading weights...', flush=True); import time; time.sleep(60)"]


class _Crasher(ManagedServer):
    def command(self, port: int) -> list[str]:
        return [sys.executable, "-c", "import sys; print('bad model file', flush=True); sys.exit(3)"]


def test_server_that_never_becomes_healthy_times_out_with_log_tail(tmp_path: Path) -> None:
    server = _Sleeper("m", tmp_path / "server.log", startup_timeout_s=2)
    with pytest.raises(ServerError, match=r"not healthy at http://127.0.0.1:\d+/v1 after 2s(.|\n)*loading weights"):
        server.start()
    assert server.proc is not None and server.proc.poll() is not None  # stopped, not left running


def test_server_that_exits_at_start_reports_code_and_log(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match=r"exited with code 3 during start-up(.|\n)*bad model file"):
        _Crasher("m", tmp_path / "server.log", startup_timeout_s=10).start()

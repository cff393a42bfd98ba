"""Backends the contract suites run against: every real implementation we have, plus a scripted one.

The scripted OpenAI-compatible endpoint is a second implementation of the chat contract, not a stand-in for
the model: it answers from the request alone (an echo, or the smallest JSON instance of the requested schema),
so the suites can check what a real model cannot show (order, exact counts, a reply that never parses).
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ragsweep.search.serving.engines import LlamaCppServer


def instance(schema: dict[str, Any]) -> Any:
    """The smallest JSON value valid under ``schema`` (the subset of JSON Schema our judges use)."""
    if "enum" in schema:
        return schema["enum"][-1]
    kind = schema.get("type")
    if kind == "object":
        return {k: instance(v) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [instance(schema.get("items", {})) for _ in range(max(1, schema.get("minItems", 1)))]
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    return "The answer is supported."[: schema.get("maxLength", 100)] if kind == "string" else None


@dataclass
class ChatBackend:
    name: str
    base_url: str
    model: str
    echoes: bool  # replies are a function of the request (order and content can be checked)
    requests: list[dict[str, Any]]  # bodies received (scripted backends only)


class _Scripted:
    def __init__(self, mode: str) -> None:
        self.mode, self.bodies = mode, []  # mode: "echo" (schema-valid JSON when asked) or "garbage"
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, obj: dict[str, Any]) -> None:
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send({"object": "list", "data": [{"id": "scripted", "object": "model"}]})

            def do_POST(self) -> None:
                req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                outer.bodies.append(req)
                self._send(outer.reply(req))

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def reply(self, req: dict[str, Any]) -> dict[str, Any]:
        last = req["messages"][-1]["content"]
        fmt = req.get("response_format") or {}
        schema = fmt.get("schema") or (fmt.get("json_schema") or {}).get("schema")
        if self.mode == "garbage":
            text = "I cannot answer in JSON, sorry."
        elif schema:
            text = json.dumps(instance(schema))
        else:
            text = "echo: " + last.strip().splitlines()[-1]
        prompt = sum(len(m["content"].split()) for m in req["messages"])
        return {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": req["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": len(text.split()),
                "total_tokens": prompt + len(text.split()),
            },
        }


@pytest.fixture(scope="session")
def scripted() -> Iterator[_Scripted]:
    s = _Scripted("echo")
    yield s
    s.server.shutdown()


@pytest.fixture(scope="session")
def garbage() -> Iterator[_Scripted]:
    s = _Scripted("garbage")
    yield s
    s.server.shutdown()


# llama.cpp is the real server on every machine; vLLM runs only where a GPU and the vllm command exist.
BACKENDS = [
    "scripted",
    pytest.param("llama.cpp", marks=pytest.mark.integration),
    pytest.param(
        "vllm",
        marks=[
            pytest.mark.integration,
            pytest.mark.skipif(
                shutil.which("vllm") is None or shutil.which("nvidia-smi") is None, reason="needs a GPU and vllm"
            ),
        ],
    ),
]


@pytest.fixture(params=BACKENDS)
def chat_backend(request: pytest.FixtureRequest, scripted: _Scripted) -> ChatBackend:
    if request.param == "scripted":
        return ChatBackend("scripted", scripted.url, "scripted", True, scripted.bodies)
    if request.param == "llama.cpp":
        server: LlamaCppServer = request.getfixturevalue("llama_server")
        return ChatBackend("llama.cpp", server.base_url, server.model_id, False, [])
    vllm = request.getfixturevalue("vllm_server")  # pragma: no cover - GPU machines only
    return ChatBackend("vllm", vllm.base_url, vllm.model_id, False, [])


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:  # pragma: no cover - GPU machines only
    import os

    from ragsweep.search.serving.engines import VllmServer

    server = VllmServer(
        os.environ.get("RAGSWEEP_VLLM_MODEL", "Qwen/Qwen2.5-0.5B-Instruct"),
        tmp_path_factory.mktemp("vllm") / "server.log",
        gpu_memory_utilization=0.5,
    )
    server.start()
    yield server
    server.stop()

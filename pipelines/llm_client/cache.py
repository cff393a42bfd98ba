"""A persistent, content-addressed cache of chat responses for deterministic (temperature 0) requests.

Contract: the key is a hash of what determines the answer (model fingerprint, messages, sampling params,
JSON schema), never the server URL or API key, so a restarted server on another port, another replica or a
re-run of the search hits the same entries. Backed by one sqlite file (WAL mode), which several processes on
one node can share; on a multi-node cluster each node keeps its own file unless the path is on shared storage.

With ``redact`` (the search's ``mlflow.redact`` masks), nothing personal reaches the file: the key is a hash of the
request (never its text), and a reply that ``redact`` would change (it holds an e-mail, a phone number, a pattern's
match) is kept in this process's memory only, unmasked, so every metric is computed on the real reply; other
replies are stored as usual.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ragsweep.pipelines.llm_client.chat import ChatRequest, ChatResponse

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL
)
"""


def cacheable(req: ChatRequest) -> bool:
    """Only deterministic requests are cached: a sampled answer is a draw, not a fact about the config."""
    return req.temperature == 0.0


def request_key(model_fingerprint: str, req: ChatRequest) -> str:
    blob = json.dumps(
        {
            "model": model_fingerprint,
            "messages": req.messages,
            "temperature": req.temperature,
            "max_tokens": req.max_tokens,
            "seed": req.seed,
            "schema": req.json_schema,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class RequestCache:
    """Thread-safe within a process; safe across processes through sqlite's own locking."""

    def __init__(self, path: Path, redact: Callable[[str], str] | None = None) -> None:
        self.path = Path(path)
        self.redact = redact
        self._private: dict[str, ChatResponse] = {}  # replies holding personal data: never on disk
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(_SCHEMA)
        self._conn.commit()

    def get(self, key: str) -> ChatResponse | None:
        if key in self._private:
            r = self._private[key]
            return ChatResponse(
                text=r.text,
                prompt_tokens=r.prompt_tokens,
                completion_tokens=r.completion_tokens,
                latency_s=r.latency_s,
                cached=True,
                started_at=time.time(),
            )
        with self._lock:
            row = self._conn.execute(
                "SELECT text, prompt_tokens, completion_tokens, latency_s FROM responses WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return ChatResponse(
            text=row[0],
            prompt_tokens=row[1],
            completion_tokens=row[2],
            latency_s=row[3],
            cached=True,
            started_at=time.time(),
        )

    def put(self, key: str, resp: ChatResponse) -> None:
        if self.redact is not None and self.redact(resp.text) != resp.text:
            self._private[key] = resp
            return
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                (key, resp.text, resp.prompt_tokens, resp.completion_tokens, resp.latency_s),
            )
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # Pickled into Ray workers as a path; each process opens its own connection.
    def __reduce__(self) -> tuple[type[RequestCache], tuple[Path, Callable[[str], str] | None]]:
        return (RequestCache, (self.path, self.redact))

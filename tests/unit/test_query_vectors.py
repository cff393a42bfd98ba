"""StoredQueries: vectors embedded once and read back, merged by concurrent savers, a damaged file ignored.

The inner embedder here is a counting stand-in (the real model's path is proven by test_retrieval_screen, which
reads stored vectors in a new process and compares them with the model's)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragsweep.pipelines.embedders.query_vectors import StoredQueries, query_vectors_file, stored_queries


class Counting:
    spec, backend = "default", "torch"

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.loads = 0

    @property
    def dim(self) -> int:
        return 3

    def load(self) -> None:
        self.loads += 1

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.asked += texts
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)

    encode = encode_queries


def test_saved_vectors_are_read_back_without_the_model(tmp_path: Path) -> None:
    first = stored_queries(Counting(), tmp_path)
    assert first.stored == 0 and first.dim == 3
    v = first.encode_queries(["a cat", "a dog", "a cat"])
    assert first.inner.asked == ["a cat", "a dog"] and v.shape == (3, 3)
    first.save()
    again = stored_queries(Counting(), tmp_path)
    assert again.stored == 2 and again.dim == 3
    np.testing.assert_array_equal(again.encode_queries(["a dog", "a cat"]), v[[1, 0]])
    assert again.inner.asked == [] and again.inner.loads == 0
    assert stored_queries(again, tmp_path) is again
    assert again.encode_queries([]).shape == (0, 3)


def test_savers_merge_and_other_embedders_do_not_share(tmp_path: Path) -> None:
    a, b = stored_queries(Counting(), tmp_path), stored_queries(Counting(), tmp_path)
    a.encode_queries(["one"])
    b.encode_queries(["two"])
    a.save()
    b.save()
    assert stored_queries(Counting(), tmp_path).stored == 2
    other = Counting()
    other.spec = "/models/other"
    assert query_vectors_file(tmp_path, other) != query_vectors_file(tmp_path, Counting())
    assert stored_queries(other, tmp_path).stored == 0
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_damaged_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    path = query_vectors_file(tmp_path, Counting())
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    s = StoredQueries(Counting(), path)
    assert s.stored == 0
    s.encode_queries(["x"])
    s.save()
    assert StoredQueries(Counting(), path).stored == 1

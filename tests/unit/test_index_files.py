"""The index's on-disk pieces that need no model: chunk files, progress output, the memory estimate."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from ragsweep.pipelines.base.progress import Progress
from ragsweep.pipelines.chunk_file import OFFSETS, ChunkFile, ChunkWriter
from ragsweep.pipelines.chunking import Chunk
from ragsweep.pipelines.index import BUILD_BYTES_PER_CHUNK, build_memory_estimate
from ragsweep.search.cli import main
from tests.conftest import REPO


def _chunks(n: int) -> list[Chunk]:
    return [Chunk(i, f"d{i % 3}", i, i + 5, f'text {i} é\n"q"') for i in range(n)]


def test_chunk_file_reads_any_chunk_without_loading_all(tmp_path: Path) -> None:
    w = ChunkWriter(tmp_path)
    w.write(_chunks(50))
    assert w.close() == 50
    f = ChunkFile(tmp_path)
    assert len(f) == 50 and f[7] == _chunks(50)[7] and f[-1].id == 49 and f[2:4] == _chunks(50)[2:4]
    assert list(f) == _chunks(50)
    assert pickle.loads(pickle.dumps(f))[10] == f[10]  # reopens from its folder in another process
    with pytest.raises(IndexError, match="50 chunks"):
        f[50]
    (tmp_path / OFFSETS).unlink()  # a folder written before offsets existed
    assert ChunkFile(tmp_path)[33] == f[33]


def test_chunk_writer_refuses_ids_out_of_order(tmp_path: Path) -> None:
    w = ChunkWriter(tmp_path)
    with pytest.raises(ValueError, match="0..n-1"):
        w.write([_chunks(3)[1]])


def test_empty_chunk_file(tmp_path: Path) -> None:
    ChunkWriter(tmp_path).close()
    assert len(ChunkFile(tmp_path)) == 0 and list(ChunkFile(tmp_path)) == []


def test_progress_off_a_terminal_prints_a_final_line_and_periodic_ones(capfd: pytest.CaptureFixture[str]) -> None:
    with Progress("index abc", 10, "chunks", every_s=3600) as p:
        for _ in range(10):
            p.update(1)
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[ragsweep] index abc: 10 chunks in ") and "chunks/s" in lines[0]
    with Progress("index abc", 10, "chunks", every_s=0) as p:
        p.update(4)
    err = capfd.readouterr().err
    assert "4/10 chunks" in err and "ETA" in err


def test_progress_can_be_silenced(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGSWEEP_PROGRESS", "0")
    with Progress("x", 2, "chunks", every_s=0) as p:
        p.update(1)
    assert capfd.readouterr().err == ""


def test_memory_estimate_counts_the_smallest_step() -> None:
    chunks, peak = build_memory_estimate(1_000_000, 500, 100)
    assert chunks == 1_000_000 // 400 + 1 and peak > chunks * BUILD_BYTES_PER_CHUNK
    assert build_memory_estimate(1_000_000, 500, 499)[0] == 1_000_000 // 250 + 1  # at least half a chunk per step


def test_a_corpus_too_large_for_memory_is_refused_before_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = (REPO / "data/xquad_en/corpus.jsonl").as_posix()
    questions = (REPO / "data/xquad_en/questions.jsonl").as_posix()
    cfg = tmp_path / "big.yaml"
    cfg.write_text(
        f"dataset: {{corpus: {corpus}, questions: {questions}}}\n"
        f"pipeline: {{index_memory_gb: 0.5}}\nstorage_dir: {tmp_path / 'runs'}\n"
    )
    for cmd in (["validate", "--config", str(cfg)], ["search", "--config", str(cfg)]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert "corpus.jsonl: indexing it at chunk_size 400" in err and "index_memory_gb = 0.5 GB" in err
    assert not (tmp_path / "runs").exists()  # nothing started, nothing written


def test_a_secondary_progress_speaks_only_when_slow(capfd: pytest.CaptureFixture[str]) -> None:
    with Progress("index abc: vector store", 3, "chunks", final=False) as p:
        p.update(3)
    assert capfd.readouterr().err == ""


def test_the_embedder_backend_is_part_of_the_index_key_except_torch() -> None:
    from ragsweep.pipelines.embedders.local import Embedder, EmbedderError, embedder_key

    assert embedder_key("default", "torch") == "default"  # caches built before backends existed stay valid
    assert embedder_key("default", "onnx-int8") == "default@onnx-int8"
    with pytest.raises(EmbedderError, match="expected one of torch, onnx, onnx-int8"):
        Embedder(backend="tensorrt")

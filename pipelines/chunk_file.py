"""An index's chunks on disk, read one at a time: opening costs the same for 100 chunks or a million.

Contract: :func:`write_chunks` streams chunks to ``chunks.jsonl`` (one JSON object per line, ids 0..n-1 in
order) and their byte offsets to ``chunk_offsets.npy``. :class:`ChunkFile` is a read-only ``Sequence[Chunk]``
over those files: ``len`` and ``chunk_file[i]`` read only the offsets (memory-mapped, shared by every process
that opens the same index) and the one line asked for. A folder written before offsets existed gets them
computed once on open.
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, overload

import numpy as np

from ragsweep.pipelines.chunking import Chunk

CHUNKS, OFFSETS = "chunks.jsonl", "chunk_offsets.npy"


class ChunkWriter:
    """Appends chunks to ``folder/chunks.jsonl``; :meth:`close` writes the offsets. Ids must count from 0."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._f = open(folder / CHUNKS, "wb")
        self._offsets = [0]

    def write(self, chunks: Iterable[Chunk]) -> None:
        for c in chunks:
            if c.id != len(self._offsets) - 1:
                raise ValueError(f"chunk ids must be 0..n-1 in order; got {c.id} at position {len(self._offsets) - 1}")
            line = (json.dumps(asdict(c), ensure_ascii=False) + "\n").encode("utf-8")
            self._f.write(line)
            self._offsets.append(self._offsets[-1] + len(line))

    def close(self) -> int:
        """Finish both files; returns the number of chunks written."""
        self._f.close()
        np.save(self.folder / OFFSETS, np.asarray(self._offsets, dtype=np.int64))
        return len(self._offsets) - 1


def _scan_offsets(path: Path) -> np.ndarray:
    offsets = [0]
    with open(path, "rb") as f:
        for line in f:
            offsets.append(offsets[-1] + len(line))
    return np.asarray(offsets, dtype=np.int64)


class ChunkFile(Sequence[Chunk]):
    """The chunks of one built index, parsed on access (see the module contract)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        path = self.folder / CHUNKS
        offsets = self.folder / OFFSETS
        self._offsets = np.load(offsets, mmap_mode="r") if offsets.exists() else _scan_offsets(path)
        self._mm: mmap.mmap | None = None
        if len(self) and path.stat().st_size:
            with open(path, "rb") as f:  # the map outlives the file object
                self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)

    def __reduce__(self) -> tuple[Any, ...]:  # a memory map cannot be pickled: reopen from the folder instead
        return (ChunkFile, (self.folder,))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @overload
    def __getitem__(self, i: int) -> Chunk: ...
    @overload
    def __getitem__(self, i: slice) -> list[Chunk]: ...
    def __getitem__(self, i: int | slice) -> Chunk | list[Chunk]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"chunk {i} out of range: the index has {n} chunks")
        i %= n
        assert self._mm is not None
        line = self._mm[int(self._offsets[i]) : int(self._offsets[i + 1])]
        return Chunk(**json.loads(line))

    def __iter__(self) -> Iterator[Chunk]:
        with open(self.folder / CHUNKS, encoding="utf-8") as f:
            for line in f:
                yield Chunk(**json.loads(line))

"""Task stdout as fixed-size chunks written at byte offsets.

A packet at any offset touches one or more chunks. Each chunk keeps its bytes
and the spans of them that were written, so that a packet past the end leaves
a hole the missing packet fills when it arrives, and a hole is never mistaken
for bytes: readers get the bytes written contiguously from where they start,
and learn whether more are stored after a hole. Writing the same bytes at the
same offset again changes nothing; writing other bytes over written ones is
refused (`Refused`): a run's stdout never changes once written.
"""

import dataclasses
from typing import Any, Mapping

from functions.errors import Conflict

CHUNK_SIZE = 100 * 1024
#: Stdout kept per run, as in the reference.
MAX_SIZE = 100 * 1024 * 1024

Span = tuple[int, int]


class Refused(Conflict):
    """A packet the run's stdout cannot take: it would change bytes written,
    or it lies past the end the run recorded. A bot sending one is confused."""


@dataclasses.dataclass(frozen=True)
class Chunk:
    """`data` holds each written byte at its position (a hole reads as NUL
    here, never to a reader); `spans` are the written [start, end) ranges,
    sorted and disjoint."""

    data: bytes = b""
    spans: tuple[Span, ...] = ()

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> "Chunk":
        """A chunk stored without spans (before they were kept) counts as written whole."""
        if doc is None:
            return cls()
        data = doc["data"]
        flat = doc.get("spans", [0, len(data)])
        return cls(data, tuple(zip(flat[::2], flat[1::2])))

    def to_doc(self) -> dict[str, Any]:
        # Firestore arrays cannot hold arrays: the spans are flattened.
        return {"data": self.data, "spans": [bound for span in self.spans for bound in span]}

    def conflict(self, position: int, piece: bytes) -> int | None:
        """The position of the first written byte that `piece`, written at
        `position`, would change; None when it changes none."""
        for start, stop in self.spans:
            low, high = max(start, position), min(stop, position + len(piece))
            written, new = self.data[low:high], piece[low - position:high - position]
            if written != new:
                return low + next(i for i, (a, b) in enumerate(zip(written, new)) if a != b)
        return None

    def write(self, position: int, piece: bytes) -> "Chunk":
        """This chunk with `piece` written at `position` (see `conflict`)."""
        end = position + len(piece)
        padded = self.data.ljust(position, b"\0")
        return Chunk(padded[:position] + piece + padded[end:], _union(self.spans, (position, end)))

    def written_until(self, position: int) -> int:
        """Where the written bytes from `position` stop (`position` when it is not written)."""
        return next((stop for start, stop in self.spans if start <= position < stop), position)


def _union(spans: tuple[Span, ...], new: Span) -> tuple[Span, ...]:
    merged: list[list[int]] = []
    for start, stop in sorted((*spans, new)):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    return tuple((start, stop) for start, stop in merged)


def pieces(offset: int, data: bytes) -> list[tuple[int, int, bytes]]:
    """Splits a packet into (chunk index, position in chunk, bytes)."""
    out = []
    while data:
        index, position = divmod(offset, CHUNK_SIZE)
        take = CHUNK_SIZE - position
        out.append((index, position, data[:take]))
        offset, data = offset + take, data[take:]
    return out


def write(chunks: Mapping[int, Chunk], offset: int, data: bytes) -> dict[int, Chunk]:
    """The chunks the packet changes (by index), written; `chunks` holds those
    it touches. Raises Refused naming the first written byte it would change."""
    changed = {}
    for index, position, piece in pieces(offset, data):
        chunk = chunks.get(index, Chunk())
        differs = chunk.conflict(position, piece)
        if differs is not None:
            raise Refused(f"output: byte {index * CHUNK_SIZE + differs} differs from the stdout already "
                            f"written there (a packet of {len(data)} bytes at offset {offset})")
        written = chunk.write(position, piece)
        if written != chunk:
            changed[index] = written
    return changed


def chunk_range(offset: int, length: int) -> range:
    return range(offset // CHUNK_SIZE, (offset + length - 1) // CHUNK_SIZE + 1)


@dataclasses.dataclass(frozen=True)
class Read:
    """Bytes read from an offset, and whether they stop at a hole: bytes at
    the offset where they stop are missing while later ones are stored (or
    the run's end said its stdout is longer)."""

    data: bytes
    gap: bool


def read(chunks: Mapping[int, Chunk], offset: int, length: int, final_length: int | None = None) -> Read:
    """Up to `length` bytes written contiguously from `offset`, from the
    chunks of `chunk_range(offset, length)`; `final_length`: the length the
    run's end recorded, if it ended."""
    out, position, end = bytearray(), offset, offset + length
    while position < end:
        index, in_chunk = divmod(position, CHUNK_SIZE)
        chunk = chunks.get(index, Chunk())
        stop = min(chunk.written_until(in_chunk), in_chunk + end - position)
        if stop == in_chunk:
            break
        out += chunk.data[in_chunk:stop]
        position += stop - in_chunk
    stored_after = any(index * CHUNK_SIZE + chunk.spans[-1][1] > position
                       for index, chunk in chunks.items() if chunk.spans)
    gap = position < end and (stored_after or (final_length is not None and position < final_length))
    return Read(bytes(out), gap)

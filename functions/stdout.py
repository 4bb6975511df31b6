"""Task stdout as fixed-size chunks written at byte offsets.

A packet at any offset touches one or more chunks; writing the same bytes at
the same offset again changes nothing, and a packet past the end leaves a hole
of NUL bytes that the missing packet fills when it arrives.
"""

CHUNK_SIZE = 100 * 1024
#: Stdout kept per run, as in the reference.
MAX_SIZE = 100 * 1024 * 1024


def pieces(offset: int, data: bytes) -> list[tuple[int, int, bytes]]:
    """Splits a packet into (chunk index, position in chunk, bytes)."""
    out = []
    while data:
        index, position = divmod(offset, CHUNK_SIZE)
        take = CHUNK_SIZE - position
        out.append((index, position, data[:take]))
        offset, data = offset + take, data[take:]
    return out


def merge(existing: bytes, position: int, data: bytes) -> bytes:
    padded = existing.ljust(position, b"\0")
    return padded[:position] + data + padded[position + len(data):]


def chunk_range(offset: int, length: int) -> range:
    return range(offset // CHUNK_SIZE, (offset + length - 1) // CHUNK_SIZE + 1)

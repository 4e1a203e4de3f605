"""What a worker's patch text brings in, read without applying it, within a byte budget.

Used before anything is stored or applied: the added lines and header lines of text hunks, and the
forward hunks of ``GIT binary patch`` sections inflated (git's base85 + zlib), so a secret in a
binary file, or a hunk that would inflate to hundreds of megabytes, is seen without trusting git's
idea of what is text. A ``delta`` hunk only shows the bytes it inserts (the rest is copied from the
pinned file); the authoritative scan is delivery's, on the blobs the patch produces.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass, field

#: git's base85 line length prefix: ``A``-``Z`` are 1-26 bytes, ``a``-``z`` 27-52.
_LENGTHS = {**{chr(ord("A") + i): i + 1 for i in range(26)}, **{chr(ord("a") + i): i + 27 for i in range(26)}}


class PatchUnreadable(ValueError):
    """A binary hunk that cannot be decoded (so it cannot be scanned either)."""


@dataclass
class PatchContent:
    """The parts of a patch that end up in the repository (never the removed or context lines)."""

    #: Added lines, file headers (names) and every other line outside binary data, as bytes.
    text: bytes = b""
    #: Inflated literal hunks and the inserted bytes of delta hunks.
    binary: list[bytes] = field(default_factory=list)
    #: The largest size a binary hunk declares for its result (literal size or delta target size).
    largest_binary: int = 0


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= len(data):
            raise PatchUnreadable("truncated delta header")
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def _delta_inserts(delta: bytes) -> tuple[int, bytes]:
    """A git delta's target size and the bytes its insert instructions add."""
    _, at = _varint(delta, 0)
    target, at = _varint(delta, at)
    inserted = bytearray()
    while at < len(delta):
        op = delta[at]
        at += 1
        if op & 0x80:  # copy from the base: offset and size bytes follow, one per set flag bit
            at += bin(op & 0x7F).count("1")
        elif op:
            inserted += delta[at:at + op]
            at += op
        else:
            raise PatchUnreadable("delta opcode 0")
    return target, bytes(inserted)


def _inflate(lines: list[str], limit: int) -> bytes:
    raw = bytearray()
    try:
        for line in lines:
            size = _LENGTHS.get(line[:1])
            if size is None:
                raise PatchUnreadable("bad base85 line length")
            raw += base64.b85decode(line[1:])[:size]
        inflater = zlib.decompressobj()
        data = inflater.decompress(bytes(raw), limit + 1)
    except (ValueError, zlib.error, binascii.Error) as exc:
        raise PatchUnreadable(f"binary hunk cannot be decoded: {type(exc).__name__}") from None
    if len(data) > limit:
        raise PatchUnreadable(f"binary hunk inflates beyond {limit} bytes")
    return data


def read_patch(patch: str, *, limit: int) -> PatchContent:
    """Split ``patch`` into what it adds; raises :class:`PatchUnreadable` for undecodable binary hunks.

    ``limit`` bounds each inflated hunk (and is what ``largest_binary`` is compared against by callers).
    """
    content = PatchContent()
    text: list[str] = []
    lines = patch.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line != "GIT binary patch":
            if not line.startswith(("-", " ")):
                text.append(line)
            continue
        forward = True
        while i < len(lines) and lines[i].startswith(("literal ", "delta ")):
            kind, _, size_text = lines[i].partition(" ")
            i += 1
            start = i
            while i < len(lines) and lines[i]:
                i += 1
            data_lines, i = lines[start:i], i + 1
            if not size_text.isdigit():
                raise PatchUnreadable("binary hunk without a size")
            if not forward:  # the reverse hunk describes the old content, which is not delivered
                continue
            forward = False
            declared = int(size_text)
            if kind == "literal":
                content.largest_binary = max(content.largest_binary, declared)
                if declared <= limit:
                    content.binary.append(_inflate(data_lines, limit))
            elif declared <= limit:
                target, inserted = _delta_inserts(_inflate(data_lines, limit))
                content.largest_binary = max(content.largest_binary, target)
                content.binary.append(inserted)
            else:
                content.largest_binary = max(content.largest_binary, declared)
    content.text = "\n".join(text).encode("utf-8", "surrogateescape")
    return content

"""Deterministic text embeddings in which similar texts lie close, for `/v1/embeddings`.

Feature hashing: the normalised words of a text (lowercased runs of letters and digits) and its
word bigrams are each hashed (CRC-32 of the word; a bigram mixes its two words' codes; the same in
every process) to one of `dimensions` coordinates with a sign, counted, and the vector is scaled
to unit length. Texts sharing most words
and word pairs (a paraphrase) get a cosine similarity near 1; unrelated texts share only common
words and land near 0. No model, about 20 microseconds per short text.
"""

from __future__ import annotations

import base64
import math
import re
import sys
import zlib
from array import array

__all__ = ["DIMENSIONS", "embed", "encode_base64"]

DIMENSIONS = 256
_WORD = re.compile(r"\w+")
_word_codes: dict[str, int] = {}


def _code(word: str) -> int:
    if len(_word_codes) > 200_000:
        _word_codes.clear()
    code = _word_codes[word] = zlib.crc32(word.encode())
    return code


def embed(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    """The unit-length embedding of `text` (all zeros for a text without words)."""
    words = _WORD.findall(text.lower())
    get = _word_codes.get
    codes = [get(word) or _code(word) for word in words]
    # a bigram's code mixes its words' codes (multiplicative hashing), 32 bits like a CRC-32
    codes += [(first * 0x9E3779B1 + second) * 0x85EBCA6B >> 16 & 0xFFFFFFFF for first, second in zip(codes, codes[1:])]
    counts: dict[int, float] = {}
    for code in codes:
        index = code % dimensions
        counts[index] = counts.get(index, 0.0) + (1.0 if code & 0x80000000 else -1.0)
    norm = math.sqrt(sum(v * v for v in counts.values()))
    vector = [0.0] * dimensions
    if norm:
        for index, value in counts.items():
            vector[index] = value / norm
    return vector


def encode_base64(vector: list[float]) -> str:
    """`encoding_format: "base64"`: little-endian float32 values, base64-encoded (the OpenAI wire format)."""
    values = array("f", vector)
    if sys.byteorder == "big":
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")

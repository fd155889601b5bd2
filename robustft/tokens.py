"""Token counting with tiktoken, and a plain estimate when its encoding files cannot be fetched.

tiktoken downloads its encodings on first use; offline machines get a regex estimate instead
(about one token per word piece), with one note on stderr so nobody mistakes it for exact counts.
Counts are used for token usage when a server reports none, and for the context relabeler's
prompt budget (`denoise.context_token_budget`).
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache

ENCODING = "cl100k_base"
_PIECE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@lru_cache(maxsize=1)
def _encoding():
    try:
        import tiktoken

        return tiktoken.get_encoding(ENCODING)
    except Exception as e:  # no network, no cache, no package: all mean the same here
        print(f"robustft: note: tiktoken's {ENCODING} encoding is unavailable ({type(e).__name__}); "
              "token counts are estimates from word pieces", file=sys.stderr)
        return None


def estimate_tokens(text: str) -> int:
    return len(_PIECE.findall(text))


def count_tokens(text: str) -> int:
    enc = _encoding()
    if enc is None:
        return estimate_tokens(text)
    return len(enc.encode(text, disallowed_special=()))


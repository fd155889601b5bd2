"""Text from the data shown on a terminal without letting it drive the terminal.

Dataset rows, model replies and file names can hold escape sequences that clear the screen,
recolour it, set the window title or hide text (ESC, other C0/C1 controls, bidirectional
overrides). `visible` spells each such character out (`\\x1b`, `\\u202e`) so it is seen, not obeyed;
newlines, tabs and Windows line ends stay as they are.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline (and a carriage return that ends a Windows line), DEL, C1
# controls, and the bidirectional overrides and isolates that can make text read differently.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]|\r(?!\n)")


def _spell(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` with every character that would control the terminal written out as an escape."""
    return _CONTROL.sub(_spell, text)


def json_visible(text: str) -> str:
    """JSON text (from json.dumps) with the same characters as JSON escapes: still the same JSON value.

    json.dumps escapes C0 controls itself; DEL, C1 and the bidirectional controls it leaves raw.
    They can only occur inside JSON strings, where `\\uXXXX` means the same character.
    """
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)

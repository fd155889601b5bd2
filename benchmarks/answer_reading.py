"""Reading answers out of hostile replies: the patterns before issue 16 against today's readers.

    python -m benchmarks.answer_reading

A reply of "Answer" followed by N spaces (no colon) made the old marker pattern backtrack over
every split of the spaces between its two neighbouring quantifiers: quadratic. The old pattern is
copied here as the baseline and timed at sizes it can finish; `answers.extract_answer` (every
pattern possessive, no per-character loops) is timed on the same shape at those sizes and at
1 MB, and on every hostile reply of `tests/test_answers_linear.py`. Wall times on a shared
machine: the ratios and the growth per doubling are what the figures say.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from ._runs import write_results

OLD_MARKER = re.compile(r"(?<![A-Za-z])answer[ \t]*(?:\*\*|__|\*)?[ \t]*[:\uff1a]", re.IGNORECASE)
SIZES = (5_000, 10_000, 20_000)
MB = 1_000_000


def _time(fn, text: str, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> None:
    from robustft.answers import extract_answer

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_answers_linear import HOSTILE, READERS  # the same hostile replies the test reads

    rows = []
    for n in SIZES:
        text = "Answer" + " " * n
        old = _time(lambda t: OLD_MARKER.search(t), text, repeat=1)
        new = _time(lambda t: extract_answer(t, "text"), text)
        rows.append({"spaces": n, "old_marker_s": round(old, 4), "extract_answer_s": round(new, 6),
                     "ratio": round(old / max(new, 1e-9), 1)})
    big = _time(lambda t: extract_answer(t, "text"), "Answer" + " " * MB)
    worst = {}
    for reader, read in READERS.items():
        took = max(_time(read, text, repeat=1) for text in HOSTILE.values())
        worst[reader] = round(took, 3)
    growth = rows[-1]["old_marker_s"] / max(rows[-2]["old_marker_s"], 1e-9)
    payload = {"old_marker": rows, "old_growth_per_doubling": round(growth, 2),
               "extract_answer_1mb_s": round(big, 4), "worst_s_per_reader_on_1mb_hostile_replies": worst,
               "note": "wall time on a shared 2-core machine with other work running"}
    lines = ["# Reading answers out of hostile replies", "",
             "\"Answer\" and N spaces, no colon: the old marker pattern (baseline, same run) against "
             "`extract_answer` today. Wall time on a shared 2-core machine under other load.", "",
             "| spaces | old pattern, s | extract_answer, s | ratio |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['spaces']:,} | {r['old_marker_s']} | {r['extract_answer_s']} | {r['ratio']}x |" for r in rows]
    lines += ["", f"The old pattern's time grows {growth:.1f}x per doubling (quadratic: 4x); at 1 MB it would take "
              f"about {rows[-1]['old_marker_s'] * (MB / SIZES[-1]) ** 2 / 3600:.0f} hours. `extract_answer` on 1 MB of "
              f"it: {big:.3f} s.", "",
              f"Slowest call of each reader over the {len(HOSTILE)} hostile 1 MB replies of "
              "tests/test_answers_linear.py:", "", "| reader | slowest, s |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in worst.items()]
    write_results("answer_reading", payload, "\n".join(lines))


if __name__ == "__main__":
    main()

"""Reading answers out of hostile replies: the patterns before issue 16 against today's readers.

    python -m benchmarks.answer_reading

A reply of "Answer" followed by N spaces (no colon) made the old marker pattern backtrack over
every split of the spaces between its two neighbouring quantifiers: quadratic. The old pattern is
copied here as the baseline and timed at sizes it can finish; `answers.extract_answer` (every
pattern possessive, no per-character loops) is timed on the same shape at those sizes and at
1 MB, and on every hostile reply of `tests/test_answers_linear.py`. Wall times on a shared
machine: the ratios and the growth per doubling are what the figures say.

    python -m benchmarks.answer_reading --compare-with DIR [--compare-label REV]

also times ordinary replies (the calls a run makes: `extract_answer`, `answers_match`,
`normalize_label` per task) in microseconds per call, here and with the robustft source tree at
DIR (a `git archive` of an earlier commit), interleaved in one run: issue 19 put the task types
behind a registry, and this says what that costs per call.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile
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


ORDINARY = {  # (task, reply, options, label): replies as the simulator and real models write them
    "multiple_choice": ("Let me think about each option in turn.\nThe second one fits.\nAnswer: B",
                        ["Mars", "Venus", "Earth", "Jupiter"], "b"),
    "numeric": ("First 12 * 3 = 36, then add 6.\nSo the total is 42.\n**Answer:** $1,042.50", None, "1042.5"),
    "text": ("The capital of France is well known.\nAnswer: **Paris**", None, "the city of Paris"),
    "open": ("Here is my response.\nAnswer: Water boils at 100 degrees Celsius at sea level,\nand lower up a "
             "mountain.", None, "Water boils at 100 degrees Celsius at sea level."),
}
CALLS = 20_000


def ordinary_us() -> dict[str, float]:
    """Microseconds per call of the answer functions on `ORDINARY`, best of 5 rounds."""
    from robustft.answers import answers_match, extract_answer, normalize_label

    out = {}
    for task, (reply, options, label) in ORDINARY.items():
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(CALLS):
                found = extract_answer(reply, task, options)
                answers_match(found, normalize_label(label, task, options), task)
            best = min(best, time.perf_counter() - start)
        out[task] = round(best / CALLS * 1e6, 3)
    return out


def _ordinary_in(source: str) -> dict[str, float]:
    """`ordinary_us` in a fresh process that imports robustft from `source` only."""
    code = (f"import json, time\nORDINARY = {ORDINARY!r}\nCALLS = {CALLS}\n{inspect.getsource(ordinary_us)}\n"
            "import robustft\nprint(robustft.__file__)\nprint(json.dumps(ordinary_us()))")
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd,
                              env={**os.environ, "PYTHONPATH": source})
    where, figures = proc.stdout.strip().splitlines()[-2:]
    assert where.startswith(source), f"robustft came from {where}, not {source}"
    return json.loads(figures)


def compare(source: str, rounds: int = 3) -> dict:
    """`ordinary_us` here and in the tree at `source`, interleaved, each process fresh; the best of
    `rounds` per task on each side."""
    here, there = str(Path(__file__).resolve().parents[1]), str(Path(source).resolve())
    best: dict[str, dict[str, float]] = {"now": {}, "before": {}}
    for _ in range(rounds):
        for side, tree in (("before", there), ("now", here)):
            for task, us in _ordinary_in(tree).items():
                best[side][task] = min(us, best[side].get(task, float("inf")))
    ratio = {t: round(best["now"][t] / best["before"][t], 3) for t in best["now"]}
    return {"us_per_call_before": best["before"], "us_per_call_now": best["now"], "ratio_now_to_before": ratio,
            "before": str(source), "calls": "extract_answer + normalize_label + answers_match, one of each"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.answer_reading")
    parser.add_argument("--compare-with", metavar="DIR", help="a robustft source tree to time ordinary replies against")
    parser.add_argument("--compare-label", metavar="TEXT", help="what that tree is (a commit), for the results")
    args = parser.parse_args(argv)
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
    if args.compare_with:
        payload["ordinary_replies"] = cmp = compare(args.compare_with)
        cmp["before"] = args.compare_label or cmp["before"]
        lines += ["", "Ordinary replies, microseconds per call (extract_answer, normalize_label and answers_match, one "
                  f"of each; best of 3 fresh processes x 5 rounds x {CALLS:,} calls, interleaved; before = "
                  f"{cmp['before']}):", "", "| task | before, us | now, us | now / before |", "| --- | --- | --- | --- |"]
        lines += [f"| {t} | {cmp['us_per_call_before'][t]} | {cmp['us_per_call_now'][t]} | "
                  f"{cmp['ratio_now_to_before'][t]} |" for t in ORDINARY]
    write_results("answer_reading", payload, "\n".join(lines))


if __name__ == "__main__":
    main()

"""Open-ended benchmark data with gold labels, made from a multiple-choice dataset.

    python -m robustft.sim make-open-data --source ../shared/data/arc/labeled.csv --out data/open30 --noise 0.3

Each question's gold response is a short paragraph built around its key fact (the text of its
correct option) that also names the question's subject; the other options are its distractors.
`--noise` makes exactly round(noise x rows) responses wrong, of these kinds (see
`robustft.sim.facts` for "right"):

- `swap`: another question's gold response (one that does not state this question's key fact);
- `key_changed`: this question's gold response with its key fact replaced by another option's text;
- `confabulation`: the same change, on a question the simulated experts do not know: each of their
  replies states a fact drawn anew from the key and the distractors (gold column `confabulates`),
  so their replies vary between samples;
- `consistent`: the same change, on a question where the simulated experts make the same mistake:
  their replies state the given response's wrong fact (gold column `mistake`) as often as a right
  reply would state the key.

By default (`kinds` unset) half the noise is `swap` and half `key_changed` (`swap_fraction`);
`--kinds swap,key_changed,confabulation,consistent` deals the noisy rows out to the listed kinds
in turn instead.

The noisy rows are the first ones of a seeded permutation of the rows, and each row's noisy
response depends only on the seed and the row, so the noise levels made with one seed are nested
(a response wrong at 30 % is wrong, the same way, at 50 %). Of the noisy rows, floor(noisy x
swap_fraction) are swaps, spread evenly along the permutation; a row none of whose distractors can
be put in (it would still be right) becomes a swap instead, and the manifest counts it. Rows
repeating an earlier question's text are left out, since no prompt could tell them apart.

Files written to OUT:

- `gold.csv`, `gold.jsonl`: id, question, answer (the gold response), key, distractors (JSON list),
  and with `kinds`: mistake, confabulates (how the simulated experts treat the question).
  This is the gold file `robustft.sim` serves in open-ended mode (`--gold OUT/gold.csv`).
- `noisy.csv`, `noisy.jsonl`: id, question, answer: the input a user would have.
- `gold.messages.jsonl`, `noisy.messages.jsonl`: the same rows in OpenAI chat format, `{"id",
  "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": response}]}`
  (the gold file also carries `key` and `distractors`).
- `noise.csv`: id, kind (swap | key_changed | confabulation | consistent), source (the id whose response was swapped in, or the
  option text put in place of the key fact), for every noisy row.
- `manifest.json`: the settings and the counts.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, InputError
from ..files import atomic_write, write_json, write_jsonl
from . import facts
from .gold import GoldItem, load_gold
from .index import normalize_space
from .model import _rng

__all__ = ["NOISE_KINDS", "make_open_data", "main"]

NOISE_KINDS = ("swap", "key_changed", "confabulation", "consistent")

# Sentences of a gold response: the first states the key fact, the second names the question's
# subject, the rest are words the sim's paraphraser can reword.
_OPENERS = ("The best answer is {key}.", "The correct choice here is {key}.", "{key_cap} is the right answer.",
            "Looking at the main idea, the response that fits best is {key}.", "The answer that fits is {key}.")
_TOPICS = ("The question is about {topic}.", "This concerns {topic}.", "Here the subject is {topic}.")
_SUPPORTS = ("Considering what the question describes, this fits the situation, because it matches the basic "
             "science involved.",
             "This follows from the basic principle involved, and the situation described supports it clearly.",
             "When we consider the situation described, this option is the one that fits.",
             "It is important to consider the whole situation: the facts described point to this option.")
_CLOSINGS = ("The other options do not agree with the evidence as clearly.",
             "The other possibilities are not consistent with the facts.",
             "The alternatives are different from what the evidence shows.",
             "The other options would need a very different outcome.")
_STOP = frozenset("which what when where why how does would could should there their these those about after "
                  "before following most best likely many much that this with from into have will your they "
                  "were been being other than then some such only also because".split())


@dataclass
class _Row:
    item: GoldItem
    response: str


def _topic(question: str, used: set[str]) -> str:
    """The three longest distinct content words of the question, in its order, none of them a word
    of the key fact or a distractor (so the response states no distractor by naming its subject)."""
    words = [w for w in dict.fromkeys(re.findall(r"[A-Za-z][A-Za-z-]+", question))
             if len(w) > 3 and w.lower() not in _STOP and w.lower() not in used]
    chosen = set(sorted(words, key=len, reverse=True)[:3])
    words = [w for w in words if w in chosen]
    if len(words) < 2:
        return "this topic"
    return ", ".join(words[:-1]) + " and " + words[-1]


def _paragraph(question: str, key: str, distractors: tuple[str, ...], rng: random.Random) -> str | None:
    phrase = key.strip().rstrip(".").strip()
    used = set(facts.fact_words(key)).union(*(facts.fact_words(d) for d in distractors))
    topic = rng.choice(_TOPICS).format(topic=_topic(question, used))
    for _ in range(8):
        text = " ".join([rng.choice(_OPENERS).format(key=phrase, key_cap=phrase[:1].upper() + phrase[1:]),
                         topic, rng.choice(_SUPPORTS), rng.choice(_CLOSINGS)])
        if facts.is_right(text, key, distractors) and facts.ANSWER_MARKER not in text.lower():
            return text
    return None


def _swap_source(row: _Row, rows: list[_Row], rng: random.Random) -> _Row | None:
    own = normalize_space(row.item.question).lower()

    def fits(other: _Row) -> bool:
        return (normalize_space(other.item.question).lower() != own
                and not facts.is_right(other.response, row.item.key or "", row.item.distractors))

    for _ in range(20):
        other = rows[rng.randrange(len(rows))]
        if fits(other):
            return other
    return next((other for other in rows if fits(other)), None)


def _key_change(row: _Row, rng: random.Random) -> tuple[str, str] | None:
    distractors = list(row.item.distractors)
    rng.shuffle(distractors)
    for option in distractors:
        text = facts.change_fact(row.response, row.item.key or "", option.strip().rstrip(".").strip())
        if not facts.is_right(text, row.item.key or "", row.item.distractors):
            return text, option
    return None


def _write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with atomic_write(path, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _messages(row: dict, extra: tuple[str, ...] = ()) -> dict:
    return {"id": row["id"], "messages": [{"role": "user", "content": row["question"]},
                                          {"role": "assistant", "content": row["answer"]}],
            **{name: row[name] for name in extra}}


def make_open_data(source: str | Path, out: str | Path, *, noise: float = 0.3, seed: int = 0,
                   swap_fraction: float = 0.5, limit: int | None = None,
                   kinds: tuple[str, ...] | list[str] | None = None, skip: int = 0) -> dict:
    """Write open-ended gold and noisy files made from the multiple-choice gold file `source`
    (see the module docstring); returns the manifest. `skip` leaves out the first usable questions
    (a held-out set from the same source)."""
    for name, value in (("noise", noise), ("swap_fraction", swap_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ConfigError(f"{name} must be a number from 0 to 1, got {value!r}")
    if kinds is not None:
        kinds = tuple(kinds)
        unknown = [k for k in kinds if k not in NOISE_KINDS]
        if not kinds or unknown:
            raise ConfigError(f"kinds must be some of {', '.join(NOISE_KINDS)}, got {', '.join(kinds) or 'none'}")
    if skip < 0:
        raise ConfigError(f"skip must be at least 0, got {skip!r}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit!r}")
    source, out = Path(source), Path(out)
    items = load_gold(source)
    if any(item.options is None for item in items):
        raise InputError("not a multiple-choice file: open-ended data is made from questions with options "
                         "(the correct option's text becomes the key fact)", path=source,
                         fix="pass a file with question, answer and options columns, e.g. arc/labeled.csv")
    rows: list[_Row] = []
    seen: set[str] = set()
    duplicates = unusable = skipped = 0
    for item in items:
        if limit is not None and len(rows) >= limit:
            break
        question = normalize_space(item.question).lower()
        if question in seen:
            duplicates += 1
            continue
        seen.add(question)
        key = item.answer_text.strip()
        key_words = facts.fact_words(key)
        distractors = tuple(dict.fromkeys(o.strip() for o in item.options or ()
                                          if o.strip() != key and facts.fact_words(o) != key_words))
        response = (_paragraph(item.question, key, distractors, _rng("open-data", seed, item.id))
                    if key_words else None)
        if response is None:
            unusable += 1
            continue
        if skipped < skip:
            skipped += 1
            continue
        rows.append(_Row(GoldItem(id=item.id, question=item.question, answer=response, key=key,
                                  distractors=distractors), response))
    if len(rows) < 2:
        raise InputError(f"only {len(rows)} usable question(s); at least 2 are needed to swap responses",
                         path=source, fix="pass a larger file")

    order = list(range(len(rows)))
    random.Random(_rng("open-data-order", seed).random()).shuffle(order)
    n_noisy = round(noise * len(rows))
    noisy = [row.response for row in rows]
    log = []
    hardness: dict[str, dict[str, str]] = {}
    fallbacks = 0
    for position, index in enumerate(order[:n_noisy]):
        row, rng = rows[index], _rng("open-data-noise", seed, rows[index].item.id)
        if kinds is None:
            wants_swap = math.floor((position + 1) * swap_fraction) > math.floor(position * swap_fraction)
            kind = "swap" if wants_swap else "key_changed"
        else:
            kind = kinds[position % len(kinds)]
        changed = None if kind == "swap" else _key_change(row, rng)
        if changed is not None:
            noisy[index] = changed[0]
            log.append({"id": row.item.id, "kind": kind, "source": changed[1]})
            if kind == "confabulation":
                hardness[row.item.id] = {"mistake": "", "confabulates": "true"}
            elif kind == "consistent":
                hardness[row.item.id] = {"mistake": changed[1].strip().rstrip(".").strip(), "confabulates": ""}
            continue
        wants_swap = kind == "swap"
        fallbacks += not wants_swap
        other = _swap_source(row, rows, rng)
        if other is None:
            raise InputError(f"no other response can stand in for question {row.item.id!r}", path=source,
                             fix="pass a file with more varied questions")
        noisy[index] = other.response
        log.append({"id": row.item.id, "kind": "swap", "source": other.item.id})

    out.mkdir(parents=True, exist_ok=True)
    gold_rows = [{"id": r.item.id, "question": r.item.question, "answer": r.response, "key": r.item.key,
                  "distractors": json.dumps(list(r.item.distractors), ensure_ascii=False)} for r in rows]
    columns = ["id", "question", "answer", "key", "distractors"]
    if kinds is not None:
        columns += ["mistake", "confabulates"]
        for row in gold_rows:
            row.update(hardness.get(row["id"], {"mistake": "", "confabulates": ""}))
    noisy_rows = [{"id": r.item.id, "question": r.item.question, "answer": text} for r, text in zip(rows, noisy)]
    _write_csv(out / "gold.csv", gold_rows, columns)
    _write_csv(out / "noisy.csv", noisy_rows, ["id", "question", "answer"])
    gold_json = [{**row, "distractors": list(r.item.distractors)} for row, r in zip(gold_rows, rows)]
    write_jsonl(out / "gold.jsonl", gold_json)
    write_jsonl(out / "noisy.jsonl", noisy_rows)
    write_jsonl(out / "gold.messages.jsonl", [_messages(row, ("key", "distractors")) for row in gold_json])
    write_jsonl(out / "noisy.messages.jsonl", [_messages(row) for row in noisy_rows])
    _write_csv(out / "noise.csv", log, ["id", "kind", "source"])
    manifest = {"source": str(source), "seed": seed, "noise": noise, "swap_fraction": swap_fraction,
                "rows": len(rows), "noisy": n_noisy,
                **({"kinds": list(kinds), "skip": skip} if kinds is not None or skip else {}),
                **{kind: sum(e["kind"] == kind for e in log) for kind in (kinds or ("swap", "key_changed"))},
                "swaps_for_want_of_a_distractor": fallbacks,
                "left_out_duplicate_questions": duplicates, "left_out_unusable": unusable}
    write_json(out / "manifest.json", manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m robustft.sim make-open-data",
        description="Make open-ended gold and noisy files (CSV, JSONL, chat messages) from a multiple-choice "
                    "gold file: each response is a paragraph built around the correct option's text.")
    parser.add_argument("--source", required=True, metavar="FILE",
                        help="multiple-choice gold file (e.g. arc/labeled.csv)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the files (created)")
    parser.add_argument("--noise", type=float, default=0.3, help="fraction of wrong responses (0.3)")
    parser.add_argument("--swap-fraction", type=float, default=0.5,
                        help="share of the wrong responses that are another question's (0.5); the rest "
                             "have their key fact changed")
    parser.add_argument("--kinds", default=None, metavar="A,B,...",
                        help=f"deal the wrong responses out to these kinds in turn ({','.join(NOISE_KINDS)}); "
                             "default: swap and key_changed by --swap-fraction")
    parser.add_argument("--skip", type=int, default=0, help="leave out the first N usable questions (held-out sets)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N usable questions")
    args = parser.parse_args(argv)
    try:
        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()] if args.kinds is not None else None
        manifest = make_open_data(args.source, args.out, noise=args.noise, seed=args.seed,
                                  swap_fraction=args.swap_fraction, limit=args.limit, kinds=kinds, skip=args.skip)
    except (InputError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    shown = ", ".join(f"{manifest[k]} {k}" for k in (kinds or ("swap", "key_changed")))
    print(f"{manifest['rows']} questions, {manifest['noisy']} wrong responses ({shown}) written to {args.out}")
    return 0

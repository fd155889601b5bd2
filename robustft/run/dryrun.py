"""`robustft denoise --dry-run`: every prompt for the first sample, and what the whole run would cost.

Nothing is called and nothing is written. The prompts are checked exactly as a real run checks
them before its first call (`robustft.prompts.check`), so a dry run that passes will not stop on a
template mid-run. The estimate is a range between two extremes: every sample clean (only the
detection calls) and every sample noisy (detection, context relabeling and the reviewer). Prompt
tokens are counted on the rendered prompts with `robustft.tokens.count_tokens`; completion tokens
are bounded by each role's `max_tokens`. Re-asks of unreadable replies, retries of failed calls
and the server's chat template add to the real figures.

Between the extremes, the *expected* figures are given at the share of samples the checker flags,
low and high (`denoise.estimate_noise_rate`), with the cost at the configured prices. A pilot
(`--pilot N`: the real run on the first N rows, into `--out`, so that the full run later reuses
it) calibrates them: the flag rate, how often the reviewer is asked, re-asks per call, each role's
mean reply length, and how the server counts prompt tokens against `count_tokens` (its tokenizer
and chat template), all as measured (`Pilot`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..agents.cost import Prices, usd

from ..agents.runtime import BARE_NOTE, wants_bare_answer
from ..backends.openai import batch_discount
from ..backends.registry import check_providers
from ..config import ROLES, RobustFTConfig
from ..data import Dataset, load_dataset
from ..errors import ConfigError
from ..terminal import visible
from ..prompts import PromptLibrary
from ..method import PROMPT_ROLES, TRUST_PROMPTS, relabels_scored
from ..prompts.check import check_prompts, neighbours, prompts_in_use, render_first_sample, stage_values
from ..tasks import Task, find_task
from .registered import check_registered
from ..tokens import count_tokens
from .rundir import RUN_FILE, SAMPLES as RUN_SAMPLES

NOISY_ONLY = ("context", "reviewer")
# Counting every prompt of a huge dataset takes long; beyond this many samples a spread-out subset
# is counted and scaled up (the estimate says so).
MAX_COUNTED = 2000


@dataclass
class Estimate:
    samples: int
    counted: int
    calls_per_sample: dict[str, tuple[int, int]]       # prompt -> (calls if clean, calls if noisy)
    prompt_tokens: dict[str, int]                       # prompt -> tokens over the dataset, one call each
    max_tokens: dict[str, int]                          # prompt -> its role's max_tokens
    preflight_calls: int
    every_sample_noisy: bool

    def _per_sample(self, noisy: bool) -> dict[str, int]:
        noisy = noisy or self.every_sample_noisy
        return {name: c[noisy] for name, c in self.calls_per_sample.items()}

    def calls(self, noisy: bool) -> int:
        return sum(self._per_sample(noisy).values()) * self.samples

    def tokens_in(self, noisy: bool) -> int:
        return sum(self.prompt_tokens[n] * c for n, c in self._per_sample(noisy).items())

    def tokens_out_max(self, noisy: bool) -> int:
        return sum(self.max_tokens[n] * c for n, c in self._per_sample(noisy).items()) * self.samples

    def expected(self, flagged: float, pilot: "Pilot | None", prices: dict[str, Prices | None]) -> dict[str, Any]:
        """Calls, tokens and cost when a share `flagged` of the samples is found noisy; with a pilot,
        its re-asks, reviewer rate, reply lengths and prompt-token calibration."""
        f = 1.0 if self.every_sample_noisy else flagged
        calls = prompt = completion = 0.0
        cost = 0.0
        for name, (clean, noisy) in self.calls_per_sample.items():
            role = PROMPT_ROLES[name]
            per_sample = clean + f * (noisy - clean)
            if name == "reviewer" and pilot is not None and pilot.review_rate is not None:
                per_sample *= pilot.review_rate
            n = per_sample * self.samples * (pilot.attempts.get(role, 1.0) if pilot else 1.0)
            ratio = pilot.prompt_ratio.get(role, pilot.prompt_ratio_all) if pilot else 1.0
            p = n * self.prompt_tokens[name] / max(1, self.samples) * ratio
            c = n * (pilot.completion.get(role, self.max_tokens[name]) if pilot else self.max_tokens[name])
            calls, prompt, completion = calls + n, prompt + p, completion + c
            if prices.get(role) is not None:
                cost += prices[role].usd(round(p), round(c))
        return {"calls": round(calls), "prompt_tokens": round(prompt), "completion_tokens": round(completion),
                "cost_usd": cost if any(prices.values()) else None}


@dataclass
class Pilot:
    """What a paid pilot on the first rows measured (`measure_pilot`)."""

    rows: int
    flag_rate: float
    decided: int                       # samples the checker decided (the flag rate's sample size)
    review_rate: float | None          # of the noisy samples, the share whose reviewer was asked
    attempts: dict[str, float]         # role -> calls per node (re-asks of unreadable replies)
    completion: dict[str, float]       # role -> mean completion tokens per call
    prompt_ratio: dict[str, float]     # role -> server prompt tokens / count_tokens of the prompt sent
    prompt_ratio_all: float
    cost_usd: float | None


def measure_pilot(run_dir: Path, rows: int) -> Pilot:
    """Read a finished pilot's samples.jsonl (`rows` rows) for the estimate's calibration."""
    records = [json.loads(line) for line in (run_dir / RUN_SAMPLES).read_text(encoding="utf-8").splitlines()
               if line.strip()]
    decided = [r for r in records if r.get("decision") in ("clean", "noisy")]
    noisy = [r for r in decided if r["decision"] == "noisy"]
    with_context = [r for r in noisy if (r["nodes"].get("context") or {}).get("attempts")]
    reviewed = [r for r in with_context if (r["nodes"].get("reviewer") or {}).get("attempts")]
    nodes: dict[str, list[int]] = {}  # role -> [nodes, attempts, prompt tokens, completion tokens, counted]
    for r in records:
        for role, node in (r.get("nodes") or {}).items():
            attempts = int(node.get("attempts") or 0)
            if not attempts or role not in PROMPT_ROLES.values():
                continue
            entry = nodes.setdefault(role, [0, 0, 0, 0, 0])
            entry[0] += 1
            entry[1] += attempts
            entry[2] += int(node.get("prompt_tokens") or 0)
            entry[3] += int(node.get("completion_tokens") or 0)
            entry[4] += count_tokens(node.get("prompt") or "") * attempts
    counted = sum(e[4] for e in nodes.values())
    return Pilot(rows=rows, flag_rate=len(noisy) / len(decided) if decided else 0.0, decided=len(decided),
                 review_rate=len(reviewed) / len(with_context) if with_context else None,
                 attempts={role: e[1] / e[0] for role, e in nodes.items()},
                 completion={role: e[3] / e[1] for role, e in nodes.items()},
                 prompt_ratio={role: e[2] / e[4] for role, e in nodes.items() if e[4] and e[2]},
                 prompt_ratio_all=sum(e[2] for e in nodes.values()) / counted if counted else 1.0,
                 cost_usd=None)


@dataclass
class DryRun:
    dataset: Dataset
    prompts: dict[str, str]
    sources: dict[str, str]
    estimate: Estimate
    notes: list[str] = field(default_factory=list)
    pilot: Pilot | None = None


def calls_per_sample(config: RobustFTConfig, task: str | None = None) -> dict[str, tuple[int, int]]:
    """Calls of each prompt for one sample: (if the checker finds it clean, if noisy); every response
    gets `trust_claim_checks` claim checks (on claims, or on the whole response)."""
    rounds = config.denoise.reflection_rounds
    out = {}
    for name in prompts_in_use(config, task):
        n = rounds if name == "reflection" else config.denoise.trust_claim_checks if name == "claim" else 1
        if (name == "judge" or name in TRUST_PROMPTS) and relabels_scored(config, task):  # the relabel's own trust
            out[name] = (n, 2 * n)
            continue
        out[name] = (0 if name in NOISY_ONLY else n, n)
    return out


def estimate(config: RobustFTConfig, dataset: Dataset, library: PromptLibrary) -> Estimate:
    per_sample = calls_per_sample(config, dataset.task)
    n = len(dataset.samples)
    step = max(1, -(-n // MAX_COUNTED))
    counted = list(range(0, n, step))
    tokens = {name: 0 for name in per_sample}
    reasoning_max = config.model_for("reasoning").max_tokens
    for i in counted:
        sample = dataset.samples[i]
        examples = neighbours(dataset, i, config.denoise.k) if "context" in per_sample else []
        for name in per_sample:
            # An earlier attempt is as long as the reasoning expert may write: the upper end.
            previous = "x " * reasoning_max if name == "reflection" else None
            text = library.render(name, **stage_values(name, sample, examples, config, dataset.task, previous))
            tokens[name] += count_tokens(text)
    scale = n / len(counted) if counted else 0
    tokens = {name: round(t * scale) for name, t in tokens.items()}
    preflight = len({config.model_for(role).model_dump_json() for role in ROLES})
    return Estimate(samples=n, counted=len(counted), calls_per_sample=per_sample, prompt_tokens=tokens,
                    max_tokens={name: config.model_for(PROMPT_ROLES[name]).max_tokens for name in per_sample},
                    preflight_calls=preflight, every_sample_noisy="checker" in config.denoise.ablate)


def dry_run(config: RobustFTConfig, dataset: Dataset | None = None, pilot: Pilot | None = None) -> DryRun:
    if dataset is None and config.data.path is None:
        raise ConfigError("no data: set data.path to a file, a folder or a hub name")
    check_providers(config)
    check_registered(config)
    dataset = dataset or load_dataset(config.data)
    library = PromptLibrary(config.denoise.prompts_dir)
    check_prompts(library, config, dataset)
    prompts = render_first_sample(library, config, dataset)
    bare = wants_bare_answer({"conversation": dataset.samples[0].conversation})
    if bare:  # as `AgentRuntime.messages` sends them
        prompts = {name: BARE_NOTE + text for name, text in prompts.items()}
    result = DryRun(dataset=dataset, prompts=prompts, sources={n: library.source_of(n, dataset.task) for n in prompts},
                    estimate=estimate(config, dataset, library), pilot=pilot)
    if bare:
        result.notes.append("the conversation asks for the answer alone (e.g. a system prompt \"answer with just "
                            "the name\"), which conflicts with the prompts' Answer: line: each prompt starts with a "
                            "note settling it, and a reply that is only the answer is read as the answer")
    if config.out is not None and (Path(config.out) / RUN_FILE).is_file():
        result.notes.append(f"{config.out} already holds a run: `denoise` would resume it, asking only the samples "
                            "not finished yet, so the real cost is lower")
    return result


def _n(x: int) -> str:
    return f"{x:,}"


def comparison_line(task: str, config: RobustFTConfig, dataset: Dataset | None = None) -> str:
    """How answers are compared for `task`, as the dry run and the report print it."""
    if task == "numeric":
        return (f"answers compared as numbers: whole numbers exactly (125 is not 126), others within a relative "
                f"tolerance of {config.data.numeric_tolerance:g} (data.numeric_tolerance)")
    if task == "multiple_choice":
        layout = dataset.source.options_layout if dataset is not None and dataset.source is not None else None
        return "answers compared as option letters" + (f"; {layout.describe()}" if layout is not None else "")
    if task == "open":
        return (f"responses compared by meaning: embedding cosine similarity >= {config.denoise.open_similarity:g} "
                "(denoise.open_similarity)")
    kind = find_task(task)  # text, or a task type from a package: it says how it compares
    return f"answers compared as {(kind or Task()).comparison}"


def _conversation_lines(conversation: list[dict[str, str]] | None) -> list[str]:
    """The turns sent before each prompt below, exactly as they are sent (role, then content)."""
    earlier = (conversation or [])[:-1]
    if not earlier:
        return []
    out = ["--- the conversation sent before every prompt below: this sample's earlier turns, as they are "
           "(each prompt then goes as the last user turn, in place of the question) ---"]
    for turn in earlier:
        out.append(f"[{turn['role']}]")
        out.append(visible(str(turn["content"]).rstrip("\n")))
    out.append("")
    return out


def describe_dry_run(result: DryRun, config: RobustFTConfig) -> str:
    ds, est = result.dataset, result.estimate
    first = ds.samples[0]
    first_line = ("dry run: nothing was called and nothing was written"
                  + (f" to {config.out}" if config.out is not None else ""))
    if result.pilot is not None:
        first_line = (f"dry run after a pilot: the first {_n(result.pilot.rows)} rows were run for real into "
                      f"{config.out}; nothing else was called")
    out = [first_line,
           f"data: {ds.path}, {_n(len(ds))} samples ({ds.task}); every prompt below is for the first sample "
           f"(id {first.id}, row {first.row + 1}), with its label standing in for later answers and "
           f"{'the next samples' if len(ds) > 1 else 'itself'} for the retrieved examples",
           comparison_line(ds.task, config, ds), ""]
    out += _conversation_lines(first.conversation)
    sent_as = " sent as the last user turn" if first.conversation and len(first.conversation) > 1 else ""
    for name, text in result.prompts.items():
        out.append(f"--- {name} prompt ({result.sources[name]}){sent_as} ---")
        out.append(visible(text.rstrip("\n")))
        out.append("")
    clean_label = "checker off: all noisy" if est.every_sample_noisy else "every sample clean"
    rows = [("model calls", _n(est.calls(False)), _n(est.calls(True))),
            ("prompt tokens", _n(est.tokens_in(False)), _n(est.tokens_in(True))),
            ("completion tokens", "<= " + _n(est.tokens_out_max(False)), "<= " + _n(est.tokens_out_max(True)))]
    width = max(len(clean_label), 20)
    out.append(f"estimate for all {_n(est.samples)} samples (an estimate, not a measurement):")
    out.append(f"  {'':<18}{clean_label:>{width}}{'every sample noisy':>{width}}")
    for label, low, high in rows:
        out.append(f"  {label:<18}{low:>{width}}{high:>{width}}")
    per = ", ".join(f"{name} {c[0]}" + (f"-{c[1]}" if c[1] != c[0] else "") for name, c in est.calls_per_sample.items())
    out.append(f"  calls per sample (clean-noisy): {per}; plus {est.preflight_calls} preflight call"
               f"{'s' if est.preflight_calls > 1 else ''} before the run")
    if config.denoise.review == "on_disagreement" and "reviewer" in est.calls_per_sample:
        out.append("  the reviewer is asked only when the reasoning and context answers differ, so noisy samples "
                   "often cost one call less")
    counted = "" if est.counted == est.samples else f" on {_n(est.counted)} of the samples, scaled up,"
    out.append(f"  prompt tokens counted{counted} with robustft.tokens.count_tokens (tiktoken cl100k_base, or a "
               "word-piece estimate offline), without the server's chat template; completion tokens are at most "
               "max_tokens per call. Re-asks of unreadable replies (denoise.parse_retries) and retries of failed "
               "calls (model.max_retries) are not counted.")
    out += _expected_lines(result, config)
    out += result.notes
    return "\n".join(out)


def _expected_lines(result: DryRun, config: RobustFTConfig) -> list[str]:
    est, pilot = result.estimate, result.pilot
    prices = {PROMPT_ROLES[name]: Prices.of(config.model_for(PROMPT_ROLES[name])) for name in est.calls_per_sample}
    if config.denoise.batch_api:  # every call but the preflight probe at the batch price
        prices = {role: p.discounted(batch_discount(config.model_for(role))) if p else None
                  for role, p in prices.items()}
    if pilot is not None:
        # The flag rate of a few rows is uncertain: two standard errors either side.
        f, n = pilot.flag_rate, max(1, pilot.decided)
        spread = 2 * math.sqrt(f * (1 - f) / n)
        rates = tuple(dict.fromkeys((max(0.0, f - spread), f, min(1.0, f + spread))))
        how = (f"as the pilot on the first {_n(pilot.rows)} rows measured: {f:.0%} flagged noisy (from "
               f"{rates[0]:.0%} to {rates[-1]:.0%}, two standard errors of {n} samples)"
               + (f", the reviewer asked for {pilot.review_rate:.0%} of them" if pilot.review_rate is not None else "")
               + ", each role's mean reply length and re-asks, and prompt tokens as the server counts them "
               f"({pilot.prompt_ratio_all:.2f} of count_tokens')")
    else:
        rates = tuple(dict.fromkeys(config.denoise.estimate_noise_rate))
        how = (f"with {' to '.join(f'{r:.0%}' for r in rates)} of the samples flagged noisy "
               "(denoise.estimate_noise_rate; a pilot run measures it), every reply max_tokens long (an upper bound) "
               "and the reviewer asked for every noisy sample")
    figures = [est.expected(rate, pilot, prices) for rate in rates]
    out = ["", f"expected, {how}:"]

    def row(label: str, key: str, fmt=_n) -> None:
        out.append(f"  {label:<18}" + (f"{fmt(figures[1][key])} ({fmt(figures[0][key])} to {fmt(figures[2][key])})"
                                       if len(figures) == 3 else " to ".join(fmt(f[key]) for f in figures)))

    row("model calls", "calls")
    row("prompt tokens", "prompt_tokens")
    row("completion tokens", "completion_tokens")
    if figures[0]["cost_usd"] is not None:
        row("cost", "cost_usd", usd)
        if pilot is None:
            out.append("  (the cost's completion part is at most max_tokens per call; a pilot measures it)")
    else:
        out.append("  no cost: set model.price_input_per_mtok and model.price_output_per_mtok (USD per million tokens)")
    if pilot is not None:
        out.append(f"  the pilot's rows are finished in {config.out}: the full run reuses them")
    return out

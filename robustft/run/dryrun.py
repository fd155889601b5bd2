"""`robustft denoise --dry-run`: every prompt for the first sample, and what the whole run would cost.

Nothing is called and nothing is written. The prompts are checked exactly as a real run checks
them before its first call (`robustft.prompts.check`), so a dry run that passes will not stop on a
template mid-run. The estimate is a range between two extremes: every sample clean (only the
detection calls) and every sample noisy (detection, context relabeling and the reviewer). Prompt
tokens are counted on the rendered prompts with `robustft.tokens.count_tokens`; completion tokens
are bounded by each role's `max_tokens`. Re-asks of unreadable replies, retries of failed calls
and the server's chat template add to the real figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


from ..agents.runtime import BARE_NOTE, wants_bare_answer
from ..config import ROLES, RobustFTConfig
from ..data import Dataset, load_dataset
from ..errors import ConfigError
from ..inspect.terminal import visible
from ..prompts import PromptLibrary
from ..prompts.check import check_prompts, neighbours, prompts_in_use, render_first_sample, stage_values
from ..tokens import count_tokens
from .rundir import RUN_FILE

ROLE_OF = {"base": "base", "reasoning": "reasoning", "reflection": "reasoning", "judge": "judge",
           "context": "context", "reviewer": "reviewer"}
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


@dataclass
class DryRun:
    dataset: Dataset
    prompts: dict[str, str]
    sources: dict[str, str]
    estimate: Estimate
    notes: list[str] = field(default_factory=list)


def calls_per_sample(config: RobustFTConfig, task: str | None = None) -> dict[str, tuple[int, int]]:
    """Calls of each prompt for one sample: (if the checker finds it clean, if noisy); claim checks
    counted at their most (a response of several sentences)."""
    rounds = config.denoise.reflection_rounds
    out = {}
    for name in prompts_in_use(config, task):
        n = rounds if name == "reflection" else config.denoise.trust_claim_checks if name == "claim" else 1
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
                    max_tokens={name: config.model_for(ROLE_OF[name]).max_tokens for name in per_sample},
                    preflight_calls=preflight, every_sample_noisy="checker" in config.denoise.ablate)


def dry_run(config: RobustFTConfig, dataset: Dataset | None = None) -> DryRun:
    if dataset is None and config.data.path is None:
        raise ConfigError("no data: pass --data FILE (or set `data.path` in the config)")
    dataset = dataset or load_dataset(config.data)
    library = PromptLibrary(config.denoise.prompts_dir)
    check_prompts(library, config, dataset)
    prompts = render_first_sample(library, config, dataset)
    bare = wants_bare_answer({"conversation": dataset.samples[0].conversation})
    if bare:  # as `AgentRuntime.messages` sends them
        prompts = {name: BARE_NOTE + text for name, text in prompts.items()}
    result = DryRun(dataset=dataset, prompts=prompts, sources={n: library.source_of(n, dataset.task) for n in prompts},
                    estimate=estimate(config, dataset, library))
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
    return "answers compared as short text: normalised (case, punctuation, a/an/the), either containing the other"


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
    out = ["dry run: nothing was called and nothing was written"
           + (f" to {config.out}" if config.out is not None else ""),
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
    out += result.notes
    return "\n".join(out)

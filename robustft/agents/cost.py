"""What a run's model calls cost, and the budget they stay under (`denoise.max_cost_usd`).

    ledger = CostLedger(cap_usd=5.0, store=store)      # what this run directory spent before is read back
    await ledger.admit(expected_usd)                  # before each call: waits, or raises BudgetReached
    ledger.paid(role, prices, gen, expected_usd)      # after it: the real cost replaces the expected one
    ledger.release(expected_usd)                      # a call that failed (failed calls are not charged)
    ledger.saved(role, prices, gen)                   # a response the store answered: shown as saved

Prices are the configured USD per million tokens (`model.price_*`, per role when a role overrides
them); nothing here knows a vendor's prices. A call's cost is its usage as the server reported it:
prompt tokens at the input price (those the server read from its cache at the cached-input price)
plus completion tokens at the output price.

**The budget.** Before a call goes out, the money spent (in this run directory, earlier runs
included), plus the expected cost of the calls in flight, plus this call's expected cost must stay
within the cap. When it would not, the call waits for the calls in flight to settle (their real
cost is usually below the expected one); when nothing is in flight and it still would not, the run
stops with `BudgetReached` (exit 4). Every call that was sent has been answered and stored by
then, so the same command with a higher cap continues without paying for anything twice. The stop
is final: every later call is refused too, even a smaller one that would still fit, because the
run is already stopping and cancels what it has in flight; a call sent in that moment would be paid
at the server and its reply never stored (paid twice on the next run). A call's
expected cost counts its prompt (estimated from its length) and the mean completion length of its
role so far (`max_tokens` until the first reply), so the cap is exceeded at most by what the
calls in flight cost beyond that expectation.

What was spent is kept in the response store's `meta` table, written with each paid call, so a
killed run loses none of it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import RobustFTError

if TYPE_CHECKING:
    from ..backends.base import Generation, Messages
    from ..backends.store import ResponseStore
    from ..config import ModelConfig

SPENT_KEY = "spent_usd"
# Before the first reply shows how a server counts tokens: about 4 characters a token, rounded up.
FIRST_TOKENS_PER_CHAR = 0.3


class BudgetReached(RobustFTError):
    """The next call would take the run past `denoise.max_cost_usd`: stop, progress kept (exit 4)."""

    exit_code = 4


@dataclass(frozen=True)
class Prices:
    """USD per million tokens of one model."""

    input: float
    output: float
    cached_input: float

    @classmethod
    def of(cls, config: "ModelConfig") -> "Prices | None":
        """The model's prices, or None when none is configured (its calls then have no cost)."""
        if config.price_input_per_mtok is None and config.price_output_per_mtok is None:
            return None
        inp = config.price_input_per_mtok or 0.0
        cached = config.price_cached_input_per_mtok
        return cls(input=inp, output=config.price_output_per_mtok or 0.0, cached_input=inp if cached is None else cached)

    def usd(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        cached = min(cached_tokens, prompt_tokens)
        return ((prompt_tokens - cached) * self.input + cached * self.cached_input
                + completion_tokens * self.output) / 1e6

    def discounted(self, discount: float) -> "Prices":
        """The prices with `discount` (a share) taken off: the Batch API's."""
        keep = 1.0 - discount
        return Prices(input=self.input * keep, output=self.output * keep, cached_input=self.cached_input * keep)

    def as_dict(self) -> dict[str, float]:
        return {"input_per_mtok": self.input, "cached_input_per_mtok": self.cached_input,
                "output_per_mtok": self.output}


class Expectation:
    """How many tokens a call of one model is expected to use, before it is sent: the prompt from its
    length (with the server's own tokens-per-character, learned from its usage reports) and the
    completion from the mean of the role's replies so far. Shared by the budget and the rate limits."""

    __slots__ = ("prompts", "completions")

    def __init__(self) -> None:
        self.prompts: dict[str | None, list[int]] = {}      # role -> [characters, prompt tokens]
        self.completions: dict[str | None, list[int]] = {}  # role -> [replies, completion tokens]

    @staticmethod
    def length(messages: "Messages") -> int:
        return sum(len(m["content"]) for m in messages)

    def prompt(self, chars: int, role: str | None = None) -> int:
        """Tokens per character as the server counted them in this role's prompts (their shapes
        differ: examples, options), else in any prompt so far."""
        seen = self.prompts.get(role)
        if not seen or not seen[0]:
            seen = [sum(c for c, _ in self.prompts.values()), sum(t for _, t in self.prompts.values())]
        if seen[0] and seen[1]:
            return round(chars * seen[1] / seen[0]) + 1
        return round(chars * FIRST_TOKENS_PER_CHAR) + 1

    def completion(self, role: str | None, max_tokens: int) -> int:
        """The role's mean reply so far; for a role not heard yet the mean of every reply (the roles
        ask the same model much alike); before any reply, `max_tokens`."""
        seen = self.completions.get(role)
        if not seen or not seen[0]:
            calls = sum(c for c, _ in self.completions.values())
            if not calls:
                return max_tokens
            seen = [calls, sum(t for _, t in self.completions.values())]
        return min(max_tokens, round(seen[1] / seen[0]) + 1)

    def learn(self, chars: int, role: str | None, gen: "Generation") -> None:
        if gen.prompt_tokens > 0:
            seen = self.prompts.setdefault(role, [0, 0])
            seen[0] += chars
            seen[1] += gen.prompt_tokens
        seen = self.completions.setdefault(role, [0, 0])
        seen[0] += 1
        seen[1] += gen.completion_tokens


@dataclass
class RoleCost:
    calls: int = 0
    usd: float = 0.0
    saved_calls: int = 0
    saved_usd: float = 0.0


@dataclass
class CostLedger:
    """Money spent and saved in this run, per role, and the budget (see the module docstring)."""

    cap_usd: float | None = None
    store: "ResponseStore | None" = None
    spent_before: float = 0.0
    spent: float = 0.0            # paid in this run
    saved_usd: float = 0.0        # what the store's answers would have cost
    reserved: float = 0.0         # expected cost of the calls in flight
    in_flight: int = 0
    by_role: dict[str, RoleCost] = field(default_factory=dict)
    priced: bool = False          # some call had a price
    stopped: str | None = None    # the BudgetReached message once the run stopped: no call goes out after it
    _settled: asyncio.Event | None = None

    def __post_init__(self) -> None:
        if self.store is not None:
            try:
                self.spent_before = max(0.0, float(self.store.read_meta(SPENT_KEY) or 0.0))
            except ValueError:
                self.spent_before = 0.0

    @property
    def total(self) -> float:
        """Spent in this run directory, earlier runs included."""
        return self.spent_before + self.spent

    def check(self) -> None:
        """Raise BudgetReached when the cap is already spent (before a run sends anything)."""
        if self.cap_usd is not None and self.total >= self.cap_usd:
            raise self._reached(None)

    async def admit(self, expected: float) -> None:
        """Wait until a call expected to cost `expected` fits under the cap; raise BudgetReached when it
        cannot (nothing in flight that could free room)."""
        cap = self.cap_usd
        if cap is not None:
            while True:
                if self.stopped is not None:  # the run is stopping: a call sent now would be cut off, unstored
                    raise BudgetReached(self.stopped)
                if self.total + self.reserved + expected <= cap:
                    break
                if not self.in_flight:
                    reached = self._reached(expected)
                    self.stopped = str(reached)  # nothing is in flight now; keep it so until the run ends
                    raise reached
                if self._settled is None:
                    self._settled = asyncio.Event()
                await self._settled.wait()
        self.reserved += expected
        self.in_flight += 1

    def release(self, expected: float) -> None:
        self.reserved = max(0.0, self.reserved - expected)
        self.in_flight -= 1
        settled, self._settled = self._settled, None
        if settled is not None:
            settled.set()

    def paid(self, role: str | None, prices: Prices | None, gen: "Generation", expected: float) -> float:
        """Settle a call that was answered; returns its cost."""
        usd = prices.usd(gen.prompt_tokens, gen.completion_tokens, gen.cached_prompt_tokens) if prices else 0.0
        entry = self.by_role.setdefault(role or "other", RoleCost())
        entry.calls += 1
        if prices is not None:
            self.priced = True
            entry.usd += usd
            self.spent += usd
            if self.store is not None and usd:
                self.store.write_meta(SPENT_KEY, repr(self.total))
        self.release(expected)
        return usd

    def saved(self, role: str | None, prices: Prices | None, gen: "Generation") -> None:
        if prices is None:
            return
        self.priced = True
        usd = prices.usd(gen.prompt_tokens, gen.completion_tokens)
        entry = self.by_role.setdefault(role or "other", RoleCost())
        entry.saved_calls += 1
        entry.saved_usd += usd
        self.saved_usd += usd

    def _reached(self, expected: float | None) -> BudgetReached:
        nxt = "" if expected is None else f"; the next call would cost about {usd(expected)}"
        return BudgetReached(
            f"stopped at the budget: {usd(self.total)} spent of denoise.max_cost_usd = {usd(self.cap_usd or 0)} "
            f"({usd(self.spent)} in this run{nxt}). Progress is kept: every response paid for is stored. Run the "
            "same command with a higher denoise.max_cost_usd to continue; nothing is paid for twice.")

    def this_run(self) -> dict[str, Any]:
        """summary.json's account of this run's money."""
        return {"paid_usd": round(self.spent, 6), "saved_usd": round(self.saved_usd, 6),
                "by_role": {role: {"calls": c.calls, "paid_usd": round(c.usd, 6), "from_store": c.saved_calls,
                                   "saved_usd": round(c.saved_usd, 6)} for role, c in sorted(self.by_role.items())}}


def usd(amount: float) -> str:
    """An amount of money as people read it: cents, or fractions of a cent for tiny amounts."""
    if amount == 0:
        return "$0"
    if abs(amount) < 0.01:
        return f"${amount:.4f}"
    if abs(amount) < 1000:
        return f"${amount:,.2f}"
    return f"${amount:,.0f}"


def describe(cost: dict[str, Any]) -> str:
    """summary.json's `cost` in a sentence (the command's last lines, the report)."""
    roles = ", ".join(f"{role} {usd(v)}" for role, v in cost.get("by_role", {}).items())
    run = cost.get("this_run") or {}
    line = f"{usd(cost.get('usd') or 0)} for these outputs ({roles or 'no priced calls'}); the last run paid " \
           f"{usd(run.get('paid_usd') or 0)}"
    if run.get("saved_usd"):
        line += f" and saved {usd(run['saved_usd'])} by answering from the response store"
    line += f"; spent in this run directory in all: {usd(cost.get('spent_usd') or 0)}"
    if cost.get("max_cost_usd") is not None:
        line += f" of the {usd(cost['max_cost_usd'])} cap"
    return line


def expected_usd(prices: Prices | None, prompt_tokens: int, completion_tokens: int) -> float:
    return prices.usd(prompt_tokens, completion_tokens) if prices else 0.0


def records_cost(config: Any, tokens_by_role: dict[str, tuple[int, int]]) -> dict[str, Any] | None:
    """The cost of the calls the samples' records hold, per role, at the configured prices: what
    producing these outputs cost (the same for a resumed run as for one never stopped). None when
    no role has a price."""
    by_role = {}
    for role, (prompt, completion) in tokens_by_role.items():
        try:
            prices = Prices.of(config.model_for(role))
        except Exception:  # noqa: BLE001 - a node that is not a role has no price
            prices = None
        if prices is not None:
            by_role[role] = round(prices.usd(prompt, completion), 6)
    if not by_role:
        return None
    return {"usd": round(sum(by_role.values()), 6), "by_role": by_role}

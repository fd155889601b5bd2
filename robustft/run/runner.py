"""Batch runs of the graph over a whole dataset: detection, the barrier, relabeling, selection.

    detect   every sample runs base -> reasoning -> checker; meanwhile every question is embedded
    barrier  the clean samples go into the index; examples are retrieved for all noisy ones
    relabel  each noisy sample runs context -> reviewer, its examples in its state
    select   all relabels are ranked together by score; the β fraction with the lowest is kept
    write    samples.jsonl, denoised.jsonl, summary.json

The batches of the two passes run on an executor (`executors`): this process's event loop, or Ray
workers (`cluster`, docs/ray.md); every other step stays here.

What makes a run durable and cheap to run again lives in the run directory:

- every model response and embedding is stored as it arrives (`DIR/responses.sqlite`), so a run
  stopped at any moment re-sends only the calls that were in flight;
- every sample's record is appended to `DIR/samples.jsonl` as it leaves the graph, with the
  fingerprint of the settings and input row that made it. Running again reuses each record whose
  fingerprint still matches: a changed β only re-selects, a larger `data.limit` runs only the new
  rows, and after a changed template or method setting the samples run again, with every request
  that did not change answered from the store. Failed samples are retried.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .. import tracing
from ..agents.calls import CallCounts, ModelCalls, ServiceDown
from ..agents.checker import check_rule
from ..agents.cost import CostLedger, Prices, records_cost
from ..agents.runtime import AgentRuntime
from ..agents.trust import scoring_digest
from ..backends.base import HasEndpoints
from ..backends.registry import ModelPool, check_providers
from ..backends.store import ResponseStore, identity_settings
from ..config import RobustFTConfig
from ..data import Dataset, Sample, load_dataset
from ..entropy import select_lowest
from ..errors import ConfigError, ModelCallError, RobustFTError, UserError
from ..method import TRUST_PROMPTS, method_of, scores_trust
from ..agents.state import Example, SampleState, initial_state
from ..prompts import PROMPT_NAMES, PromptLibrary, template_name
from ..prompts.check import check_prompts
from ..secrets import register_api_keys
from .collector import TRACED_YOUNG_THRESHOLD, YOUNG_THRESHOLD, fewer_collections
from .executors import Executor, LocalExecutor, RunContext
from .journal import Journal
from .outputs import Summary, final_record, fine_tuning_record, is_candidate
from .progress import Progress
from .records import SampleRecord, sample_record, state_of
from .registered import check_registered
from .rundir import BATCHES, DenoiseResult, RunDir

log = logging.getLogger("robustft")

COUNTS = ("total", "clean", "noisy", "relabeled", "confirmed", "dropped", "failed")

# A fatal condition of the machine, not of one sample: stop the run with the path and the fix.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                       errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
                       errno.EIO: "an input/output error", errno.EFBIG: "the file-size limit (ulimit -f) reached"}


class EnvironmentFailure(RobustFTError):
    """The run directory stopped being writable (full disk, read-only): nothing is lost."""


def _digest(obj: Any) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode(),
                           digest_size=12).hexdigest()


def method_settings(config: RobustFTConfig, prompts: PromptLibrary, task: str) -> dict[str, Any]:
    """Everything that changes what the models are asked, readable (run.json keeps it, to say what
    changed). β and concurrency are not in it: a new β only re-selects, with no new calls."""
    models = {}
    for role in method_of(config, task).roles:
        models[role] = {k: v for k, v in identity_settings(config.model_for(role)).items() if v is not None}
    d = config.denoise
    return {
        "task": task, "models": models,
        "prompts": {template_name(name, task): hashlib.sha256(Path(prompts.source_of(name, task)).read_bytes())
                    .hexdigest()[:16] for name in PROMPT_NAMES
                    if name not in TRUST_PROMPTS or scores_trust(config, task)},
        "method": {"reflection_rounds": d.reflection_rounds, "checker": d.checker, "review": d.review, "k": d.k,
                   "context_token_budget": d.context_token_budget, "score": d.score,
                   "embedding_model": d.embedding_model, "parse_retries": d.parse_retries,
                   "ablate": sorted(d.ablate), "instruction": config.data.instruction,
                   # absent at the default, so that run directories from before the setting stay as they are
                   **({"retrieval": d.retrieval} if d.retrieval != "exact" else {}),
                   "numeric_tolerance": config.data.numeric_tolerance,
                   **({"open_similarity": d.open_similarity} if task == "open" else {}),
                   # "scoring": what the claim checks ask and how the signals combine (agents/trust.py); 2 =
                   # the whole-response check and the calibrated log-odds combination; 3 = every verdict's
                   # sign counts too (claim_verdict, response_verdict), refitted weights; 4 = the recheck
                   # (trust_recheck), the off-topic term (far from the experts and the question), weights refitted on
                   # three development sets
                   # "weights": the combination's constants (trust.scoring_digest), so that refitted weights rerun too
                   **({"trust": {"scoring": 4, "weights": scoring_digest(), "claim_checks": d.trust_claim_checks,
                                 "max_claims": d.trust_max_claims,
                                 "recheck": d.trust_recheck,
                                 **({"threshold": d.trust_threshold, "selection": d.trust_selection}
                                    if d.checker == "trust" else {})}}
                      if scores_trust(config, task) else {})},
    }


def sample_fingerprint(method: str, sample: Sample) -> str:
    return _digest([method, sample.id, sample.question, sample.label, sample.options,
                    getattr(sample, "conversation", None)])


def describe_changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    if not before:
        return []
    changes = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{path}.{key}" if path else key)
        elif a != b:
            if path.startswith("prompts."):
                changes.append(f"template {path.split('.', 1)[1]}.jinja")
            else:
                changes.append(f"{path}: {json.dumps(a)} -> {json.dumps(b)}")

    walk(before, after, "")
    return changes


class DenoiseRun:
    def __init__(self, config: RobustFTConfig, *, pool: ModelPool | None = None, dataset: Dataset | None = None,
                 store: ResponseStore | None = None, progress: bool = True, preflight: bool = True,
                 log: Callable[[str], None] | None = None, quiet_log_every_s: float = 30.0):
        if config.out is None:
            raise ConfigError("no output directory: set `out`, the run directory")
        if dataset is None and config.data.path is None:
            raise ConfigError("no data: set data.path to a file, a folder or a hub name")
        register_api_keys(config)  # every error from here on hides the keys in use
        check_providers(config)  # a plugin not installed here fails before the data is read
        check_registered(config)  # likewise a task type, layout or score
        self.config = config
        self.out_dir = Path(config.out)
        self.dataset = dataset or load_dataset(config.data)
        self.prompts = PromptLibrary(config.denoise.prompts_dir)
        self.pool = pool or ModelPool()
        self.shared_store = store
        self.progress = progress
        self.preflight = preflight
        self.say = log or log_info
        self.quiet_log_every_s = quiet_log_every_s
        self.tracing = None
        self._embedder: Any = None

    def replica_health(self) -> list[dict[str, Any]]:
        """Per server replica of this run (models and the embedding server): calls sent, failed
        (transport errors, timeouts, 5xx, malformed replies), times rested; summary.json and the
        progress line show it."""
        found = []
        for backend in [*self.pool.backends(), self._embedder]:
            endpoints = backend.endpoints if isinstance(backend, HasEndpoints) else None
            if endpoints is not None:
                found += [{"serves": endpoints.what, "url": r["url"], "sent": r["sent"], "failed": r["failed"],
                           "rested": r["rested"]} for r in endpoints.stats()]
        return found

    async def run(self) -> DenoiseResult:
        # Before the collector is tuned: what tracing imports is frozen out of its sight with the rest.
        self.tracing = tracing.start(self.config)
        with fewer_collections(YOUNG_THRESHOLD if self.tracing is None else TRACED_YOUNG_THRESHOLD):
            try:
                if self.tracing is None:
                    return await self._run()
                attributes = {"robustft.out": str(self.out_dir), "robustft.samples": len(self.dataset),
                              "robustft.task": self.dataset.task, "robustft.executor": self.config.run.executor,
                              **self.tracing.model_settings(self.config.model)}
                with self.tracing.run_span(attributes) as span:
                    result = await self._run()
                    span.set_attributes({f"robustft.{k}": v for k, v in result.summary.items()
                                         if k in COUNTS and isinstance(v, int)})
                    return result
            finally:
                # Sending what is queued may wait on a slow collector: not on the event loop.
                hooks = getattr(getattr(self, "calls", None), "tracing", None)
                if hooks is not None and hooks is not self.tracing:
                    await asyncio.to_thread(hooks.close)
                if self.tracing is not None:
                    await asyncio.to_thread(self.tracing.close)

    async def _run(self) -> DenoiseResult:
        started = time.monotonic()
        check_rule(self.config, self.dataset.task)
        check_prompts(self.prompts, self.config, self.dataset)  # a template error costs no call
        check_budget(self.config)
        rundir = RunDir(self.out_dir).open()
        handler = _attach_run_log(rundir.log)
        store = journal = embedder = executor = calls = None
        try:
            store = self.shared_store if self.shared_store is not None else ResponseStore(rundir.store)
            journal = Journal(rundir.samples).open()
            if journal.repaired:
                self.say(f"note: {rundir.samples} ended in a line cut off by a stop; that line was removed "
                         "(its sample runs again)")
            settings = method_settings(self.config, self.prompts, self.dataset.task)
            changes = describe_changes(rundir.previous_settings(), settings)
            rundir.mark("running", settings)
            method = _digest(settings)
            fingerprints = {s.id: sample_fingerprint(method, s) for s in self.dataset.samples}
            ledger = CostLedger(cap_usd=self.config.denoise.max_cost_usd, store=store)
            calls = ModelCalls(self.pool, store, self.config.denoise.concurrency, ledger=ledger)
            calls.tracing = tracing.call_hooks(self.tracing, self.config)
            if self.config.denoise.batch_api:
                calls.batch = make_batch_queue(self.config, rundir.path)
            self.rt = AgentRuntime(config=self.config, task=self.dataset.task, pool=self.pool, prompts=self.prompts,
                                   calls=calls)
            # LangGraph takes a second or more to import: do it while the first calls go out.
            wiring = asyncio.get_running_loop().run_in_executor(None, importlib.import_module, "robustft.graph.build")
            self.journal, self.fingerprints, self.calls, self.store = journal, fingerprints, calls, store
            context = RunContext(config=self.config, task=self.dataset.task,
                                 roles=method_of(self.config, self.dataset.task).roles, role_models=self.rt.role_models,
                                 store_path=store.path, say=self.say, tracing=self.tracing)
            executor = self.executor = make_executor(context)
            self.display = Progress(calls.stats, bars=self.progress, quiet_log_every_s=self.quiet_log_every_s,
                                    health=self.replica_health)

            detect, waiting, reused = self._plan()
            if changes and (detect or waiting):
                self.say(f"settings changed since the last run in {self.out_dir} ({'; '.join(changes)}): samples "
                         "made with the old settings run again; every request that did not change is answered "
                         "from the response store")
            if reused:
                self.say(f"resuming {self.out_dir}: {reused} of {len(self.dataset)} samples already finished"
                         + (f", {len(waiting)} waiting for relabeling" if waiting else ""))
            if detect or waiting:
                ledger.check()  # a cap already spent costs no call, not even the preflight
                for config, backend in await executor.start(len(detect) + len(waiting)):
                    self.pool.add(config, backend)  # the Ray model actors: the preflight goes there too
                if calls.batch is not None:
                    recovered = await calls.batch.recover()
                    if recovered:
                        self.say(f"collected {recovered} batch{'es' if recovered > 1 else ''} a stopped run had "
                                 "submitted; their requests are not sent again")
                if self.preflight:
                    await self._preflight()
            vectors = None
            # Embeddings: questions for retrieval at the barrier; open-ended responses, compared by meaning.
            compares_meaning = self.dataset.task == "open"
            has_barrier = "context" not in self.config.denoise.ablate
            if (has_barrier or compares_meaning) and (detect or waiting):
                from ..retrieval import LocalEmbedder, QuestionVectors, TextVectors, make_embedder

                embedder = self._embedder = make_embedder(self.config.denoise, self.config.model)
                in_flight = 1 if isinstance(embedder, LocalEmbedder) else 4
                if self.tracing is not None:
                    embedder = self.tracing.embedder(embedder)
                if compares_meaning:
                    self.rt.texts = TextVectors(embedder, store, batch_size=self.config.denoise.embedding_batch_size,
                                                in_flight=in_flight)
                if has_barrier:
                    vectors = QuestionVectors(embedder, store, batch_size=self.config.denoise.embedding_batch_size,
                                              in_flight=in_flight)
                    vectors.start([s.question for s in self.dataset.samples])
            build = await wiring
            context.app, context.run_batch = build.build_graph(self.rt).compile(), build.run_batch
            await self._drive(executor, "detect", (initial_state(s) for s in detect), len(detect))
            journal.sync()
            noisy = [sid for sid in fingerprints if self._entry_status(sid) == "noisy"]
            if noisy and vectors is not None:
                examples = await self._retrieve(noisy, vectors)
                await self._drive(executor, "relabel", self._relabel_states(noisy, examples), len(noisy))
                journal.sync()
            summary = self._finish(rundir, time.monotonic() - started, reused, calls)
            rundir.mark("finished", settings)
            return DenoiseResult(self.out_dir, summary)
        except OSError as e:
            raise _environment_failure(e, self.out_dir) from None
        finally:
            if calls is not None and calls.batch is not None:
                await calls.batch.aclose()
            if executor is not None:
                await executor.close()
            if journal is not None:
                journal.close()
            if store is not None and store is not self.shared_store:
                store.close()
            if embedder is not None:
                if hasattr(embedder, "aclose"):
                    await embedder.aclose()
                elif hasattr(embedder, "close"):
                    embedder.close()
            if hasattr(self.pool, "aclose"):
                await self.pool.aclose()
            rundir.close()
            _detach_run_log(handler)

    # --- planning -------------------------------------------------------------------------------

    def _entry_status(self, sid: str) -> str | None:
        entry = self.journal.entries.get(sid)
        if entry is None or entry.fingerprint != self.fingerprints[sid]:
            return None
        return entry.status

    def _plan(self) -> tuple[list[Sample], list[str], int]:
        """Samples that need detection, samples waiting for relabeling, and how many are done."""
        detect, waiting, done = [], [], 0
        for sample in self.dataset.samples:
            status = self._entry_status(sample.id)
            if status is None or status == "failed":
                detect.append(sample)
            elif status == "noisy":
                waiting.append(sample.id)
            else:
                done += 1
        return detect, waiting, done

    async def _preflight(self) -> None:
        """One call per distinct model before the run: a wrong URL or model name should stop the run
        with one clear message, not mark every sample failed. The probe is the first sample's real
        question prompt, so a server that only understands dataset questions answers it too."""
        first = self.dataset.samples[0]
        probe = [{"role": "user", "content": self.prompts.question_prompt(
            first.question, first.options, self.dataset.task, self.config.data.instruction)}]
        seen: set[str] = set()
        self.preflight_calls = 0
        for role in method_of(self.config, self.dataset.task).roles:
            cfg = self.rt.role_models[role]
            key = cfg.model_dump_json()
            if key in seen:
                continue
            seen.add(key)
            self.preflight_calls += 1
            try:
                await self.calls.send_unstored(cfg, probe, role)
            except (ModelCallError, ServiceDown) as exc:
                urls = cfg.base_url if isinstance(cfg.base_url, list) else [cfg.base_url] if cfg.base_url else []
                where = f" at {', '.join(urls)}" if urls else ""
                raise UserError(f"cannot use the {role} model {cfg.name!r}{where}: {exc}. "
                                "Check that the server is running and that model.base_url and model.name are right.") from None

    # --- the two passes through the graph -----------------------------------------------------

    async def _drive(self, executor: Executor, phase: str, states: Iterable[SampleState], total: int) -> None:
        """One phase: every final state the executor yields goes to the journal as it comes; the
        calls it reports made elsewhere (Ray workers) are counted with this process's."""
        with self.display.phase(phase, total) as bar:
            async with aclosing(executor.drive(phase, states, total)) as finals:
                async for final in finals:
                    if isinstance(final, CallCounts):
                        self.calls.stats.add(final)
                    else:
                        bar.advance(failed=self._record(final))

    def _record(self, state: SampleState) -> bool:
        """Append a sample's record to the journal; returns whether the sample failed."""
        record = sample_record(state, self.dataset.task, self.fingerprints[state["id"]])
        self.journal.append(record)
        return record["status"] == "failed"

    def _relabel_states(self, noisy: list[str], examples: dict[str, list[Example]]) -> Iterator[SampleState]:
        """Noisy samples read back from the journal as they are sent in (not all held in memory)."""
        for sid in noisy:
            state = state_of(self.journal.read(sid))
            state["examples"] = examples.pop(sid)
            yield state  # type: ignore[misc]

    # --- the barrier --------------------------------------------------------------------------

    async def _retrieve(self, noisy: list[str], vectors) -> dict[str, list[Example]]:
        """Index the clean samples of the whole dataset and retrieve examples for every noisy one."""
        from ..retrieval import make_index

        d = self.config.denoise
        if vectors.running:
            self.say(f"waiting for the question embeddings ({vectors.done} of {len(self.dataset)} done)")
        matrix = await vectors.matrix()
        row = {s.id: i for i, s in enumerate(self.dataset.samples)}
        by_id = {s.id: s for s in self.dataset.samples}
        if "checker" in d.ablate:
            pool = [sid for sid in row if self._entry_status(sid) not in (None, "failed")]
        else:
            pool = [sid for sid in row if self._entry_status(sid) == "clean"]
        self.say(f"clean index: {len(pool)} clean samples; retrieving {d.k} examples for each of {len(noisy)} "
                 "noisy samples")
        if not pool:
            log.warning("no clean samples to retrieve examples from; the context relabeler answers without examples")
        with make_index(d.retrieval) as index:
            index.add(pool, matrix[[row[sid] for sid in pool]])
            found = index.query(matrix[[row[sid] for sid in noisy]], d.k, exclude_ids=noisy)
        examples = {}
        for sid, hits in zip(noisy, found):
            examples[sid] = [{"id": hid, "question": by_id[hid].question, "answer": by_id[hid].label,
                              "options": by_id[hid].options, "similarity": similarity,
                              "conversation": by_id[hid].conversation} for hid, similarity in hits]
        return examples

    # --- selection and outputs ----------------------------------------------------------------

    def _finish(self, rundir: RunDir, wall: float, reused: int, calls: ModelCalls) -> dict[str, Any]:
        d = self.config.denoise
        entries = self.journal.entries
        candidates = {s.id: entries[s.id].score for s in self.dataset.samples
                      if s.id in entries and is_candidate(entries[s.id].status, entries[s.id].reason)}
        if "selection" in d.ablate:
            kept, threshold = list(candidates), None
        else:
            kept, threshold = select_lowest(candidates, d.beta)
        missing = sum(1 for v in candidates.values() if v is None)
        if missing:
            log.warning(f"{missing} relabeled samples have no score (the model returned no logprobs); they rank "
                        "after all scored ones")
        kept_ids = set(kept)
        summary = Summary()

        def records() -> Iterable[SampleRecord]:
            for sample in self.dataset.samples:
                if sample.id in entries:
                    record = self.journal.read(sample.id)
                else:  # never reached the graph (the run was stopped first): not finished
                    record = sample_record(initial_state(sample), self.dataset.task, None)
                yield summary.add(final_record(record, sample.id in kept_ids, self.config.data.numeric_tolerance))

        selection = {"beta": d.beta, "enabled": "selection" not in d.ablate, "score": d.score,
                     "candidates": len(candidates), "kept": len(kept), "threshold": threshold, "unscored": missing}
        stats = calls.stats
        this_run = {"calls_paid": stats.paid, "calls_from_store": stats.reused, "failed_attempts": stats.failed_attempts,
                    "throttled_429": stats.throttled,
                    **({"batches_submitted": calls.batch.submitted} if calls.batch is not None else {}),
                    "preflight_calls": getattr(self, "preflight_calls", 0)}

        def result() -> dict[str, Any]:
            return summary.result(selection=selection, wall_time_s=wall, config=self.config.public_dict(),
                                  task=self.dataset.task, data_path=str(self.dataset.path), resumed=reused,
                                  store=this_run, cost=self._cost(summary, calls), replicas=self.replica_health())

        rundir.write_outputs(records(), result, fine_tuning_record)
        return json.loads(rundir.summary.read_text(encoding="utf-8"))


    def _cost(self, summary: Summary, calls: ModelCalls) -> dict[str, Any] | None:
        """summary.json's `cost`: the records' calls priced per role (`cost_usd`), what this run paid
        and saved, and what this run directory has spent in all (what the cap counts)."""
        cost = records_cost(self.config, summary.tokens_by_role)
        ledger = calls.ledger
        if cost is None and not ledger.priced:
            return None
        cost = cost or {"usd": 0.0, "by_role": {}}
        prices = {role: p.as_dict() for role in method_of(self.config).roles
                  if (p := Prices.of(self.config.model_for(role))) is not None}
        return {**cost, "this_run": ledger.this_run(), "spent_usd": round(ledger.total, 6),
                "max_cost_usd": self.config.denoise.max_cost_usd, "prices": prices}


def make_batch_queue(config: RobustFTConfig, run_dir: Path):
    """The Batch API queue of `denoise.batch_api` (`backends.batch`): every role on one OpenAI-compatible
    server, whose batches are recorded in the run directory."""
    import os

    from ..backends.batch import BatchQueue

    models = [config.model_for(role) for role in method_of(config).roles]
    urls = {tuple(m.base_urls) for m in models}
    if any(m.provider != "openai" for m in models) or len(urls) != 1 or len(next(iter(urls))) != 1:
        raise ConfigError("denoise.batch_api needs every role on one OpenAI-compatible server: "
                          "provider openai and a single model.base_url (no replicas, no per-role servers)")
    if config.run.executor == "ray":
        raise ConfigError("denoise.batch_api works with the local executor only: set run.executor to local")
    model = models[0]
    return BatchQueue(model.base_urls[0], os.environ.get(model.api_key_env) or "EMPTY", run_dir / BATCHES,
                      poll_s=config.denoise.batch_poll_s, max_retries=model.max_retries, timeout_s=model.timeout_s)


def make_executor(context: RunContext) -> Executor:
    if context.config.run.executor == "ray":
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("run.executor is 'ray' but Ray is not installed: pip install -e '.[ray]' in the robustft clone (or "
                              "pip install ray), or set run.executor to local")
        from .cluster import RayExecutor

        return RayExecutor(context)
    return LocalExecutor(context)


def check_budget(config: RobustFTConfig) -> None:
    """A cap needs prices to count against, and a driver that sees every call."""
    cap = config.denoise.max_cost_usd
    if cap is None:
        return
    if not any(Prices.of(config.model_for(role)) for role in method_of(config).roles):
        raise ConfigError(f"denoise.max_cost_usd is {cap:g} but no model has a price, so no call would count "
                          "against it: set model.price_input_per_mtok and model.price_output_per_mtok (USD per "
                          "million tokens, from your provider's price page; see examples/hosted_api.yaml)")
    if config.run.executor == "ray":
        raise ConfigError("denoise.max_cost_usd works with the local executor only: the Ray workers "
                          "do not share one budget yet; set run.executor to local, or unset the cap")


def _environment_failure(e: OSError, out_dir: Path) -> RobustFTError:
    what = _ENVIRONMENT_ERRNOS.get(e.errno)
    if what is None:
        return RobustFTError(f"{e.filename or out_dir}: {e.strerror or e}")
    return EnvironmentFailure(f"{e.filename or out_dir}: {what}. The run stopped; nothing is lost: every finished "
                              "sample and model response is kept. Free space (or fix the folder), then run the same "
                              "command again to continue.")


def log_info(message: str) -> None:
    log.info(message)


class _RunLog(logging.StreamHandler):
    """DIR/run.log, appended to; never through a symbolic link (it could append to any file), and
    no key or password in a URL in it."""

    def __init__(self, path: Path):
        from ..files import open_nofollow

        fd = open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        super().__init__(os.fdopen(fd, "a", encoding="utf-8"))

    def format(self, record: logging.LogRecord) -> str:
        from ..secrets import redact

        return redact(super().format(record))

    def close(self) -> None:
        try:
            self.stream.close()
        finally:
            super().close()

    def handleError(self, record: logging.LogRecord) -> None:
        """A line that cannot be written (a full disk) is lost without a traceback: the run's own
        writes stop it with a message naming the disk."""


def _attach_run_log(path: Path) -> logging.Handler | None:
    try:
        handler = _RunLog(path)
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handler


def _detach_run_log(handler: logging.Handler | None) -> None:
    if handler is not None:
        log.removeHandler(handler)
        handler.close()


async def adenoise_config(config: RobustFTConfig, **kwargs: Any) -> DenoiseResult:
    return await DenoiseRun(config, **kwargs).run()


def denoise(config: RobustFTConfig, **kwargs: Any) -> DenoiseResult:
    """Run the whole method on `config.data` into `config.out` (see `DenoiseRun` for options)."""
    return asyncio.run(adenoise_config(config, **kwargs))

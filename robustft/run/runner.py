"""Batch runs of the graph over a whole dataset, with the barrier, selection, outputs and resume.

    detect   every sample runs base -> reasoning -> checker, stopping at the barrier if noisy
    index    the clean samples go into a Chroma collection; examples are retrieved for all noisy ones
    relabel  the noisy samples resume: context relabeler -> reviewer
    select   all relabels are ranked together by score; the β fraction with the lowest is kept
    write    samples.jsonl, denoised.jsonl, summary.json

Progress lives in DIR/checkpoints.sqlite (LangGraph's SQLite checkpointer, one thread per sample),
so a run that stops for any reason resumes where it was when started again with the same --out:
finished samples are neither re-run nor re-queried. Samples that ended as failed are retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from tqdm.auto import tqdm

from ..backends.models import ModelPool
from ..agents.runtime import AgentRuntime, describe
from ..config import ROLES, RobustFTConfig
from ..data import Dataset, load_dataset
from ..entropy import select_lowest
from ..errors import ConfigError, ModelCallError, UserError
from .outputs import sample_record, summarize, write_outputs
from ..prompts import PROMPT_NAMES, PromptLibrary
from ..prompts.check import check_prompts
from ..retrieval import CleanIndex, Embedder, IndexedSample
from ..graph.build import BARRIER, compile_graph
from ..graph.state import initial_state

CHECKPOINTS = "checkpoints.sqlite"
RUN_FILE = "run.json"


@dataclass
class DenoiseResult:
    out_dir: Path
    summary: dict[str, Any]
    records: list[dict[str, Any]]


def _thread(sample_id: str) -> dict:
    return {"configurable": {"thread_id": sample_id}}


def run_fingerprint(config: RobustFTConfig, dataset: Dataset, prompts: PromptLibrary) -> dict[str, Any]:
    """Everything that changes what the models are asked. β and concurrency are not in it: they can
    change between a run and its resume (a new β only re-selects, with no new calls)."""
    h = hashlib.sha256()
    for s in dataset.samples:
        h.update(json.dumps([s.id, s.question, s.label, s.options], ensure_ascii=False).encode())
    prompt_hash = hashlib.sha256()
    for name in PROMPT_NAMES:
        prompt_hash.update(Path(prompts.source_of(name)).read_bytes())
    # Where a server lives and how patiently we call it do not change its answers.
    volatile = {"base_url", "api_key_env", "timeout_s", "max_retries", "batch_size"}
    # Unset options are left out, so adding an optional field never orphans existing run directories.
    models = {role: {k: v for k, v in config.model_for(role).model_dump(mode="json").items()
                     if k not in volatile and v is not None} for role in ROLES}
    d = config.denoise
    return {"data": h.hexdigest(), "task": dataset.task, "models": models, "prompts": prompt_hash.hexdigest(),
            "method": {"reflection_rounds": d.reflection_rounds, "checker": d.checker, "review": d.review, "k": d.k,
                       "context_token_budget": d.context_token_budget,
                       "score": d.score,
                       "embedding_model": d.embedding_model, "parse_retries": d.parse_retries,
                       "ablate": sorted(d.ablate), "instruction": config.data.instruction}}


def _check_run_dir(out_dir: Path, fingerprint: dict[str, Any]) -> None:
    run_file = out_dir / RUN_FILE
    if run_file.exists():
        try:
            previous = json.loads(run_file.read_text(encoding="utf-8"))["fingerprint"]
        except (ValueError, KeyError):
            raise UserError(f"{run_file}: unreadable run file; use a new --out directory") from None
        differs = [k for k in fingerprint if previous.get(k) != fingerprint[k]]
        if differs:
            raise UserError(
                f"{out_dir} holds a run with different {', '.join(differs)}; resuming it would mix two runs. "
                "Use a new --out directory, or delete this one to start over.")
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps({"fingerprint": fingerprint}, indent=2) + "\n", encoding="utf-8")


async def _pool_map(items: list, fn: Callable[[Any], Awaitable[None]], workers: int, desc: str, progress: bool) -> None:
    """Run fn over items with `workers` tasks; each sample makes one model call at a time, so this
    bounds the calls in flight."""
    if not items:
        return
    queue: asyncio.Queue = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    bar = tqdm(total=len(items), desc=desc, unit="sample", disable=not progress, file=sys.stderr, leave=True)

    async def worker() -> None:
        while not queue.empty():
            item = queue.get_nowait()
            await fn(item)
            bar.update(1)

    try:
        await asyncio.gather(*(worker() for _ in range(min(workers, len(items)))))
    finally:
        bar.close()


class DenoiseRun:
    def __init__(self, config: RobustFTConfig, *, pool: ModelPool | None = None, dataset: Dataset | None = None,
                 progress: bool = True, preflight: bool = True, log: Callable[[str], None] | None = None):
        if config.out is None:
            raise ConfigError("no output directory: pass --out DIR (or set `out:` in the config)")
        if dataset is None and config.data.path is None:
            raise ConfigError("no data: pass --data FILE (or set `data.path` in the config)")
        self.config = config
        self.out_dir = Path(config.out)
        self.dataset = dataset or load_dataset(config.data)
        self.prompts = PromptLibrary(config.denoise.prompts_dir)
        self.pool = pool or ModelPool()
        self.progress = progress
        self.preflight = preflight
        self.log = log or (lambda msg: print(msg, file=sys.stderr))
        self.rt = AgentRuntime(config=config, task=self.dataset.task, pool=self.pool, prompts=self.prompts)
        self.crashes: dict[str, str] = {}

    async def run(self) -> DenoiseResult:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        started = time.monotonic()
        check_prompts(self.prompts, self.config, self.dataset)
        _check_run_dir(self.out_dir, run_fingerprint(self.config, self.dataset, self.prompts))
        async with AsyncSqliteSaver.from_conn_string(str(self.out_dir / CHECKPOINTS)) as saver:
            self.app = compile_graph(self.rt, checkpointer=saver)
            self.saver = saver
            states = await self._states()
            resumed = sum(1 for st in states.values() if st.values and not st.next and st.values.get("status") != "failed")
            detect, relabel = await self._plan(states)
            if any(st.values for st in states.values()):
                waiting = sum(1 for st in states.values() if st.next == (BARRIER,))
                self.log(f"resuming {self.out_dir}: {resumed} of {len(states)} samples already finished"
                         + (f", {waiting} waiting for relabeling" if waiting else ""))
            if (detect or relabel) and self.preflight:
                await self._preflight()
            await _pool_map(detect, self._invoke_fresh, self.config.denoise.concurrency, "detect", self.progress)
            states = await self._states()
            retried = {sid for sid, _ in relabel}
            relabel += [(s, _thread(s)) for s, st in states.items() if st.next == (BARRIER,) and s not in retried]
            if relabel:
                self._prepare_examples([sid for sid, _ in relabel], states)
                await _pool_map(relabel, self._invoke_resume, self.config.denoise.concurrency, "relabel", self.progress)
                states = await self._states()
        return self._finish(states, time.monotonic() - started, resumed)

    async def _states(self) -> dict[str, Any]:
        return {s.id: await self.app.aget_state(_thread(s.id)) for s in self.dataset.samples}

    async def _plan(self, states: dict[str, Any]) -> tuple[list, list[tuple[str, dict]]]:
        """Which samples still need detection, and which need relabeling from a checkpoint."""
        by_id = {s.id: s for s in self.dataset.samples}
        detect, relabel = [], []
        for sid, st in states.items():
            if not st.values:
                detect.append(by_id[sid])
            elif st.next and st.next != (BARRIER,):
                detect.append(by_id[sid])  # stopped mid-detection: continue from its checkpoint
            elif not st.next and st.values.get("status") == "failed":
                # Retry a failure from the latest point before it: the barrier if it got there.
                barrier = None
                async for past in self.app.aget_state_history(_thread(sid)):
                    if past.next == (BARRIER,):
                        barrier = past.config
                        break
                if barrier is not None:
                    relabel.append((sid, barrier))
                else:
                    await self.saver.adelete_thread(sid)
                    detect.append(by_id[sid])
        return detect, relabel

    async def _preflight(self) -> None:
        """One call per distinct model before the run: a wrong URL or model name should stop the run
        with one clear message, not mark every sample failed. The probe is the first sample's real
        question prompt, so a server that only understands dataset questions answers it too."""
        first = self.dataset.samples[0]
        probe = self.prompts.question_prompt(first.question, first.options, self.dataset.task,
                                             self.config.data.instruction)
        seen = set()
        for role in ROLES:
            cfg = self.config.model_for(role)
            key = cfg.model_dump_json()
            if key in seen:
                continue
            seen.add(key)
            try:
                await self.rt.generate(role, probe)
            except ModelCallError as exc:
                where = f" at {cfg.base_url}" if cfg.base_url else ""
                raise UserError(f"cannot use the {role} model {cfg.name!r}{where}: {exc}. "
                                "Check that the server is running and that --base-url and --model are right.") from None

    async def _invoke_fresh(self, sample) -> None:
        cfg = _thread(sample.id)
        current = await self.app.aget_state(cfg)
        payload = None if current.values else initial_state(sample)
        await self._guarded(sample.id, self.app.ainvoke(payload, cfg))

    async def _invoke_resume(self, item: tuple[str, dict]) -> None:
        sid, cfg = item
        await self._guarded(sid, self.app.ainvoke(None, cfg))

    async def _guarded(self, sid: str, call: Awaitable) -> None:
        """One sample's unexpected exception is recorded for that sample; the run goes on."""
        try:
            await call
        except (asyncio.CancelledError, KeyboardInterrupt, UserError):
            raise
        except Exception as exc:  # noqa: BLE001
            self.crashes[sid] = f"internal error: {describe(exc)}"

    def _prepare_examples(self, noisy_ids: list[str], states: dict[str, Any]) -> None:
        """The barrier: index the clean samples of the whole dataset, retrieve for all noisy ones."""
        checker_off = "checker" in self.config.denoise.ablate
        pool = []
        for s in self.dataset.samples:
            values = states[s.id].values
            if checker_off and values and values.get("status") != "failed":
                pool.append(IndexedSample(s.id, s.question, s.label, s.options))
            elif values.get("status") == "clean":
                pool.append(IndexedSample(s.id, s.question, s.label, s.options))
        d = self.config.denoise
        self.log(f"clean index: embedding {len(pool)} clean samples with {d.embedding_model} and retrieving "
                 f"{d.k} examples for each of {len(noisy_ids)} noisy samples")
        embedder = Embedder(d.embedding_model, d.embedding_batch_size)
        by_id = {s.id: s for s in self.dataset.samples}
        with CleanIndex(self.out_dir / "chroma", embedder, progress=self.progress) as index:
            index.add(pool)
            found = index.query([by_id[i].question for i in noisy_ids], d.k, exclude_ids=noisy_ids)
        self.rt.examples = dict(zip(noisy_ids, found))

    def _finish(self, states: dict[str, Any], wall: float, resumed: int) -> DenoiseResult:
        finals = []
        for s in self.dataset.samples:
            values = dict(states[s.id].values or initial_state(s))
            if s.id in self.crashes:
                values.update(status="failed", error=self.crashes[s.id])
            elif states[s.id].next:
                values.update(status="failed", error=values.get("error") or "the sample did not finish")
            finals.append(values)
        candidates = {v["id"]: v.get("score") for v in finals if v.get("status") == "candidate"}
        if "selection" in self.config.denoise.ablate:
            kept, threshold = list(candidates), None
        else:
            kept, threshold = select_lowest(candidates, self.config.denoise.beta)
        missing = sum(1 for v in candidates.values() if v is None)
        if missing:
            self.log(f"warning: {missing} relabeled samples have no score (the model returned no logprobs); "
                     "they rank after all scored ones")
        records = [sample_record(v, self.dataset.task, set(kept)) for v in finals]
        selection = {"beta": self.config.denoise.beta, "enabled": "selection" not in self.config.denoise.ablate,
                     "score": self.config.denoise.score, "candidates": len(candidates), "kept": len(kept),
                     "threshold": threshold, "unscored": missing}
        summary = summarize(records, selection=selection, wall_time_s=wall, config=self.config.public_dict(),
                            task=self.dataset.task, data_path=str(self.dataset.path), resumed=resumed)
        write_outputs(self.out_dir, records, summary)
        return DenoiseResult(self.out_dir, summary, records)


def denoise(config: RobustFTConfig, **kwargs: Any) -> DenoiseResult:
    """Run the whole method on `config.data` into `config.out` (see `DenoiseRun` for options)."""
    return asyncio.run(DenoiseRun(config, **kwargs).run())

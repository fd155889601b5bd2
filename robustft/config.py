"""Configuration: pydantic models (unknown keys are errors), loaded from YAML, overridden by flags.

One `RobustFTConfig` describes a whole run. Every field has a documented default, so an empty
file is a valid config; `examples/*.yaml` show the common set-ups.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (BaseModel, ConfigDict, Field, StringConstraints, ValidationError, ValidationInfo, create_model,
                      field_validator, model_validator)
from pydantic.fields import FieldInfo

from .errors import ConfigError

Role = Literal["base", "reasoning", "context", "reviewer", "judge"]
ROLES: tuple[str, ...] = ("base", "reasoning", "context", "reviewer", "judge")
# Task types, input layouts and selection scores are names registered in entry-point groups
# (`robustft.plugins`): a config checks only that a name is one; a run checks, when it starts, that
# something is registered under it (`robustft.run.registered`), so this module scans no plugins.
RegisteredName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")]
TaskType = RegisteredName    # auto, or a task type: multiple_choice, text, numeric, open (robustft.tasks)
DataFormat = RegisteredName  # auto, or a layout: table, messages, sharegpt, alpaca (robustft.layouts)
ScoreName = RegisteredName   # a selection score: mean_nll, answer_nll, entropy (robustft.scores)
Ablation = Literal["reasoning", "checker", "context", "reviewer", "selection"]


def flag(*commands: str, name: str | None = None, metavar: str | None = None, help: str | None = None,
         help_in: dict[str, str] | None = None, api: bool | None = None) -> dict[str, Any]:
    """A setting's command-line and API metadata (a field's `json_schema_extra`): the one table the
    command line generates its flags from and `robustft.denoise(...)` its keywords
    (`robustft.settings`). `commands`: the commands that take it as a flag; `name`: the flag and
    keyword name when not the field's own (`max_cost` for `max_cost_usd`: `--max-cost`, `max_cost=`);
    `help`: the flag's short help when not the description (the default is added to it);
    `help_in`: another help for one command; `api`: a keyword of the library API (default: when
    `denoise` takes it)."""
    meta = {"commands": list(commands), "name": name, "metavar": metavar, "help": help, "help_in": help_in or {},
            "api": "denoise" in commands if api is None else api}
    return {"cli": {key: value for key, value in meta.items() if value not in (None, {})}}


class StrictModel(BaseModel):
    # inf and nan are no setting's value (a temperature, a price, a β): refused like any wrong type.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def check_base_urls(value: str | Sequence[str] | None, field: str = "model.base_url") -> list[str]:
    """The URLs in `value` (one or a list), each with scheme http or https and a host; else ConfigError."""
    if value is None:
        return []
    urls = [value] if isinstance(value, str) else list(value)
    if not urls:
        raise ConfigError(f"{field}: an empty list; give at least one URL such as http://127.0.0.1:8000/v1")
    for url in urls:
        problem = _url_problem(url)
        if problem:
            raise ConfigError(f"{field}: {problem}; give a URL such as http://127.0.0.1:8000/v1")
    return urls


def _url_problem(url: object) -> str | None:
    if not isinstance(url, str):
        return f"{url!r} is not a string"
    if not url.strip():
        return "an empty URL"
    if url != url.strip() or any(c.isspace() for c in url):
        return f"{url!r} contains spaces"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        return f"{url!r} is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"{url!r} must start with http:// or https://"
    if not parts.hostname:
        return f"{url!r} has no host"
    return None


def _url_field(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, (str, list, tuple)):
        raise ValueError("must be a URL or a list of URLs")
    urls = [value] if isinstance(value, str) else list(value)
    if not urls:
        raise ValueError("an empty list; give at least one URL such as http://127.0.0.1:8000/v1")
    for url in urls:
        problem = _url_problem(url)
        if problem:
            raise ValueError(f"{problem}; give a URL such as http://127.0.0.1:8000/v1")
    return value if isinstance(value, str) else urls


RECORDED = "recorded"  # validation context: a configuration a finished run recorded (see `recorded_config`)


class _ModelChecks(StrictModel):
    """The checks a model's settings get, whole (`ModelConfig`) or as a role's changes (`ModelOverride`)."""

    @field_validator("base_url", mode="before", check_fields=False)
    @classmethod
    def _valid_urls(cls, value: Any) -> Any:
        return _url_field(value)


class ModelConfig(_ModelChecks):
    """One chat model: the settings every backend shares. `provider` names a backend registered in
    the entry-point group `robustft.backends` (see `robustft.backends.registry`).

    Keys beside these are the backend's own options (its `Options` model: `device`, `dtype`,
    `batch_size`, `adapter` for transformers, `script` for fake, ...). They are kept as given
    (`options`) and checked against the selected backend when a run starts: this module does not
    know the backends."""

    model_config = ConfigDict(extra="allow")

    provider: str = Field("openai", description=(
        "The backend: openai (any OpenAI-compatible server: vllm serve, hosted APIs), transformers (a local "
        "model), vllm (in-process vLLM), fake (scripted replies, for tests), or any installed plugin "
        "registered under the entry-point group robustft.backends. A base_url given on the command line sets "
        "openai, a name alone transformers."), json_schema_extra=flag(api=True))
    name: str | None = Field(None, description="Model name on the server, or a local path / hub name.",
                             json_schema_extra=flag("denoise", "ablate", "eval", name="model", metavar="NAME", help=(
                                 "model name on the server (with a base URL), or a local transformers model "
                                 "directory / hub name (without)")))
    base_url: str | list[str] | None = Field(None, description=(
        "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1, or a list of replicas serving the same model "
        "(each call goes to the one with the fewest calls in flight; a failing one is rested)."),
        json_schema_extra=flag("denoise", "ablate", "eval", metavar="URL", help=(
            "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (vllm serve); repeat it for replicas of the "
            "same model (each call goes to the least busy one; one that keeps failing is rested). The API key is "
            "read from $OPENAI_API_KEY (any value for local servers)")))
    api_key_env: str = Field("OPENAI_API_KEY", description=(
        "Environment variable holding the API key (the key itself is never written anywhere; any value, or "
        "none, for local servers)."))
    temperature: float = Field(1.0, ge=0.0, description="Sampling temperature of every expert call (the paper's: 1.0).",
                               json_schema_extra=flag(api=True))
    max_tokens: int = Field(512, gt=0, description="Longest reply, in tokens.",
                            json_schema_extra=flag("denoise", "ablate", metavar="N", help="max tokens per response"))
    logprobs: bool = Field(True, description="Ask for token log-probabilities; entropy selection needs them.")
    top_logprobs: int | None = Field(None, ge=0, le=20, description=(
        "Alternatives returned per generated token, for the entropy score. None: 5 when denoise.score is "
        "'entropy', else 0."))
    timeout_s: float = Field(120.0, gt=0, description=(
        "Seconds before a request is abandoned (then retried; with several replicas, re-sent to another at once)."))
    connect_timeout_s: float = Field(10.0, gt=0, description=(
        "Seconds to open a connection to the server; a dead host fails this fast, not after timeout_s."))
    max_reply_bytes: int = Field(8 * 1024 * 1024, ge=1024, description=(
        "Largest reply body read from a server, in bytes; a larger one is a malformed reply (retried, then the "
        "sample's error). Far above any real completion with logprobs."))
    max_retries: int = Field(3, ge=0, le=10, description="Retries of a failed request, with jittered exponential backoff.")
    retry_backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between two retries of a request.")
    give_up_after_s: float = Field(300.0, gt=0, description=(
        "When every call to a model has failed for this long, the run stops (resumable) instead of "
        "marking the remaining samples failed."))
    seed: int | None = Field(None, description="Sampling seed sent with each request, when the server honours one.")
    price_input_per_mtok: float | None = Field(None, ge=0.0, description=(
        "USD per million prompt tokens, from your provider's price page (robustft ships no prices; see "
        "examples/hosted_api.yaml). With it or the output price set, every paid call has a cost: the progress "
        "line, summary.json cost_usd (per role too), the report; denoise.max_cost_usd caps it."))
    price_cached_input_per_mtok: float | None = Field(None, ge=0.0, description=(
        "USD per million prompt tokens the server reports as cached (usage.prompt_tokens_details.cached_tokens). "
        "None: the input price."))
    price_output_per_mtok: float | None = Field(None, ge=0.0, description=(
        "USD per million completion tokens (see price_input_per_mtok)."))
    requests_per_minute: float | None = Field(None, gt=0, description=(
        "Your tier's request limit: calls are paced to stay under it (a client-side token bucket). None: paced "
        "by the server's x-ratelimit-* headers and Retry-After alone, when it sends them."))
    tokens_per_minute: float | None = Field(None, gt=0, description=(
        "Your tier's token limit (prompt plus max_tokens per call, as OpenAI counts it, estimated before "
        "sending): calls are paced to stay under it. None: paced by the server's headers alone."))

    @property
    def options(self) -> dict[str, Any]:
        """The backend's own options, as given (validated by the backend when a run starts)."""
        return dict(self.model_extra or {})

    @property
    def base_urls(self) -> list[str]:
        """`base_url` as a list (empty when unset)."""
        if self.base_url is None:
            return []
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)


def overrides_of(model: type[BaseModel], base: type[BaseModel], name: str) -> type[BaseModel]:
    """A model of `model`'s fields, each optional with default None and the same checks (for a
    role's changes to the default model: unset fields inherit). Generated, so that a new field of
    `model` is overridable without being written twice."""
    fields: dict[str, Any] = {}
    for field, info in model.model_fields.items():
        optional = FieldInfo.merge_field_infos(info, default=None, default_factory=None)
        fields[field] = (info.annotation | None, optional)
    return create_model(name, __base__=base, __module__=__name__, __doc__=base.__doc__, **fields)


class _OverrideBase(_ModelChecks):
    """A role's changes to the default model; unset fields inherit. Keys beside the shared settings
    are the role's backend options (see `ModelConfig`)."""

    model_config = ConfigDict(extra="allow")


ModelOverride = overrides_of(ModelConfig, _OverrideBase, "ModelOverride")


def model_flag_updates(configured: ModelConfig, *, model: str | None = None,
                       base_url: str | Sequence[str] | None = None) -> dict[str, Any]:
    """The model fields that a model name and base URL given by a person (a command's flags, the
    evaluation's arguments) set.

    A base URL (one or more): an OpenAI-compatible server, provider `openai`. A name alone: a
    local transformers model, unless the configuration already names a server (a `base_url`) or
    another backend (`vllm`, a plugin), whose model name it then changes. An empty value of
    either is an error, never a silent switch to a local model.
    """
    updates: dict[str, Any] = {}
    if model is not None:
        if not model.strip():
            raise ConfigError("model.name is empty: give the model name the server serves, or a local model path")
        updates["name"] = model
    if base_url is not None:
        urls = check_base_urls(base_url)
        updates["base_url"] = urls[0] if len(urls) == 1 else urls
        updates["provider"] = "openai"
    elif model is not None and configured.provider == "openai" and not configured.base_url:
        updates["provider"] = "transformers"
    return updates


class DataConfig(StrictModel):
    """Where the samples come from and which fields hold what (see README, "Your data")."""

    path: Path | None = Field(None, description=(
        "The data: a .csv, .tsv, .jsonl, .json or .parquet file, a folder written by datasets' save_to_disk, a "
        "folder of data files, or a Hugging Face Hub name (org/name, read with datasets.load_dataset). A "
        "relative path in a config file is relative to that file."),
        json_schema_extra=flag("denoise", "ablate", "train", name="data", metavar="SOURCE", help=(
            "CSV, TSV, JSONL, JSON, Parquet, a save_to_disk folder, or a Hugging Face Hub name (org/name); tables "
            "and chat formats (messages, ShareGPT conversations, Alpaca)"), help_in={"train": (
                "denoised.jsonl, or any labeled data: CSV, TSV, JSONL, JSON, Parquet, a save_to_disk folder, or a "
                "Hugging Face Hub name (org/name); tables and chat formats (messages, ShareGPT conversations, "
                "Alpaca)")}, api=False))
    split: str | None = Field(None, description=(
        "Which split of a hub dataset or saved DatasetDict to read (also: which list of a JSON object that "
        "holds several). None: 'train', or the only one."),
        json_schema_extra=flag("denoise", "ablate", "train", "eval", "export", metavar="NAME", help=(
            "split of a hub dataset or DatasetDict (default train, or the only one)")))
    format: DataFormat = Field("auto", description=(
        "The shape of each record: table (question and answer columns), messages (OpenAI chat: role, "
        "content), sharegpt (conversations: from, value), alpaca (instruction, input, output), or a layout a "
        "package registers (entry-point group robustft.layouts). auto: the question and answer columns when both "
        "exist, else recognised from the field names."))
    id_column: str = Field("id", description=(
        "Column holding each sample's unique id; without it the 0-based row number is the id (messages count "
        "rows from 1, as editors show them: the sample with id 0 is row 1)."),
        json_schema_extra=flag("denoise", "ablate", "train", "eval", "export", metavar="NAME", help="column holding unique ids (none: row numbers)"))
    question_column: str = Field("question", description="Column holding the question (tables).",
                                 json_schema_extra=flag("denoise", "ablate", "train", "eval", "export", metavar="NAME", help="column holding the question"))
    answer_column: str = Field("answer", description=(
        "Column holding the given, possibly wrong, answer (tables)."),
        json_schema_extra=flag("denoise", "ablate", "train", "eval", "export", metavar="NAME", help="column holding the answer"))
    options_column: str = Field("options", description=(
        "Column holding the options of a multiple-choice question, a JSON list of strings; when present, "
        "answers are option letters (A = first)."),
        json_schema_extra=flag("denoise", "ablate", "train", "eval", "export", metavar="NAME", help="column holding multiple-choice options"))
    options_columns: list[str] | None = Field(None, description=(
        "Multiple choice with one column per option: the option columns in order (A = the first). None: "
        "recognised by name (A..E, option_a.., choice1.., opa..), or a list column (options, choices, endings; "
        "ARC's {text, label})."),
        json_schema_extra=flag("denoise", "ablate", "train", "eval", "export", metavar="A,B,C,D", help=(
            "one column per option, in order (default: recognised by name, e.g. A..E, option_a.., opa..)")))
    conversation_column: str | None = Field(None, description=(
        "Column holding the conversation in the messages and sharegpt formats. None: 'messages', then "
        "'conversations'."))
    task: TaskType = Field("auto", description=(
        "How answers are read and compared: auto, multiple_choice, text, numeric, open, or a task type a package "
        "registers (entry-point group robustft.tasks). auto: multiple_choice when options are given, numeric when every "
        "answer is a number, open when answers are long free text (the median answer has 8 words or "
        "more), else text (short free text)."),
        json_schema_extra=flag("denoise", metavar="TASK", help=(
            "answer type: auto (inferred), multiple_choice, text, numeric, open (long free-text responses), or a "
            "task type a package registers")))
    numeric_tolerance: float = Field(1e-2, ge=0.0, description=(
        "Numeric answers: when either side is a whole number the two must be equal (125 is not 126); "
        "other numbers match within this relative tolerance (0.01 = 1 %). Printed by the dry run and the report."))
    instruction: str = Field("", description="Extra task instruction appended to every answer request.",
                             json_schema_extra=flag(api=True))
    limit: int | None = Field(None, gt=0, description="Take only the first N rows.", json_schema_extra=flag(
        "denoise", "ablate", "train", "eval", "export", "run", metavar="N", help="take only the first N rows",
        help_in={"train": "train on the first N rows only", "eval": "evaluate on the first N rows only",
                 "export": "without RUN_DIR: export the first N rows only",
                 "run": "use the first N training rows only"}))
    out_of_range_labels: Literal["error", "keep"] = Field("error", description=(
        "Multiple choice: a label letter past the last option (D with three options) is an error, or, "
        "with 'keep', a certainly-wrong label that the run relabels."), json_schema_extra=flag("denoise", help=(
            "a label letter past the last option: stop with an error, or keep it to be relabeled")))


class DenoiseConfig(StrictModel):
    """The RobustFT method's settings; defaults are the paper's."""

    reflection_rounds: int = Field(0, ge=0, description=(
        "Extra self-reflection calls after the reasoning expert's first answer. 0 = the paper's "
        "single call that asks for step-by-step reasoning and reflection together."),
        json_schema_extra=flag("denoise", metavar="N", help="extra self-reflection calls"))
    checker: Literal["paper", "majority", "judge", "trust"] = Field("paper", description=(
        "paper: clean when base and reasoning answers both equal the label; majority: clean when at "
        "least half of the expert answers equal it; judge: an LLM decides from both answers; trust "
        "(open-ended data only): clean when the given response's trust score reaches trust_threshold."),
        json_schema_extra=flag("denoise", help="noise detection rule"))
    review: Literal["on_disagreement", "always"] = Field("on_disagreement", description=(
        "on_disagreement: the reviewer is asked only when the reasoning and context answers differ "
        "(when they agree, that answer is the label, with no call); always: ask it for every relabel, "
        "as the paper's code does."), json_schema_extra=flag("denoise", help=(
            "when the reviewer is asked: only when reasoning and context answers differ, or always (the paper's "
            "code)")))
    open_similarity: float = Field(0.65, ge=-1.0, le=1.0, description=(
        "Open-ended responses (data.task: open): two responses agree (checker, reviewer) when the cosine "
        "similarity of their embeddings (embedding_model) is at least this. The default was measured with "
        "all-MiniLM-L6-v2 (README, Open-ended responses); another embedding model needs its own threshold."))
    trust: bool = Field(True, description=(
        "Open-ended data: give every given response a trust score from 0 (surely wrong) to 1, written to "
        "samples.jsonl as `trust` (README, Trust scores). It combines the experts' agreement by meaning, a "
        "self-reflection verdict (one judge call, the judge checker's own when checker is judge), that "
        "verdict's token probability, a check of the weakest claim, or of the whole response when no claim "
        "stands out (trust_claim_checks judge calls), and a recheck (trust_recheck); added in log-odds with weights "
        "fitted on the simulator. Costs 1 + trust_claim_checks + 1 calls per sample; false: none."))
    trust_threshold: float = Field(0.9, ge=0.0, le=1.0, description=(
        "checker: trust calls a given response clean when its trust score (a probability of right) is at least "
        "this. Higher keeps fewer, surer responses and relabels more. 0.9 was chosen on the simulator's five "
        "development sets, among 0.85-0.95 the one whose fine-tuning sets at 70 percent noise were as far above "
        "95 percent right as above 60 percent of rows kept, on average (README, Trust scores)."))
    trust_selection: bool = Field(True, description=(
        "Open-ended data with checker: trust: rank the relabels at selection by their own trust score (the "
        "proposed response scored like a given one: 1 - trust, lowest kept) instead of the context answer's "
        "uncertainty (denoise.score). Costs 1 + trust_claim_checks + 1 (trust_recheck) more calls per relabel; on the simulator's "
        "development sets it raised the fine-tuning set's right share at the same size (README, Trust scores)."))
    trust_max_claims: int = Field(8, ge=2, le=64, description=(
        "A response is split into at most this many claims (sentences; neighbouring sentences are joined "
        "when there are more), each compared with the experts' responses by meaning."))
    trust_claim_checks: int = Field(1, ge=0, le=4, description=(
        "Judge calls checking a response: its least supported claims the experts do not support, one by one; "
        "the budget left checks the whole response once. 0: claims are compared with the experts' responses only."))
    trust_recheck: bool = Field(True, description=(
        "Ask the judge once more whether the response is wrong, in other words and without the experts' responses "
        "(recheck_open.jinja): a third verdict, as TLM asks several self-reflections. One more call per scored "
        "response (and per relabel with trust_selection); on the simulator's development sets it raised the AUROC "
        "and the fine-tuning set's right share at every noise level (README, Trust scores)."))
    k: int = Field(3, gt=0, description="Clean examples retrieved for each noisy sample.",
                   json_schema_extra=flag("denoise", help="clean examples shown to the context relabeler"))
    retrieval: Literal["exact", "chroma"] = Field("exact", description=(
        "How the k most similar clean samples are found. exact: every noisy question against every clean "
        "one (under a minute at 100,000 rows); a resumed run, or one on Ray, shows every sample the same "
        "examples. chroma: a Chroma HNSW collection, approximate (its near-ties change between builds, so a "
        "resumed run can show a few samples other examples); for millions of clean samples."))
    context_token_budget: int | None = Field(None, gt=0, description=(
        "Longest context-relabeling prompt, in tokens (tiktoken cl100k, or an estimate offline): the least "
        "similar examples are left out until the prompt fits. None: always show k examples."))
    beta: float = Field(0.5, gt=0.0, le=1.0, description="Fraction of relabeled samples kept (lowest scores).",
                        json_schema_extra=flag("denoise", "ablate", help="fraction of relabeled samples kept"))
    score: ScoreName = Field("mean_nll", description=(
        "mean_nll: the paper's mean negative log-probability of all generated tokens; answer_nll: "
        "of the answer tokens after 'Answer:' only; entropy: the mean predictive entropy per generated "
        "token, from the top model.top_logprobs alternatives (5 unless set); or a score a package registers "
        "(entry-point group robustft.scores)."), json_schema_extra=flag(api=True))
    embedding_model: str = Field("sentence-transformers/all-MiniLM-L6-v2", description=(
        "Sentence-embedding model for retrieving similar clean samples and comparing open-ended responses: a hub "
        "name or a local directory for sentence-transformers, or the model name the embedding server serves."),
        json_schema_extra=flag("denoise", "ablate", metavar="NAME", help=(
            "embedding model: its name on that server, or a local sentence-transformers model")))
    embedding_base_url: str | list[str] | None = Field(None, description=(
        "An OpenAI-compatible /v1/embeddings endpoint (vllm serve of an embedding model, TEI, a hosted API) to "
        "embed the questions with, instead of a local sentence-transformers model."),
        json_schema_extra=flag("denoise", "ablate", metavar="URL", help=(
            "embed the questions with an OpenAI-compatible /v1/embeddings server (vllm serve of an embedding model, "
            "TEI, a hosted API) instead of a local sentence-transformers model; repeat it for replicas")))
    embedding_api_key_env: str | None = Field(None, description=(
        "Environment variable holding the embedding server's API key. Unset: the chat model's key "
        "(model.api_key_env) goes to the embedding server only when it is on the same host and port as the chat "
        "model (one vLLM or one provider serving both); any other host gets no key. Set it to give the embedding "
        "server a key of its own (naming model.api_key_env sends the chat key there on purpose)."))
    embedding_batch_size: int = Field(64, gt=0, description="Questions embedded together (per request to a server).")
    embedding_threads: int = Field(0, ge=0, description=(
        "Threads the local embedding model computes with. 0: the cores robustft may use, at most 4 (measured "
        "on 2 cores: README, The local embedding model)."))

    @field_validator("embedding_base_url", mode="before")
    @classmethod
    def _embedding_urls(cls, value: Any) -> Any:
        return _url_field(value)

    @model_validator(mode="after")
    def _trust_checker_needs_trust(self) -> "DenoiseConfig":
        if self.checker == "trust" and not self.trust:
            raise ValueError("checker: trust needs the trust score: set trust: true, or choose another checker")
        return self

    @field_validator("estimate_noise_rate")
    @classmethod
    def _noise_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError("give [low, high] with 0 <= low <= high <= 1, e.g. [0.1, 0.4]")
        return value

    concurrency: int = Field(32, gt=0, description="Model calls in flight at once.",
                             json_schema_extra=flag("denoise", "ablate", metavar="N", help="model calls in flight at once"))
    batch_api: bool = Field(False, description=(
        "Send the model calls through the OpenAI Batch API (/v1/files, /v1/batches) of model.base_url, at its batch "
        "price (model.batch_discount): one batch per step of the graph, the same outputs as online. Slower (a "
        "provider takes up to 24 h a batch), cheaper. Batch ids are kept in DIR/batches.jsonl, so a stopped run "
        "collects them instead of sending again."), json_schema_extra=flag("denoise", help=(
            "send the model calls through the OpenAI Batch API (/v1/files, /v1/batches) at its batch price: slower, "
            "cheaper, the same outputs; a stopped run collects its batches")))
    batch_poll_s: float = Field(30.0, gt=0.0, description="With batch_api: seconds between two looks at a batch's status.")
    estimate_noise_rate: tuple[float, float] = Field((0.1, 0.4), description=(
        "The dry run's estimate only: the share of samples the checker is expected to flag as noisy, low and "
        "high; the estimate gives the calls, tokens and cost at both. A pilot run measures it instead."))
    max_cost_usd: float | None = Field(None, gt=0.0, description=(
        "Stop the run before its model calls cost more than this many USD in total (priced with model.price_*; "
        "every call in this run directory counts, earlier runs included). The run stops with exit 4 and its "
        "progress kept; the same command with a higher cap continues, paying for nothing twice. A call is sent "
        "only when the cap still holds counting the expected cost of the calls in flight, so the overshoot is "
        "at most what those calls cost beyond their expectation."),
        json_schema_extra=flag("denoise", name="max_cost", metavar="USD", help=(
            "stop before the model calls cost more than USD in total (needs model.price_* in the config); exit 4 "
            "with progress kept, and a higher cap continues paying nothing twice")))
    parse_retries: int = Field(2, ge=0, description="Re-asks when a response holds no usable answer.")
    ablate: list[Ablation] = Field(default_factory=list, description="Parts of the method to switch off.",
                                   json_schema_extra=flag(api=True))
    prompts_dir: Path | None = Field(None, description=(
        "Folder of .jinja templates overriding the built-ins by name. A relative path in a config file is "
        "relative to that file."), json_schema_extra=flag("denoise", metavar="DIR", help=(
            "folder of .jinja templates overriding the built-ins")))


LRScheduler = Literal["cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"]


class TrainConfig(StrictModel):
    """Supervised fine-tuning with TRL's SFTTrainer and a PEFT LoRA adapter (`robustft train`).

    Defaults are the paper's (LoRA rank 8 on all linear layers, learning rate 1e-4, 2 epochs), with a
    cosine schedule after a linear warm-up. The prompt is the base expert's question prompt, the
    completion `Answer: X`; only the completion carries loss.
    """

    model: str | None = Field(None, description="Model to fine-tune: a local directory or a hub name.",
                              json_schema_extra=flag("train", metavar="PATH_OR_NAME", help=(
                                  "model to fine-tune: a local directory or a hub name")))
    lora_r: int = Field(8, gt=0, description="LoRA rank.", json_schema_extra=flag("train", metavar="R"))
    lora_alpha: int = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA layers' input.")
    target_modules: str | list[str] = Field("all-linear", description=(
        "Modules given LoRA weights: 'all-linear' (every linear layer but the output head) or a list of names."))
    learning_rate: float = Field(1e-4, gt=0.0, description="Peak learning rate.",
                                 json_schema_extra=flag("train", metavar="LR"))
    epochs: float = Field(2.0, gt=0.0, description="Passes over the fine-tuning set.",
                          json_schema_extra=flag("train", metavar="N", help="passes over the data"))
    max_steps: int | None = Field(None, gt=0, description="Stop after N optimizer steps (overrides epochs).",
                                  json_schema_extra=flag("train", metavar="N", help=(
                                      "stop after N optimizer steps (overrides train.epochs)")))
    lr_scheduler: LRScheduler = Field("cosine", description="Learning-rate schedule after the warm-up.")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of the steps spent warming up linearly.")
    batch_size: int = Field(8, gt=0, description="Samples per device per step.",
                            json_schema_extra=flag("train", metavar="N"))
    gradient_accumulation_steps: int = Field(2, gt=0, description="Steps summed per optimizer update.")
    max_length: int = Field(1024, gt=0, description="Tokens per sample (prompt + completion); longer ones are cut.")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory (large models on small GPUs).")
    dtype: str = Field("auto", description="'auto' (bfloat16 on a GPU that has it, else float32), 'float32', 'bfloat16', 'float16'.")
    device: Literal["auto", "cpu"] = Field("auto", description="'cpu' trains on the CPU even when a GPU is present.")
    seed: int = Field(42, description="Seed for data order and LoRA initialisation.")
    logging_steps: int = Field(10, gt=0, description="Record the loss every N steps (train_summary.json).")
    save_steps: int = Field(100, gt=0, description="Checkpoint every N steps (a stopped run resumes from the last).")
    save_total_limit: int | None = Field(2, gt=0, description="Checkpoints kept (oldest deleted).")


class EvalConfig(StrictModel):
    """Test-set accuracy (`robustft eval`): the question prompt, greedy decoding, the task's answer checker."""

    temperature: float = Field(0.0, ge=0.0, description="0 = greedy.")
    max_tokens: int = Field(64, gt=0, description="Tokens generated per answer.",
                            json_schema_extra=flag("eval", metavar="N"))
    concurrency: int = Field(32, gt=0, description="Server requests in flight at once.",
                             json_schema_extra=flag("eval", metavar="N"))
    batch_size: int = Field(16, gt=0, description="Local model: prompts generated together.",
                            json_schema_extra=flag("eval", metavar="N", help="local model: prompts per generate call"))


class RunConfig(StrictModel):
    """Where `denoise` runs its samples: in this process, or spread over a Ray cluster (docs/ray.md).

    None of these settings changes an answer: a run started on one executor resumes on the other.
    """

    executor: Literal["local", "ray"] = Field("local", description=(
        "local: every sample runs in this process. ray: batches of samples run on Ray workers (pip install "
        "-e '.[ray]' in the robustft clone); detection, the clean index, selection and the run directory stay here, so the "
        "outputs are the local runner's."), json_schema_extra=flag("denoise", help=(
            "where the samples run: this process, or a Ray cluster (pip install -e '.[ray]' in the robustft clone; "
            "docs/ray.md)")))
    ray_address: str | None = Field(None, description=(
        "The Ray cluster to run on: 'auto' (the cluster `ray start` runs on this machine), HOST:6379 (a head "
        "node's address) or ray://HOST:10001 (Ray Client). None: start a Ray instance on this machine for the "
        "run, or use the one this process is already connected to."), json_schema_extra=flag(
            "denoise", metavar="ADDR", help=(
                "with the ray executor: the cluster to join ('auto', HOST:6379 or ray://HOST:10001); unset: start Ray "
                "on this machine")))
    ray_workers: int | None = Field(None, gt=0, description=(
        "Sample workers (Ray actors; each reserves a CPU, or an equal share when more are asked for than the "
        "cluster has free). None: one per CPU the cluster has left after the model actors, at most one per "
        "denoise.concurrency call. denoise.concurrency is split between them."))
    ray_engine_providers: list[str] = Field(default_factory=lambda: ["transformers", "vllm"], description=(
        "Providers whose model runs inside the robustft process: on Ray each such model runs in its own actors "
        "(one model copy each), and the workers send their requests there. Other providers (openai) are called "
        "by every worker directly."))
    ray_model_replicas: int = Field(1, gt=0, description=(
        "Actors (model copies) per in-process model; each worker spreads its requests over them."))
    ray_gpus_per_model: float = Field(0.0, ge=0.0, description=(
        "GPUs each model actor reserves (1: a model per GPU; 0: the model runs on CPU)."))
    otel: bool | None = Field(None, description=(
        "OpenTelemetry traces (pip install -e '.[otel]' in the robustft clone): a span per run, sample, node and model call, "
        "exported over OTLP as the standard OTEL_EXPORTER_OTLP_* variables say. None: on when "
        "OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (or the application set up "
        "the OpenTelemetry SDK), unless OTEL_SDK_DISABLED=true. Never changes an answer."),
        json_schema_extra=flag("denoise", help=(
            "OpenTelemetry traces (pip install -e '.[otel]' in the robustft clone): spans per run, sample, node and "
            "model call, exported over OTLP as the OTEL_EXPORTER_OTLP_* variables say (unset: on when "
            "OTEL_EXPORTER_OTLP_ENDPOINT is set)")))
    otel_content: bool = Field(False, description=(
        "Put the messages sent and the replies (API keys redacted) in the model-call spans, and each node's "
        "answer in its span. Off: no message content in any span."), json_schema_extra=flag("denoise", help=(
            "with tracing: put the messages and replies (keys redacted) in the spans")))
    otel_sample: float = Field(1.0, gt=0.0, le=1.0, description=(
        "The fraction of samples traced: each sample's spans (its nodes and model calls) are made or not, "
        "decided by its id, so the same samples are traced in every run. The run's span, embedding batches "
        "and the pre-run check are always traced. Below 1 the CPU cost of tracing shrinks in proportion."))


ExperimentMethod = Literal["base", "noisy", "robustft"]


class ExperimentConfig(StrictModel):
    """`robustft run CONFIG`: denoise, fine-tune and evaluate, plus the paper's baselines."""

    test_data: Path | None = Field(None, description=(
        "Held-out test set (same columns as data); what robustft eval reads when given no data. A relative path in a config "
        "file is relative to that file."))
    test_limit: int | None = Field(None, gt=0, description="Evaluate on the first N test rows only.",
                                   json_schema_extra=flag("run", metavar="N"))
    methods: list[ExperimentMethod] = Field(default_factory=lambda: ["base", "noisy", "robustft"], description=(
        "base: the model as it is; noisy: SFT on the noisy labels; robustft: SFT on the denoised set."))


class RobustFTConfig(StrictModel):
    """A whole run's settings. Every field has a default, so an empty file is a valid config."""

    data: DataConfig = Field(default_factory=DataConfig, description="The input data and its fields.")
    model: ModelConfig = Field(default_factory=ModelConfig, description=(
        "The model that plays every role unless `roles` says otherwise."))
    roles: dict[Role, ModelOverride] = Field(default_factory=dict, description=(
        "Per-role model changes, e.g. roles: {reviewer: {name: gpt-4o}}. Roles: base, reasoning, context, "
        "reviewer, judge; each may set any model field, and unset fields inherit model."))
    denoise: DenoiseConfig = Field(default_factory=DenoiseConfig, description="The method's settings.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="LoRA fine-tuning (robustft train).")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Test-set accuracy (robustft eval).")
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig, description=(
        "denoise, train and eval in one command (robustft run)."))
    run: RunConfig = Field(default_factory=RunConfig, description=(
        "Where denoise runs its samples: this process, or a Ray cluster."))
    out: Path | None = Field(None, description="Output directory (the run directory of denoise).",
                             json_schema_extra=flag("denoise", "ablate", metavar="DIR", help=(
                                 "run directory: the outputs, every model response (to resume), the run's log"),
                                 help_in={"ablate": "ablation directory (one run directory per variant inside)"},
                                 api=False))

    @model_validator(mode="after")
    def _roles_resolve(self, info: ValidationInfo) -> "RobustFTConfig":
        if not (info.context or {}).get(RECORDED):
            for role in self.roles:
                self.model_for(role)  # a role override that breaks the model fails here, not mid-run
        return self

    def model_for(self, role: str) -> ModelConfig:
        """The model `role` calls: the default model with the role's override, settings resolved."""
        override = self.roles.get(role)  # type: ignore[call-overload]
        model = self.model
        if override is not None:
            changes = override.model_dump(exclude_unset=True)
            inherited = model.model_dump()
            if changes.get("provider", model.provider) != model.provider:  # a backend's options go with it
                inherited = {k: v for k, v in inherited.items() if k in ModelConfig.model_fields}
            model = ModelConfig(**{**inherited, **changes})
        if model.top_logprobs is None:
            model = model.model_copy(update={"top_logprobs": 5 if self.denoise.score == "entropy" else 0})
        return model

    def api_key_envs(self) -> list[str]:
        """The environment variables holding the API keys this configuration may send."""
        names = [self.model_for(role).api_key_env for role in ROLES] + [self.denoise.embedding_api_key_env]
        return sorted({name for name in names if name})

    def public_dict(self) -> dict[str, Any]:
        """The resolved configuration as written to summary.json: plain JSON, no secrets.

        Secrets never live in the config (only the *name* of the key's environment variable), so
        nothing needs masking; this is the one place to add it if that ever changes.
        """
        return self.model_dump(mode="json")


# A robustft config is a few kilobytes. These bounds only stop files built to exhaust the machine:
# a "billion laughs" of nested aliases, a huge file, or nesting deep enough to overflow the stack.
MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_SIZE = 2_000_000  # nodes plus characters of scalars, with every alias expanded


class _RecursiveAlias(Exception):
    pass


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """How big the document becomes once every alias is expanded (capped just past `limit`).

    Aliases share one node, so this is memoised per node: linear in the file, however deep the
    aliases nest. A node that contains itself (`&a [*a]`) raises _RecursiveAlias."""
    done: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in done:
            return done[key]
        if key in open_nodes:
            raise _RecursiveAlias
        open_nodes.add(key)
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1 + len(str(node.value))
        open_nodes.discard(key)
        done[key] = min(total, limit + 1)
        return done[key]

    return size(root)


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe subset, stricter: a key given twice in one mapping is an error (YAML 1.2 says so;
    PyYAML keeps the last silently), and only plain values are built: text, numbers, booleans,
    null, lists and mappings. `!!binary`, `!!set`, `!!omap`, `!!pairs` and `!!timestamp` are refused
    like any other tag, and a date is read as text. inf and nan are refused by the settings."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # an unhashable key: SafeLoader names it
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found the key {key!r} a second time (first on line {first.line + 1}); a key may appear "
                    "once in a mapping: remove one of them", key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


for _tag in ("binary", "set", "omap", "pairs", "timestamp"):
    _StrictLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _StrictLoader.construct_undefined)
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}


def load_yaml(path: Path) -> Any:
    """Parse a YAML file safely: plain data only, bounded in size, with errors that name the file."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes is too large for a config file (at most "
                              f"{MAX_CONFIG_BYTES:,}); is it the right file? Data goes in data.path, not in the config")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save the config as UTF-8 YAML") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror or e}); check its permissions") from None
    try:
        loader = _StrictLoader(text)
    except yaml.YAMLError as e:  # characters YAML does not allow
        raise ConfigError(f"{path}: not valid YAML: {cut(str(e), 600)}") from None
    loader.name = str(path)  # error marks name the file, not "<unicode string>"
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, MAX_CONFIG_SIZE) > MAX_CONFIG_SIZE:
            raise ConfigError(f"{path}: the YAML expands to more than {MAX_CONFIG_SIZE:,} values and characters "
                              "once its aliases (*name) are expanded; a robustft config is far smaller. Write the "
                              "settings out without nested anchors and aliases")
        return loader.construct_document(node)
    except _RecursiveAlias:
        raise ConfigError(f"{path}: an alias (*name) refers to the anchor (&name) that contains it, a structure "
                          "with no end; write the value out instead") from None
    except RecursionError:
        raise ConfigError(f"{path}: the YAML is nested too deeply; a robustft config has a few levels") from None
    except yaml.constructor.ConstructorError as e:
        if "a second time" in str(e.problem):
            raise ConfigError(f"{path}: {cut(str(e), 600)}") from None
        raise ConfigError(f"{path}: {cut(str(e), 600)}\n  fix: a robustft config holds plain values (text, numbers, "
                          "lists, mappings); remove the !!tag") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {cut(str(e), 600)}") from None
    finally:
        loader.dispose()


MAX_SHOWN_VALUE = 300


def cut(text: str, limit: int = MAX_SHOWN_VALUE) -> str:
    """A message part of at most `limit` characters."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def shorten_value(value: Any, limit: int = MAX_SHOWN_VALUE) -> str:
    """repr of a value for a message, at most `limit` characters, without walking all of a huge one."""
    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 3, 8, 8, 8, 8
    r.maxstring = r.maxother = limit
    return cut(r.repr(value), limit)


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        loc = cut(".".join(str(p) for p in e["loc"]) or "(top level)", 200)
        if e["type"] == "extra_forbidden" and loc in RENAMED:
            lines.append(f"  field '{loc}': renamed: {RENAMED[loc]}")
        elif e["type"] == "extra_forbidden":
            lines.append(f"  field '{loc}': unknown field; check its spelling against examples/*.yaml")
        else:
            lines.append(f"  field '{loc}': {cut(e['msg'])} (got {shorten_value(e.get('input'))})")
    return "\n".join(lines)


# settings renamed since an earlier version: the message says the new name (and what changed)
RENAMED = {"data.numeric_rel_tol": "write data.numeric_tolerance instead (it now applies only to numbers that are "
                                   "not whole: whole numbers always compare exactly)"}


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            return  # leave the bad section to validation, which names it
        node = child
    node[leaf] = value


# The settings that name files or folders, and how a relative one in a config file is read: beside
# the file unless it exists from the current directory ("beside"); the same, unless it is found
# nowhere and reads as a Hugging Face Hub name ("data"); beside the file only when it is there,
# since it may name a hub model instead ("if_there"). `out` stays relative to the current directory.
PATH_SETTINGS: dict[tuple[str, str], str] = {
    ("data", "path"): "data", ("denoise", "prompts_dir"): "beside", ("experiment", "test_data"): "beside",
    ("train", "model"): "if_there", ("model", "adapter"): "beside",
}


def _resolve_relative_paths(raw: dict[str, Any], config_file: Path) -> None:
    """Make the relative paths of a config file's settings (`PATH_SETTINGS`) relative to the file,
    so that a config travels with its data and every command reads the same files."""
    from .formats import looks_like_hub_name

    for (section, name), rule in PATH_SETTINGS.items():
        part = raw.get(section)
        if not isinstance(part, dict) or not isinstance(part.get(name), str):
            continue
        value = Path(part[name])
        if value.is_absolute() or value.exists():
            continue
        beside = config_file.parent / value
        if rule == "if_there" and not beside.exists():
            continue
        if rule == "data" and not beside.exists() and looks_like_hub_name(part[name]):
            continue
        part[name] = str(beside)


def resolve_config_paths(config: RobustFTConfig, config_file: str | Path | None) -> RobustFTConfig:
    """`config` with its relative paths read as `load_config(config_file)` reads them; for a
    configuration built in code that belongs with a file (`load_config` has done it already)."""
    if config_file is None:
        return config
    raw = config.model_dump(mode="json")
    _resolve_relative_paths(raw, Path(config_file))
    return RobustFTConfig.model_validate(raw)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RobustFTConfig:
    """Read YAML (if given), apply dotted-key overrides from flags (None values are skipped).

    Relative paths in the file are relative to the file (`PATH_SETTINGS`); those given as
    overrides, like flags, are relative to the current directory."""
    raw: dict[str, Any] = {}
    source = "flags"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found; give an existing YAML file")
        loaded = load_yaml(path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping (key: value), not {type(loaded).__name__}")
        raw = loaded
        _resolve_relative_paths(raw, path)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, dotted, value)
            source = f"{path} (with flags)" if path else "flags"
    try:
        config = RobustFTConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None
    return config


def recorded_config(raw: Any) -> RobustFTConfig:
    """The configuration a finished run recorded (summary.json's "config"), typed.

    Written by this version or another, it always reads: settings this version does not know are
    left out, settings added since take their defaults, a provider whose plugin is not installed
    here is kept as recorded, and a value that no longer validates takes its default.
    """
    tree = _known_settings(RobustFTConfig, raw)
    for _ in range(100):
        try:
            return RobustFTConfig.model_validate(tree, context={RECORDED: True})
        except ValidationError as e:
            if not any(_drop_setting(tree, err["loc"]) for err in e.errors()):
                break
    return RobustFTConfig()


def _section_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The settings model a field holds, and whether it holds a mapping of them (like `roles`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if get_origin(annotation) is dict:
        value = get_args(annotation)[1]
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value, True
    return None, False


def _known_settings(model: type[BaseModel], raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return {}
    known: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if name not in raw:
            continue
        section, mapping = _section_model(field.annotation)
        if section is None:
            known[name] = raw[name]
        elif mapping:
            known[name] = {k: _known_settings(section, v) for k, v in (raw[name] or {}).items()} \
                if isinstance(raw[name], dict) else {}
        else:
            known[name] = _known_settings(section, raw[name])
    if model.model_config.get("extra") == "allow":  # a model's backend options, kept as recorded
        known.update({k: v for k, v in raw.items() if k not in model.model_fields})
    return known


def _drop_setting(tree: dict[str, Any], loc: tuple) -> bool:
    """Remove the deepest setting on the path `loc` that `tree` holds; False when there is none."""
    node, parent, key = tree, None, None
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            break
        parent, key, node = node, part, node[part]
    if parent is None:
        return False
    del parent[key]
    return True

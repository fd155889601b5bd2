"""Configuration: pydantic models (unknown keys are errors), loaded from YAML, overridden by flags.

One `RobustFTConfig` describes a whole run. Every field has a documented default, so an empty
file is a valid config; `examples/*.yaml` show the common set-ups.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

Role = Literal["base", "reasoning", "context", "reviewer", "judge"]
ROLES: tuple[str, ...] = ("base", "reasoning", "context", "reviewer", "judge")
Provider = Literal["openai", "transformers", "vllm", "fake"]
TaskType = Literal["auto", "multiple_choice", "text", "numeric"]
Ablation = Literal["reasoning", "checker", "context", "reviewer", "selection"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(StrictModel):
    """One chat model. `provider` picks the backend in `robustft.backends.models`."""

    provider: Provider = "openai"
    name: str | None = Field(None, description="Model name on the server, or a local path / hub name.")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key.")
    temperature: float = Field(1.0, ge=0.0)
    max_tokens: int = Field(512, gt=0)
    logprobs: bool = True
    timeout_s: float = Field(120.0, gt=0, description="Per request.")
    max_retries: int = Field(3, ge=0, description="Retries of a failed request, with backoff.")
    seed: int | None = None
    device: str = Field("auto", description="transformers/vllm: 'cpu', 'cuda', 'auto'.")
    dtype: str = Field("auto", description="transformers/vllm: 'auto', 'float32', 'bfloat16', ...")
    batch_size: int = Field(32, gt=0, description=(
        "transformers/vllm: concurrent requests generated together, at most (transformers splits a "
        "batch that runs out of GPU memory)."))
    script: list[str] | None = Field(None, description="fake: responses returned in turn (tests).")
    adapter: str | None = Field(None, description=(
        "transformers: a PEFT LoRA adapter directory (what `robustft train` writes) applied on top of the model."))


class ModelOverride(StrictModel):
    """A role's changes to the default model; unset fields inherit."""

    provider: Provider | None = None
    name: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    temperature: float | None = Field(None, ge=0.0)
    max_tokens: int | None = Field(None, gt=0)
    logprobs: bool | None = None
    timeout_s: float | None = Field(None, gt=0)
    max_retries: int | None = Field(None, ge=0)
    seed: int | None = None
    device: str | None = None
    dtype: str | None = None
    batch_size: int | None = Field(None, gt=0)
    script: list[str] | None = None
    adapter: str | None = None


class DataConfig(StrictModel):
    """Where the samples come from and which columns hold what."""

    path: Path | None = None
    id_column: str = "id"
    question_column: str = "question"
    answer_column: str = "answer"
    options_column: str = "options"
    task: TaskType = Field("auto", description="Inferred from the data when 'auto'.")
    numeric_rel_tol: float = Field(1e-2, ge=0.0, description="Numeric answers match within this relative tolerance.")
    instruction: str = Field("", description="Extra task instruction appended to every answer request.")
    limit: int | None = Field(None, gt=0, description="Take only the first N rows.")
    out_of_range_labels: Literal["error", "keep"] = Field("error", description=(
        "Multiple choice: a label letter past the last option (D with three options) is an error, or, "
        "with 'keep', a certainly-wrong label that the run relabels."))


class DenoiseConfig(StrictModel):
    """The RobustFT method's settings; defaults are the paper's."""

    reflection_rounds: int = Field(0, ge=0, description=(
        "Extra self-reflection calls after the reasoning expert's first answer. 0 = the paper's "
        "single call that asks for step-by-step reasoning and reflection together."))
    checker: Literal["paper", "majority", "judge"] = Field("paper", description=(
        "paper: clean when base and reasoning answers both equal the label; majority: clean when at "
        "least half of the expert answers equal it; judge: an LLM decides from both answers."))
    review: Literal["on_disagreement", "always"] = Field("on_disagreement", description=(
        "on_disagreement: the reviewer is asked only when the reasoning and context answers differ "
        "(when they agree, that answer is the label, with no call); always: ask it for every relabel, "
        "as the paper's code does."))
    k: int = Field(3, gt=0, description="Clean examples retrieved for each noisy sample.")
    context_token_budget: int | None = Field(None, gt=0, description=(
        "Longest context-relabeling prompt, in tokens (tiktoken cl100k, or an estimate offline): the least "
        "similar examples are left out until the prompt fits. None: always show k examples."))
    beta: float = Field(0.5, gt=0.0, le=1.0, description="Fraction of relabeled samples kept (lowest scores).")
    score: Literal["mean_nll", "answer_nll"] = Field("mean_nll", description=(
        "mean_nll: the paper's mean negative log-probability of all generated tokens; answer_nll: "
        "of the answer tokens after 'Answer:' only."))
    embedding_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    embedding_batch_size: int = Field(64, gt=0)
    concurrency: int = Field(32, gt=0, description="Model calls in flight at once.")
    parse_retries: int = Field(2, ge=0, description="Re-asks when a response holds no usable answer.")
    ablate: list[Ablation] = Field(default_factory=list, description="Parts of the method to switch off.")
    prompts_dir: Path | None = Field(None, description="Folder of .jinja templates overriding the built-ins by name.")


LRScheduler = Literal["cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"]


class TrainConfig(StrictModel):
    """Supervised fine-tuning with TRL's SFTTrainer and a PEFT LoRA adapter (`robustft train`).

    Defaults are the paper's (LoRA rank 8 on all linear layers, learning rate 1e-4, 2 epochs), with a
    cosine schedule after a linear warm-up. The prompt is the base expert's question prompt, the
    completion `Answer: X`; only the completion carries loss.
    """

    model: str | None = Field(None, description="Model to fine-tune: a local directory or a hub name (--model).")
    lora_r: int = Field(8, gt=0, description="LoRA rank.")
    lora_alpha: int = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: str | list[str] = Field("all-linear", description=(
        "Modules given LoRA weights: 'all-linear' (every linear layer but the output head) or a list of names."))
    learning_rate: float = Field(1e-4, gt=0.0)
    epochs: float = Field(2.0, gt=0.0, description="Passes over the fine-tuning set.")
    max_steps: int | None = Field(None, gt=0, description="Stop after N optimizer steps (overrides epochs).")
    lr_scheduler: LRScheduler = "cosine"
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of the steps spent warming up linearly.")
    batch_size: int = Field(8, gt=0, description="Samples per device per step.")
    gradient_accumulation_steps: int = Field(2, gt=0, description="Steps summed per optimizer update.")
    max_length: int = Field(1024, gt=0, description="Tokens per sample (prompt + completion); longer ones are cut.")
    weight_decay: float = Field(0.0, ge=0.0)
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory (large models on small GPUs).")
    dtype: str = Field("auto", description="'auto' (bfloat16 on a GPU that has it, else float32), 'float32', 'bfloat16', 'float16'.")
    device: Literal["auto", "cpu"] = Field("auto", description="'cpu' trains on the CPU even when a GPU is present.")
    seed: int = 42
    logging_steps: int = Field(10, gt=0)
    save_steps: int = Field(100, gt=0, description="Checkpoint every N steps (a stopped run resumes from the last).")
    save_total_limit: int | None = Field(2, gt=0, description="Checkpoints kept (oldest deleted).")


class EvalConfig(StrictModel):
    """Test-set accuracy (`robustft eval`): the question prompt, greedy decoding, the task's answer checker."""

    temperature: float = Field(0.0, ge=0.0, description="0 = greedy.")
    max_tokens: int = Field(64, gt=0, description="Tokens generated per answer.")
    concurrency: int = Field(32, gt=0, description="Server requests in flight at once.")
    batch_size: int = Field(16, gt=0, description="Local model: prompts generated together.")


ExperimentMethod = Literal["base", "noisy", "robustft"]


class ExperimentConfig(StrictModel):
    """`robustft run CONFIG`: denoise, fine-tune and evaluate, plus the paper's baselines."""

    test_data: Path | None = Field(None, description="Held-out test set (same columns as data).")
    test_limit: int | None = Field(None, gt=0, description="Evaluate on the first N test rows only.")
    methods: list[ExperimentMethod] = Field(default_factory=lambda: ["base", "noisy", "robustft"], description=(
        "base: the model as it is; noisy: SFT on the noisy labels; robustft: SFT on the denoised set."))


class RobustFTConfig(StrictModel):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    roles: dict[Role, ModelOverride] = Field(default_factory=dict, description=(
        "Per-role model changes, e.g. roles: {reviewer: {name: gpt-4o}}."))
    denoise: DenoiseConfig = Field(default_factory=DenoiseConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    out: Path | None = None

    @model_validator(mode="after")
    def _roles_resolve(self) -> "RobustFTConfig":
        for role in self.roles:
            self.model_for(role)  # a role override that breaks the model fails here, not mid-run
        return self

    def model_for(self, role: str) -> ModelConfig:
        override = self.roles.get(role)  # type: ignore[call-overload]
        if override is None:
            return self.model
        merged = {**self.model.model_dump(), **override.model_dump(exclude_unset=True)}
        return ModelConfig(**merged)

    def public_dict(self) -> dict[str, Any]:
        """The resolved configuration as written to summary.json: plain JSON, no secrets.

        Secrets never live in the config (only the *name* of the key's environment variable), so
        nothing needs masking; this is the one place to add it if that ever changes.
        """
        return self.model_dump(mode="json")


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"  field '{loc}': unknown field; check its spelling against examples/*.yaml")
        else:
            lines.append(f"  field '{loc}': {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[leaf] = value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RobustFTConfig:
    """Read YAML (if given), apply dotted-key overrides from flags (None values are skipped)."""
    raw: dict[str, Any] = {}
    source = "flags"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found; pass an existing YAML file to --config")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text; save the config as UTF-8 YAML") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping (key: value), not {type(loaded).__name__}")
        raw = loaded
        # Relative paths in a config file are relative to the file, so configs travel with their data.
        for key in ("data", "denoise"):
            section = raw.get(key)
            field = "path" if key == "data" else "prompts_dir"
            if isinstance(section, dict) and isinstance(section.get(field), str):
                p = Path(section[field])
                if not p.is_absolute() and not p.exists():
                    section[field] = str(path.parent / p)
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(raw, dotted, value)
            source = f"{path} (with flags)" if path else "flags"
    try:
        return RobustFTConfig(**raw)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None

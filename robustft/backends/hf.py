"""Hugging Face transformers models, loaded one way for the local backend and for `robustft train`,
and the one prompt a chat becomes for a model.

    load_model(name, dtype=..., device_map=..., setting="model.name") -> (tokenizer, model)
    prompt_ids(tokenizer, messages) -> token ids (the chat template, else `plain_transcript`)

`setting` is the setting the value comes from (`model.name`, or `train.model` for `robustft train`): every error names it and says how to fix it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..hub import CONNECT_TIMEOUT_S, hub_offline, hub_reachable, model_in_cache
from .base import Messages


def plain_transcript(messages: Messages) -> str:
    """The prompt for a model without a chat template: `role: content` lines, then `assistant:`."""
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


def prompt_ids(tokenizer: Any, messages: Messages) -> list[int]:
    """The token ids a model is sent for `messages`: its chat template with the generation prompt
    when it has one (adding no special tokens on top, as vLLM does), else the plain transcript."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(plain_transcript(messages))["input_ids"]


def resolve_device(device: str, setting: str = "model.device") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{setting} is {device!r} but no CUDA GPU is available; set it to auto or cpu")
    return device


def resolve_dtype(dtype: str, setting: str = "model.dtype") -> Any:
    """A torch dtype, or "auto" (the checkpoint's own)."""
    import torch

    if dtype == "auto":
        return "auto"
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ConfigError(f"{setting}: unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return value


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or Path(name).is_absolute() or name.count("/") > 1


def model_source(name: str, setting: str = "model.name") -> str:
    """The absolute directory for a local model, else the hub name; ConfigError for a missing path."""
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ConfigError(f"{setting} {name!r}: {local} holds no config.json, so it is not a "
                              "transformers model directory; pass the directory that save_pretrained wrote")
        return str(local.resolve())
    if _looks_like_path(name):
        raise ConfigError(f"{setting} {name!r}: the path does not exist; pass an existing model "
                          "directory (or a Hugging Face hub name such as Qwen/Qwen2.5-0.5B-Instruct)")
    return name


_SERVED = ("a model behind an OpenAI-compatible server (vLLM, OpenAI, any provider) needs model.base_url "
           "set to the server's URL; a local model is the path of a downloaded model directory or a hub name such as "
           "Qwen/Qwen2.5-0.5B-Instruct (check the name and the network; HF_HUB_OFFLINE=1 forbids the hub)")


def load_model(name: str, *, dtype: Any = "auto", device_map: str | None = None,
               setting: str = "model.name") -> tuple[Any, Any]:
    """The tokenizer and causal LM `name` names (a directory or a hub name), in eval mode.

    With `device_map` the weights go straight onto that device, so a large model never needs a
    second copy in CPU memory. Any failure to load is a ConfigError that names `setting`.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = model_source(name, setting)
    if not Path(source).is_dir() and not hub_offline() and not model_in_cache(source) and not hub_reachable():
        # fail now: transformers would retry the unreachable hub for half a minute first
        raise ConfigError(f"{setting} {name!r}: no such local directory, not in the local Hugging Face cache, and "
                          f"the hub is unreachable (no connection within {CONNECT_TIMEOUT_S:g} s)\n  fix: {_SERVED}")
    kwargs: dict[str, Any] = {"dtype": dtype}
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        AutoConfig.from_pretrained(source)  # one cheap request first: an unreachable hub fails here
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except Exception as e:  # noqa: BLE001 - any load failure is a configuration problem
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if not Path(source).is_dir():
            raise ConfigError(
                f"{setting} {name!r}: no such local directory, and it cannot be loaded from the Hugging "
                f"Face hub (the hub is unreachable, or has no such model): {reason}\n"
                f"  fix: {_SERVED}") from None
        raise ConfigError(f"{setting} {name!r}: cannot load {source} as a transformers causal LM: {reason}\n"
                          "  fix: pass a directory written by save_pretrained (config.json, weights, "
                          "tokenizer files)") from None
    model.eval()
    return tokenizer, model


def apply_adapter(model: Any, path: str, given: str, setting: str = "model.adapter") -> Any:
    """The model with the PEFT LoRA adapter at `path` merged into its weights (as fast as the base)."""
    from peft import PeftModel

    if not (Path(path) / "adapter_config.json").is_file():
        raise ConfigError(f"{setting} {given!r}: no adapter_config.json there, so it is not a PEFT adapter; "
                          "pass the output directory of a finished `robustft train` run")
    try:
        model = PeftModel.from_pretrained(model, path).merge_and_unload()
    except Exception as e:  # noqa: BLE001 - a mismatched adapter is a configuration problem
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"{setting} {given!r}: cannot apply it to this model: {reason}\n"
                          "  fix: pass an adapter trained on this same base model") from None
    model.eval()
    return model

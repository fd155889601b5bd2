"""Test support (not shipped in the wheel): a tiny local chat model built offline in a second.
Tests import it as `tiny_model` (the `tiny_model_dir` fixture builds one per session), benchmarks
as `tests.tiny_model` (they run from the repository root: `python -m benchmarks.NAME`).

`build_tiny_model(path)` writes a randomly initialised two-layer Llama with a byte-level BPE
tokenizer (trained on the spot) and a chat template, in the standard `save_pretrained` layout, so
`AutoModelForCausalLM.from_pretrained(path)`, `AutoTokenizer.from_pretrained(path)` and the
`transformers` backend (`ModelConfig(provider="transformers", name=str(path))`) load it like any
downloaded model. Its answers are noise; it exists to exercise the real code paths (templating,
batching, logprobs, LoRA training) without the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

DEFAULT_CORPUS: tuple[str, ...] = (
    "Question: Which option is correct? Answer with the letter of the best option.",
    "Let's think step by step. First, read the question. Then check each option.",
    "The reasoning is sound, so the final answer stands.",
    "Reflect on the answer: is any step wrong? If so, correct it.",
    "Here are similar questions with their answers. Use them as examples.",
    "Answer: A", "Answer: B", "Answer: C", "Answer: D", "Answer: E",
    "A. B. C. D. E.", "A B C D E",
    "0 1 2 3 4 5 6 7 8 9 10 12 42 100 3.14 -7",
    "What is 2 + 3? Answer: 5",
    "The capital of France is Paris. Water boils at 100 degrees.",
)

TINY_ARCH = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=2048)
_VOCAB_SIZE = 512
_MARKER = "robustft_tiny_model.json"


def build_tiny_model(path: str | Path, *, vocab_texts: list[str] | None = None, seed: int = 0) -> Path:
    """Build (or reuse) a tiny random Llama chat model in `path`; return `path`.

    `vocab_texts` are added to the built-in corpus the tokenizer is trained on (so the tokenizer
    always covers "Answer:", letters A-E and digits). The same `seed` and texts give the same files.
    When `path` already holds a model built with the same arguments it is returned as it is; one
    built with other arguments is rebuilt. A non-empty directory that this function did not write
    is never touched (ValueError). The build is atomic: it goes to a temporary directory beside
    `path` that is renamed into place, so concurrent builders never see half a model.
    """
    path = Path(path)
    spec = {"version": 1, "seed": seed, "vocab_texts": list(vocab_texts or []), **TINY_ARCH}
    marker = path / _MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text(encoding="utf-8")) == spec:
                return path
        except (OSError, ValueError):
            pass
    elif path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ValueError(f"{path}: exists and does not hold a tiny model built by tests/tiny_model.py; "
                         "pass an empty or new directory")

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        _write_tiny_model(tmp, list(DEFAULT_CORPUS) + list(vocab_texts or []), seed)
        (tmp / _MARKER).write_text(json.dumps(spec, indent=2), encoding="utf-8")
        if path.exists():
            shutil.rmtree(path)
        try:
            os.replace(tmp, path)
        except OSError:
            if not (path / _MARKER).is_file():  # not another builder that won the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _train_tokenizer(corpus: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [PAD, BOS, EOS, *ROLE_TOKENS]
    trainer = trainers.BpeTrainer(vocab_size=_VOCAB_SIZE, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   additional_special_tokens=list(ROLE_TOKENS), chat_template=CHAT_TEMPLATE,
                                   model_max_length=TINY_ARCH["max_position_embeddings"])


def _write_tiny_model(out: Path, corpus: list[str], seed: int) -> None:
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        _save_tiny_model(out, corpus, seed)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _save_tiny_model(out: Path, corpus: list[str], seed: int) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = _train_tokenizer(corpus)
    tokenizer.save_pretrained(out)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         tie_word_embeddings=False, **TINY_ARCH)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out)


def fingerprint(path: str | Path) -> str:
    """A short hash of the files of a model directory (to check that builds are reproducible)."""
    digest = hashlib.sha256()
    for file in sorted(Path(path).rglob("*")):
        if file.is_file():
            digest.update(file.relative_to(path).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]

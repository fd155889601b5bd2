"""Prompt templates: one Jinja file per prompt, loaded by name, rendered with StrictUndefined.

`PromptLibrary(user_dir)` layers a user's folder over the built-in templates. Values are inserted
as plain text, so dataset content is never interpreted as template syntax.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from ..errors import ConfigError

BUILTIN_DIR = Path(__file__).parent
TASK_PHRASES = {"multiple_choice": "multiple-choice", "text": "short-answer", "numeric": "numerical"}


def prompt_values(question: str, options: list[str] | None, task: str, instruction: str = "") -> dict[str, Any]:
    """The values every prompt receives (see README.md beside this file)."""
    from ..answers import format_options

    if task == "multiple_choice" and options:
        letters = [chr(65 + i) for i in range(len(options))]
        hint = f"only the letter of the correct option ({', '.join(letters[:-1])} or {letters[-1]})"
    elif task == "numeric":
        hint = "only the final number"
    else:
        hint = "only the short final answer"
    return {"question": question, "options_block": format_options(options) if options else "",
            "task_phrase": TASK_PHRASES.get(task, task), "answer_hint": hint, "instruction": instruction}
PROMPT_NAMES = ("base", "reasoning", "reflection", "context", "reviewer", "judge")


class PromptLibrary:
    def __init__(self, user_dir: str | Path | None = None):
        search = [str(BUILTIN_DIR)]
        if user_dir is not None:
            user_dir = Path(user_dir)
            if not user_dir.is_dir():
                raise ConfigError(f"denoise.prompts_dir: {user_dir} is not a folder; "
                                  "point it at a folder of .jinja files named after the prompts they replace")
            unknown = sorted(p.name for p in user_dir.glob("*.jinja") if p.stem not in PROMPT_NAMES)
            if unknown:
                raise ConfigError(f"denoise.prompts_dir: {user_dir} has {', '.join(unknown)}, which replace no "
                                  f"prompt; name each file after one of: {', '.join(n + '.jinja' for n in PROMPT_NAMES)}")
            search.insert(0, str(user_dir))
        self.user_dir = user_dir
        self._env = jinja2.Environment(loader=jinja2.FileSystemLoader(search), undefined=jinja2.StrictUndefined,
                                       autoescape=False, keep_trailing_newline=False)
        self._templates: dict[str, jinja2.Template] = {}
        for name in PROMPT_NAMES:
            try:
                self._templates[name] = self._env.get_template(f"{name}.jinja")
            except jinja2.TemplateSyntaxError as e:
                raise ConfigError(f"{e.filename}: line {e.lineno}: template syntax error: {e.message}") from None

    def source_of(self, name: str) -> str:
        """Where a prompt comes from: the built-in file or the user's."""
        return self._templates[name].filename or name

    def question_prompt(self, question: str, options: list[str] | None, task: str, instruction: str = "") -> str:
        """The base expert's prompt for a question: also the prompt that training and evaluation use,
        so a fine-tuned model is asked exactly what it was trained on."""
        return self.render("base", **prompt_values(question, options, task, instruction))

    def render(self, name: str, **values: Any) -> str:
        try:
            template = self._templates[name]
        except KeyError:
            raise ConfigError(f"unknown prompt {name!r}; known prompts: {', '.join(PROMPT_NAMES)}") from None
        try:
            return template.render(**values).strip() + "\n"
        except jinja2.UndefinedError as e:
            raise ConfigError(f"{self.source_of(name)}: {e.message}; the values a prompt receives are listed "
                              "in robustft/prompts/README.md") from None

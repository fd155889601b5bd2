"""Prompt templates: one Jinja file per prompt, loaded by name, rendered with StrictUndefined.

`PromptLibrary(user_dir)` layers a user's folder over the built-in templates. Values are inserted
as plain text, so dataset content is never interpreted as template syntax.

Open-ended responses (task `open`) have templates of their own, `<name>_open.jinja`: the values
say the task, and `render("base", task="open", ...)` renders `base_open.jinja`.

Templates may come from a prompts folder someone else wrote, so they are treated as untrusted:
they render in Jinja's immutable sandbox (no Python internals, no mutation of values), reach no
file outside the prompt folders, and cannot produce an unbounded prompt. A template that reaches
for Python internals is refused when it is loaded, naming its file and line.
"""

from __future__ import annotations

import contextvars
import os
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import ConfigError

BUILTIN_DIR = Path(__file__).parent
PROMPT_NAMES = ("base", "reasoning", "reflection", "context", "reviewer", "judge", "claim", "recheck")
# Tasks whose prompts are files of their own: `<name>_<task>.jinja`.
OWN_TEMPLATES = ("open",)
TEMPLATE_NAMES = PROMPT_NAMES + tuple(f"{name}_{task}" for task in OWN_TEMPLATES for name in PROMPT_NAMES)
VALUES_DOC = "robustft/prompts/README.md"
# Far beyond any context window (about 2.5 million tokens): only a runaway template gets here.
MAX_PROMPT_CHARS = 10_000_000
MAX_REPEAT = 1_000_000   # `'x' * n` and friends
MAX_INT_BITS = 4096      # no prompt needs a number larger than this; `(10**100)**100**...` would eat memory
MAX_LOOP_STEPS = 5_000_000  # steps of all `{% for %}` loops of one render (10^10 nested steps never end)
RENDER_TIME_LIMIT_S = 10.0  # one render, and each render of the pre-run check
LOOP_BUDGET = "robustft_loop_budget"  # the global every `{% for %}` iterable goes through (`_Sandbox._parse`)

# [steps so far, deadline] of the render going on in this thread (None: no render)
_render_budget: contextvars.ContextVar[list | None] = contextvars.ContextVar("robustft_render_budget", default=None)


def _spend(steps: int) -> None:
    budget = _render_budget.get()
    if budget is None:
        return
    budget[0] += steps
    if budget[0] > MAX_LOOP_STEPS:
        raise jinja2.sandbox.SecurityError(f"the template's loops run more than {MAX_LOOP_STEPS:,} steps")
    if time.monotonic() > budget[1]:
        raise jinja2.sandbox.SecurityError(f"rendering took longer than {RENDER_TIME_LIMIT_S:g} s")


def _loop_budget(iterable: Any) -> Any:
    """`iterable`, counted against the render's budget of steps and time as the loop runs."""
    n = 0
    for item in iterable:
        n += 1
        if n == 1024:
            _spend(n)
            n = 0
        yield item
    _spend(n)


def _too_long(size: int) -> None:
    if size > MAX_PROMPT_CHARS:
        raise jinja2.sandbox.SecurityError(f"that would make a text of {size:,} characters (a prompt has at most "
                                           f"{MAX_PROMPT_CHARS:,})")


_PERCENT_WIDTH = re.compile(r"%[-+ #0]*(\d*)(?:\.(\d*))?")
_BRACE_WIDTH = re.compile(r"\{[^{}]*?:[^{}\d]*(\d*)(?:[,_]?)(?:\.(\d+))?[^{}]*\}")


def _check_format(fmt: Any) -> None:
    """A printf or str.format pattern whose width or precision alone passes the size limit."""
    if not isinstance(fmt, str):
        return
    for pattern in (_PERCENT_WIDTH, _BRACE_WIDTH):
        for m in pattern.finditer(fmt):
            for number in m.groups():
                if number and len(number) > 7:
                    _too_long(int(number[:12]))


def _text_size(value: Any) -> int:
    return len(value) if isinstance(value, str) else len(str(value))


def _bounded_call(func: Any, args: tuple, kwargs: dict) -> None:
    """Refuse a str method whose result alone passes the size limit, before it is built."""
    func = getattr(func, "__wrapped__", func)  # the sandbox's own str.format wrapper
    owner = getattr(func, "__self__", None)
    name = getattr(func, "__name__", "")
    if not isinstance(owner, str):
        return
    first = args[0] if args else None
    if name in ("center", "ljust", "rjust", "zfill") and isinstance(first, int):
        _too_long(first)
    elif name == "expandtabs":
        size = kwargs.get("tabsize", first if isinstance(first, int) else 8)
        _too_long(len(owner) + owner.count("\t") * max(size, 0))
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        hits = owner.count(args[0]) if args[0] else len(owner) + 1
        _too_long(len(owner) + hits * max(len(args[1]) - len(args[0]), 0))
    elif name == "join" and isinstance(first, (list, tuple)):
        _too_long(sum(_text_size(x) for x in first) + len(owner) * max(len(first) - 1, 0))
    elif name in ("format", "format_map"):
        _check_format(owner)


def template_name(name: str, task: str | None) -> str:
    """The template file (without .jinja) that prompt `name` uses for `task`."""
    return f"{name}_{task}" if task in OWN_TEMPLATES else name


def templates_for(task: str | None) -> tuple[str, ...]:
    """The template names a task's prompts come from, in PROMPT_NAMES order."""
    return tuple(template_name(name, task) for name in PROMPT_NAMES)


def prompt_values(question: str, options: list[str] | None, task: str, instruction: str = "") -> dict[str, Any]:
    """The values every prompt receives (see README.md beside this file)."""
    # Every node of a sample asks for the same values: made once per sample, copied per prompt.
    return dict(_prompt_values(question, tuple(options) if options else None, task, instruction))


@lru_cache(maxsize=4096)
def _prompt_values(question: str, options: tuple[str, ...] | None, task: str, instruction: str) -> dict[str, Any]:
    from ..answers import format_options
    from ..tasks import Task, find_task

    kind = find_task(task)  # the task type says how it is named and what the answer line holds
    hint = kind.answer_hint(options) if kind is not None else Task.hint
    return {"question": question, "options_block": format_options(list(options)) if options else "",
            "task_phrase": kind.phrase if kind is not None else task, "answer_hint": hint, "instruction": instruction,
            "task": task}


def shown_question(question: str, conversation: list[dict[str, str]] | None) -> str:
    """A sample's question as text for another sample's prompt (a retrieved example): a conversation
    with earlier turns is written out turn by turn (`render_conversation`), else the question."""
    if conversation and len(conversation) > 1:
        from ..data.shapes import render_conversation

        return render_conversation(conversation)
    return question


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus bounds on what can exhaust memory or time: arithmetic, every
    filter and str method that can build a long text at once (checked before it is built), and
    every `{% for %}` loop (steps and time counted as it runs, `_loop_budget`)."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.globals[LOOP_BUDGET] = _loop_budget
        filters = self.filters
        center, indent, join, replace, fmt = (filters[n] for n in ("center", "indent", "join", "replace", "format"))

        def bounded_center(value: Any, width: int = 80) -> str:
            if isinstance(width, int):
                _too_long(width)
            return center(value, width)

        def bounded_indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> str:
            text = str(value)
            pad = width if isinstance(width, str) else " " * min(width, MAX_PROMPT_CHARS + 1) if isinstance(width, int) else ""
            _too_long(len(text) + (text.count("\n") + 1) * len(pad))
            return indent(value, width, *args, **kwargs)

        @jinja2.pass_eval_context
        def bounded_join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
            items = list(_loop_budget(value))
            if attribute is None:
                _too_long(sum(_text_size(x) for x in items) + _text_size(d) * max(len(items) - 1, 0))
            return join(eval_ctx, items, d, attribute)

        def bounded_replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> str:
            text, old_s, new_s = str(s), str(old), str(new)
            hits = (text.count(old_s) if old_s else len(text) + 1) if count is None else min(count, len(text) + 1)
            _too_long(len(text) + hits * max(len(new_s) - len(old_s), 0))
            return replace(eval_ctx, s, old, new, count)

        def bounded_format(value: Any, *args: Any, **kwargs: Any) -> str:
            _check_format(value)
            return fmt(value, *args, **kwargs)

        filters["center"], filters["indent"], filters["join"] = bounded_center, bounded_indent, bounded_join
        filters["replace"] = jinja2.pass_eval_context(bounded_replace)
        filters["format"] = bounded_format

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """The template, each `{% for %}` iterable wrapped in `robustft_loop_budget(...)`."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.Name(LOOP_BUDGET, "load", lineno=loop.lineno), [loop.iter], [], None, None,
                                   lineno=loop.lineno)
        return tree

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 - Jinja's signature
        _bounded_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context, operator, left, right):
        ints = isinstance(left, int) and isinstance(right, int)
        if operator == "**" and ints and abs(left) > 1 and left.bit_length() * max(right, 0) > MAX_INT_BITS:
            raise jinja2.sandbox.SecurityError("the power is too large a number for a prompt template")
        if operator == "*":
            if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise jinja2.sandbox.SecurityError("the product is too large a number for a prompt template")
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_REPEAT:
                    raise jinja2.sandbox.SecurityError("repeating a value that many times makes no prompt")
        if operator == "%":
            _check_format(left)
        return super().call_binop(context, operator, left, right)


class _FolderLoader(jinja2.FileSystemLoader):
    """FileSystemLoader that refuses a file whose real path lies outside its folder: a link in a
    shared prompts folder must not send a private file (a key, a token) to the model server."""

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        real = os.path.realpath(filename)
        if not any(real.startswith(os.path.realpath(d) + os.sep) for d in self.searchpath):
            raise ConfigError(f"{filename}: links to {real}, outside the prompts folder; copy the template "
                              "into the folder instead of linking to it")
        return source, filename, uptodate


def _reaches_internals(tree: nodes.Template) -> tuple[int, str] | None:
    """The line and name of the first `_`-prefixed attribute or key the template asks for."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        name = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args \
                and isinstance(node.args[0], nodes.Const):
            name = node.args[0].value
        if isinstance(name, str) and name.startswith("_"):
            return node.lineno, name
    return None


def _internals_error(filename: str, line: int, what: str) -> ConfigError:
    return ConfigError(f"{filename}: line {line}: the template reaches for {what}, a Python internal; prompt "
                       f"templates are rendered in a sandbox and may only use the values listed in {VALUES_DOC}. "
                       "Remove it (and do not use prompt folders from people you do not trust)")


class PromptLibrary:
    def __init__(self, user_dir: str | Path | None = None):
        search = [str(BUILTIN_DIR)]
        if user_dir is not None:
            user_dir = Path(user_dir)
            if not user_dir.is_dir():
                raise ConfigError(f"denoise.prompts_dir: {user_dir} is not a folder; "
                                  "point it at a folder of .jinja files named after the prompts they replace")
            unknown = sorted(p.name for p in user_dir.glob("*.jinja") if p.stem not in TEMPLATE_NAMES)
            if unknown:
                raise ConfigError(f"denoise.prompts_dir: {user_dir} has {', '.join(unknown)}, which replace no "
                                  f"prompt; name each file after one of: {', '.join(n + '.jinja' for n in TEMPLATE_NAMES)}")
            search.insert(0, str(user_dir))
        self.user_dir = user_dir
        self._env = _Sandbox(loader=_FolderLoader(search), undefined=jinja2.StrictUndefined,
                             autoescape=False, keep_trailing_newline=False)
        self._templates: dict[str, jinja2.Template] = {}
        self._trees: dict[str, nodes.Template] = {}
        for name in TEMPLATE_NAMES:
            self._load(name)

    def _load(self, name: str) -> None:
        try:
            source, filename, _ = self._env.loader.get_source(self._env, f"{name}.jinja")
            tree = self._env.parse(source, f"{name}.jinja", filename)
            self._templates[name] = self._env.get_template(f"{name}.jinja")
        except jinja2.TemplateSyntaxError as e:
            raise ConfigError(f"{e.filename}: line {e.lineno}: template syntax error: {e.message}") from None
        except UnicodeDecodeError:
            where = next((p for p in (Path(d) / f"{name}.jinja" for d in self._env.loader.searchpath) if p.exists()),
                         f"{name}.jinja")
            raise ConfigError(f"{where}: not UTF-8 text; save the template as UTF-8") from None
        found = _reaches_internals(tree)
        if found:
            raise _internals_error(filename, found[0], repr(found[1]))
        self._trees[name] = tree

    def source_of(self, name: str, task: str | None = None) -> str:
        """Where a prompt (for `task`) comes from: the built-in file or the user's."""
        name = template_name(name, task)
        return self._templates[name].filename or name

    def tree_of(self, name: str, task: str | None = None) -> nodes.Template:
        """The parsed template (for checks that look at what it refers to)."""
        return self._trees[template_name(name, task)]

    @property
    def globals(self) -> frozenset[str]:
        """Names every template may use besides its values (Jinja's `range`, `loop` helpers, ...)."""
        return frozenset(self._env.globals)

    def question_prompt(self, question: str, options: list[str] | None, task: str, instruction: str = "") -> str:
        """The base expert's prompt for a question: also the prompt that training and evaluation use,
        so a fine-tuned model is asked exactly what it was trained on."""
        return self.render("base", **prompt_values(question, options, task, instruction))

    def render(self, name: str, **values: Any) -> str:
        """Prompt `name` with `values` (see `prompt_values`), from the template of `values["task"]`."""
        if name in PROMPT_NAMES:
            name = template_name(name, values.get("task"))
        try:
            template = self._templates[name]
        except KeyError:
            raise ConfigError(f"unknown prompt {name!r}; known prompts: {', '.join(PROMPT_NAMES)}") from None
        source = self.source_of(name)
        budget = _render_budget.set([0, time.monotonic() + RENDER_TIME_LIMIT_S])
        try:
            parts, size = [], 0
            for chunk in template.generate(**values):
                size += len(chunk)
                if size > MAX_PROMPT_CHARS:
                    raise ConfigError(f"{source}: the rendered prompt grows past {MAX_PROMPT_CHARS:,} characters; "
                                      "a template loop or repetition runs away: fix the template")
                _spend(0)
                parts.append(chunk)
            return "".join(parts).strip() + "\n"
        except jinja2.sandbox.SecurityError as e:
            raise ConfigError(f"{source}: refused by the template sandbox: {e}; prompt templates may only use "
                              f"the values listed in {VALUES_DOC}") from None
        except MemoryError:
            raise ConfigError(f"{source}: the template builds more text than memory holds; a loop or repetition "
                              "runs away: fix the template") from None
        except jinja2.UndefinedError as e:
            raise ConfigError(f"{source}: {e.message}; the values a prompt receives are listed "
                              f"in {VALUES_DOC}") from None
        except jinja2.TemplateNotFound as e:
            raise ConfigError(f"{source}: includes {e.name!r}, which is not in the prompts folder; include only "
                              "files beside it") from None
        except RecursionError:
            raise ConfigError(f"{source}: the template includes itself (directly or through another one); "
                              "remove the loop of includes") from None
        except (TypeError, ValueError, ArithmeticError, jinja2.TemplateError) as e:
            raise ConfigError(f"{source}: the template fails to render: {type(e).__name__}: {e}") from None
        finally:
            _render_budget.reset(budget)

"""One table of settings (the config's field metadata, `robustft.settings`): the command line's
flags, their help and shown defaults, and the library's keywords all come from it, and library
messages name settings, never flags."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest
from pydantic import Field

import robustft.config as config_module
from robustft import settings
from robustft.api import resolve_config
from robustft.cli import build_parser, main
from robustft.cli.common import settings_given
from robustft.cli.flags import with_flags
from robustft.config import DenoiseConfig, RobustFTConfig, flag, load_config


@pytest.fixture
def config_with_a_new_setting(monkeypatch):
    """The configuration as if one field had been added to DenoiseConfig, and nothing else."""

    class Denoise(DenoiseConfig):
        patience: int = Field(7, gt=0, description="Rounds to wait before giving up on a sample.",
                              json_schema_extra=flag("denoise", "ablate", metavar="N"))

    class Config(RobustFTConfig):
        denoise: Denoise = Field(default_factory=Denoise, description="The method's settings.")

    monkeypatch.setattr(config_module, "RobustFTConfig", Config)
    return Config


def test_a_new_field_with_flag_metadata_is_a_flag_with_help_and_default_and_a_keyword(config_with_a_new_setting,
                                                                                      tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    parser = build_parser()
    for command in ("denoise", "ablate"):
        text = " ".join(_subparser(parser, command).format_help().split())
        assert "--patience N rounds to wait before giving up on a sample (denoise.patience, default 7)" in text
    assert "--patience" not in _subparser(parser, "train").format_help()
    args = parser.parse_args(["denoise", "--patience", "3"])
    config = load_config(None, settings_given(args, "denoise"))
    assert isinstance(config, config_with_a_new_setting) and config.denoise.patience == 3
    assert load_config(None, settings_given(parser.parse_args(["denoise"]), "denoise")).denoise.patience == 7
    # the library takes it by the same name
    resolved, _ = resolve_config(None, out=tmp_path, patience=4)
    assert resolved.denoise.patience == 4
    # bad values are the config's errors, naming the setting and, on the command line, its flag
    with pytest.raises(SystemExit):
        parser.parse_args(["denoise", "--patience", "x"])
    assert "denoise.patience (--patience)" in with_flags("denoise.patience: must be > 0", "denoise")
    # and `robustft config` prints it with its flag
    from robustft.config_doc import field_help

    help_text = field_help(config_with_a_new_setting.model_fields["denoise"].annotation.model_fields["patience"])
    assert "Flag: --patience (robustft denoise, ablate)" in help_text


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def test_every_setting_flag_is_unique_in_its_command_and_every_keyword_unique():
    commands = {c for s in settings.table() for c in s.commands}
    assert commands <= {"denoise", "ablate", "train", "eval", "export", "run"}
    for command in commands:
        flags = [s.flag for s in settings.for_command(command)]
        assert len(flags) == len(set(flags)), command
    keywords = [s.name for s in settings.table() if s.api]
    assert len(keywords) == len(set(keywords)) and not {"data", "out", "config", "settings"} & set(keywords)


def test_the_library_takes_every_keyword_it_took_before_for_the_same_setting():
    before = {
        "model": "model.name", "base_url": "model.base_url", "provider": "model.provider",
        "max_tokens": "model.max_tokens", "temperature": "model.temperature",
        "concurrency": "denoise.concurrency", "beta": "denoise.beta", "k": "denoise.k", "checker": "denoise.checker",
        "reflection_rounds": "denoise.reflection_rounds", "review": "denoise.review", "score": "denoise.score",
        "prompts_dir": "denoise.prompts_dir", "embedding_model": "denoise.embedding_model",
        "embedding_base_url": "denoise.embedding_base_url", "ablate": "denoise.ablate",
        "limit": "data.limit", "task": "data.task", "split": "data.split", "instruction": "data.instruction",
        "question_column": "data.question_column", "answer_column": "data.answer_column",
        "options_column": "data.options_column", "id_column": "data.id_column",
        "out_of_range_labels": "data.out_of_range_labels", "executor": "run.executor", "ray_address": "run.ray_address"}
    assert {name: s.key for name, s in settings.keywords().items() if name in before} == before
    # and the flags the command line offers for denoise are keywords too, by the same names
    assert {s.name for s in settings.for_command("denoise")} - {"data", "out"} <= set(settings.keywords())


def test_shown_defaults_come_from_the_fields(monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    text = " ".join(_subparser(build_parser(), "denoise").format_help().split())
    for s in settings.for_command("denoise"):
        default = settings.shown_default(s)
        assert f"({s.key}{', default ' + default if default else ''})" in text, s.key
    assert "(denoise.concurrency, default 32)" in text and "(model.max_tokens, default 512)" in text
    eval_text = " ".join(_subparser(build_parser(), "eval").format_help().split())
    assert "(eval.max_tokens, default 64)" in eval_text and "(eval.concurrency, default 32)" in eval_text


@pytest.mark.parametrize("message,command,shown", [
    ("denoise.max_cost_usd works with the local executor only", "denoise",
     "denoise.max_cost_usd (--max-cost) works with the local executor only"),
    ("set data.split, or data.splits", "denoise", "set data.split (--split), or data.splits"),
    ("model.base_url is empty", "train", "model.base_url is empty"),  # train takes no --base-url
    ("no output directory: set `out`", "denoise", "no output directory: set `out` (--out)"),
    ("run out of memory", "denoise", "run out of memory"),
    ("model.name (--model) is empty", "denoise", "model.name (--model) is empty"),
    ("data.path.", "denoise", "data.path (--data)."),
    ("data.path_x and xdata.path", "denoise", "data.path_x and xdata.path"),
    ("field 'denoise.beta': less than 1", "denoise", "field 'denoise.beta' (--beta): less than 1"),
    ("denoise.k is 0; denoise.k must be > 0", "denoise", "denoise.k (--k) is 0; denoise.k must be > 0"),
    ("`gold`: not found", "ablate", "`gold` (--gold): not found"),
    ("`gold`: not found", "denoise", "`gold`: not found"),
])
def test_the_command_line_shows_the_flag_of_each_setting_a_message_names(message, command, shown):
    own = {"gold": "--gold"} if command == "ablate" else {}
    assert with_flags(message, command, own) == shown


def test_the_commands_own_flags_count_for_the_arguments_the_library_names(tmp_path, capsys):
    assert main(["ablate", "--data", str(tmp_path / "x.csv"), "--out", str(tmp_path / "o"), "--variants", ""]) == 2
    assert "`variants` (--variants) is empty" in capsys.readouterr().err


def test_a_library_error_reaches_the_command_line_user_with_the_flag_and_exit_2(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("question,answer\nq,a\n")
    code = main(["denoise", "--data", str(data), "--model", "m", "--base-url", "", "--out", str(tmp_path / "o")])
    assert code == 2 and "model.base_url (--base-url): an empty URL" in capsys.readouterr().err


# Modules outside robustft/cli that may name flags, and why. Nothing else may: the library's
# messages name settings (`denoise.concurrency`), and the command line adds the flag.
FLAGS_ALLOWED = {
    "robustft/sim/cli.py": "the simulator's own command line (python -m robustft.sim), its argparse definitions",
    "robustft/sim/open_data.py": "the simulator's make-open-data command line, its argparse definitions",
    "robustft/demo.py": "the demo's closing text lists, as whole command lines, the commands to type next",
}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# A command quoted whole, in backticks, is a command to type: `robustft doctor DIR --repair`.
QUOTED_COMMAND = re.compile(r"`(?:robustft|vllm serve|python -m) [^`]*`")


def _messages(tree: ast.AST):
    """Every string literal of a module but its docstrings, f-strings whole ({} for each value)."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    inside_fstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            inside_fstrings |= {id(part) for part in ast.walk(node) if part is not node}
            yield node.lineno, "".join(p.value if isinstance(p, ast.Constant) else "{}" for p in node.values)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings | inside_fstrings:
            yield node.lineno, node.value


def test_no_library_module_names_a_flag_in_a_message():
    root = Path(__file__).resolve().parents[1]
    found = []
    for path in sorted((root / "robustft").rglob("*.py")):
        name = path.relative_to(root).as_posix()
        if name.startswith("robustft/cli/") or name in FLAGS_ALLOWED:
            continue
        for line, text in _messages(ast.parse(path.read_text(encoding="utf-8"))):
            found += [f"{name}:{line}: {flag}" for flag in FLAG.findall(QUOTED_COMMAND.sub("", text))]
    assert found == [], "name the setting (denoise.max_cost_usd), or the argument in backticks (`out`), instead"


def test_the_lint_finds_a_flag_in_a_message_and_not_in_a_docstring_or_a_quoted_command():
    source = ('"""Run `robustft denoise --out DIR`."""\n'
              'def f(d):\n    """--out in a docstring."""\n'
              '    raise ValueError(f"{d}: pass --out DIR")\n'
              'print(f"run `robustft doctor {1} --repair` to repair")\n'
              'x = "pass --limit N"\n')
    flags = [FLAG.findall(QUOTED_COMMAND.sub("", text)) for _, text in _messages(ast.parse(source))]
    assert sorted(f for fs in flags for f in fs) == ["--limit", "--out"]

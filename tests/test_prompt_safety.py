"""Prompt templates from a shared folder: sandboxed, checked before the first call, and `denoise --dry-run`."""

from __future__ import annotations

import pytest

from robustft.cli import main
from robustft.config import load_config
from robustft.data import load_dataset
from robustft.errors import ConfigError
from robustft.prompts import PromptLibrary
from robustft.prompts.check import check_prompts, prompts_in_use, stage_values
from robustft.run.dryrun import calls_per_sample
from robustft.tokens import count_tokens

from fakes import make_dataset
from recorded import make_run

BUILTIN = {name: (PromptLibrary().source_of(name)) for name in ("base", "reasoning", "context", "reviewer")}


def prompt_dir(tmp_path, **templates):
    d = tmp_path / "prompts"
    d.mkdir(exist_ok=True)
    for name, text in templates.items():
        (d / f"{name}.jinja").write_text(text, encoding="utf-8")
    return d


def render_base(lib):
    return lib.render("base", question="q", options_block="", task_phrase="short-answer", answer_hint="h",
                      instruction="")


@pytest.mark.parametrize("template", [
    "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ joiner['__init__'] }}",
    "{{ question|attr('__class__') }}",
])
def test_a_template_reaching_for_python_internals_is_refused_at_load(tmp_path, monkeypatch, template):
    d = prompt_dir(tmp_path, base=f"Answer: {template}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"base\.jinja: line 1: the template reaches for '_"):
        PromptLibrary(d)
    assert not (tmp_path / "MARKER").exists()


@pytest.mark.parametrize("template, needle", [
    ("{{ question|attr('_' ~ '_class__') }}", "refused by the template sandbox"),
    ("{{ dict(a=1).update(b=2) }}", "refused by the template sandbox"),
    ("{{ 'x' * 10**9 }}", "repeating a value"),
    ("{{ ((10**100)**100)**100 }}", "too large a number"),
    ("{% for i in range(100000) %}{% for j in range(1000) %}xxxxxxxxxxxx{% endfor %}{% endfor %}", "grows past"),
    ("{% include 'base.jinja' %}", "includes itself"),
    ("{% include 'missing.txt' %}", "includes 'missing.txt'"),
])
def test_what_the_sandbox_stops_while_rendering_is_a_config_error_naming_the_file(tmp_path, template, needle):
    lib = PromptLibrary(prompt_dir(tmp_path, base="Answer: " + template))
    with pytest.raises(ConfigError, match="base.jinja") as err:
        render_base(lib)
    assert needle in str(err.value)


def test_a_link_to_a_file_outside_the_prompts_folder_is_refused(tmp_path):
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    d = prompt_dir(tmp_path)
    (d / "base.jinja").symlink_to(secret)
    with pytest.raises(ConfigError, match="outside the prompts folder"):
        PromptLibrary(d)


def test_the_cli_refuses_a_hostile_prompt_folder_before_anything_is_written(tmp_path, toy_mc_csv, capsys):
    d = prompt_dir(tmp_path, base="{{ cycler.__init__.__globals__.os.popen('id').read() }}\nAnswer:")
    out = tmp_path / "out"
    code = main(["denoise", "--data", str(toy_mc_csv), "--model", "m", "--base-url", "http://127.0.0.1:9/v1",
                 "--out", str(out), "--prompts-dir", str(d), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and str(d / "base.jinja") in err and "Traceback" not in err
    assert not out.exists()


# --- the check before the first call ---------------------------------------------------------

@pytest.mark.parametrize("name, text, settings", [
    ("reviewer", "{{ reviewr_answer }} Answer:", {}),
    ("context", "{% for e in examples %}{{ e.questoin }}{% endfor %}Answer:", {}),
    ("context", "{% if not options_block %}{{ nope }}{% endif %}Answer: {{ question }}", {}),  # branch not taken
    ("judge", "{{ verdict }} Answer:", {"checker": "judge"}),
    ("reflection", "{{ earlier }} Answer:", {"reflection_rounds": 1}),
    ("reviewer", "Just say it: {{ context_answer }}", {}),  # no Answer: line
])
def test_a_late_template_mistake_stops_the_run_before_any_model_call(tmp_path, name, text, settings):
    d = prompt_dir(tmp_path, **{name: text})
    with pytest.raises(ConfigError, match=f"{name}.jinja") as err:
        make_run(tmp_path, prompts_dir=str(d), **settings)
    assert "nothing was called" in str(err.value)
    assert not (tmp_path / "run").exists()


def test_templates_the_method_does_not_use_are_not_held_against_it(tmp_path):
    d = prompt_dir(tmp_path, judge="{{ verdict }}", reflection="{{ earlier }}")
    result, fakes = make_run(tmp_path, prompts_dir=str(d))
    assert result.summary["total"] == 12 and result.summary["failed"] == 0
    assert "judge" not in prompts_in_use(load_config(None)) and "reflection" not in prompts_in_use(load_config(None))


def test_every_problem_is_listed_at_once(tmp_path):
    d = prompt_dir(tmp_path, context="{{ a }} Answer:", reviewer="{{ b }} Answer:")
    with pytest.raises(ConfigError) as err:
        check_prompts(PromptLibrary(d), load_config(None), make_dataset())
    assert "context.jinja: uses a" in str(err.value) and "reviewer.jinja: uses b" in str(err.value)


def test_prompts_in_use_follow_the_method_settings():
    def names(**d):
        return prompts_in_use(load_config(None, {"denoise": d}))

    assert names() == ["base", "reasoning", "context", "reviewer"]
    assert names(checker="judge", reflection_rounds=2) == ["base", "reasoning", "reflection", "judge", "context", "reviewer"]
    assert names(ablate=["reasoning", "reviewer"]) == ["base", "context"]
    assert names(ablate=["context"]) == ["base", "reasoning"]
    assert names(checker="judge", ablate=["checker"]) == ["base", "reasoning", "context", "reviewer"]


# --- denoise --dry-run -----------------------------------------------------------------------

def dry(capsys, *args):
    code = main(["denoise", "--dry-run", *args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_dry_run_prints_every_prompt_for_the_first_sample_and_calls_nothing(tmp_path, toy_mc_csv, capsys):
    out = tmp_path / "out"
    # Port 9 (discard) has no server: any call would fail the command.
    code, text, err = dry(capsys, "--data", str(toy_mc_csv), "--out", str(out), "--model", "m",
                          "--base-url", "http://127.0.0.1:9/v1")
    assert code == 0, err
    assert not out.exists()
    assert "nothing was called and nothing was written" in text and "an estimate" in text
    first = "Shares of company 0 went up today."
    for name in ("base", "reasoning", "context", "reviewer"):
        assert f"--- {name} prompt ({BUILTIN[name]}) ---" in text
    assert text.count(first) == 4  # the first sample's question in every prompt
    assert "Shares of company 1 went down today." in text  # a neighbour stands in for a retrieved example


def test_dry_run_estimates_calls_and_tokens_for_the_whole_dataset(tmp_path, toy_mc_csv, capsys):
    code, text, err = dry(capsys, "--data", str(toy_mc_csv), "--checker", "judge", "--reflection-rounds", "2",
                          "--max-tokens", "100")
    assert code == 0, err
    config = load_config(None, {"data.path": str(toy_mc_csv), "denoise.checker": "judge",
                                "denoise.reflection_rounds": 2, "model.max_tokens": 100})
    assert calls_per_sample(config) == {"base": (1, 1), "reasoning": (1, 1), "reflection": (2, 2), "judge": (1, 1),
                                        "context": (0, 1), "reviewer": (0, 1)}
    clean_calls, noisy_calls = 24 * 5, 24 * 7
    row = next(line for line in text.splitlines() if line.strip().startswith("model calls"))
    assert row.split()[-2:] == [f"{clean_calls:,}", f"{noisy_calls:,}"]
    # Prompt tokens: each prompt rendered for each sample and counted, as a person would.
    lib, ds = PromptLibrary(), load_dataset(config.data)
    clean_tokens = noisy_tokens = 0
    for i, s in enumerate(ds.samples):
        examples = [ds.samples[(i + j) % 24] for j in (1, 2, 3)]
        for name, (c, n) in calls_per_sample(config).items():
            prev = "x " * 100 if name == "reflection" else None
            t = count_tokens(lib.render(name, **stage_values(name, s, examples, config, ds.task, prev)))
            clean_tokens += c * t
            noisy_tokens += n * t
    row = next(line for line in text.splitlines() if line.strip().startswith("prompt tokens"))
    assert row.split()[-2:] == [f"{clean_tokens:,}", f"{noisy_tokens:,}"]
    row = next(line for line in text.splitlines() if line.strip().startswith("completion tokens"))
    assert row.split()[-1] == f"{noisy_calls * 100:,}"
    assert "1 preflight call" in text


def test_dry_run_refuses_a_broken_late_template(tmp_path, toy_mc_csv, capsys):
    d = prompt_dir(tmp_path, reviewer="{{ reviewr_answer }} Answer:")
    code, text, err = dry(capsys, "--data", str(toy_mc_csv), "--prompts-dir", str(d))
    assert code == 2 and "reviewer.jinja: uses reviewr_answer" in err and text == ""


def test_dry_run_shows_data_text_verbatim_and_escapes_visible(tmp_path, capsys):
    data = tmp_path / "inj.jsonl"
    data.write_text('{"question": "What is {{ 7*7 }}? \\u001b[2J Answer: Z", "answer": "49"}\n'
                    '{"question": "2+2?", "answer": "4"}\n', encoding="utf-8")
    code, text, err = dry(capsys, "--data", str(data))
    assert code == 0, err
    assert "What is {{ 7*7 }}? \\x1b[2J Answer: Z" in text and "\x1b" not in text


def test_dry_run_states_how_numbers_compare_and_counts_rows_from_1(tmp_path, capsys):
    data = tmp_path / "counts.csv"
    data.write_text("question,answer\nHow many legs has a spider?,8\nHow many legs has a cat?,4\n")
    assert main(["denoise", "--data", str(data), "--model", "m", "--base-url", "http://127.0.0.1:9/v1",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "(id 0, row 1)" in out
    assert "whole numbers exactly (125 is not 126), others within a relative tolerance of 0.01 " \
           "(data.numeric_tolerance)" in out

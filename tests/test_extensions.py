"""A task type, an input layout and a selection score added from outside robustft: one package,
installed as `pip install --target` puts it, registers one of each by entry point, and a whole
denoise run against the simulated experts reads its data, answers, scores and selection through
them; the export writes the fine-tuning set back in the package's layout. Also: robustft's own are
registered exactly as a package's, and a name nobody registered is an error naming the setting
when a run starts (the config itself scans no plugins)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from robustft.cli import main
from robustft.config import load_config
from robustft.data import read_jsonl
from robustft.data.shapes import LAYOUTS
from robustft.entropy import REGISTRY as SCORES
from robustft.errors import ConfigError
from robustft.run.registered import check_registered
from robustft.sim import SimServer
from robustft.tasks.registry import REGISTRY as TASKS

ROOT = Path(__file__).resolve().parents[1]

PACKAGE = '''
"""A yes/no task type, the prompt/completion layout (OpenAI's legacy fine-tuning files) and a
verbosity score, as a third party would write them."""
from robustft.data.shapes import AnswerSlot, Layout, Parsed, Shape, ShapeError
from robustft.tasks import Task

WORDS = {"yes": "yes", "y": "yes", "true": "yes", "no": "no", "n": "no", "false": "no"}


class YesNo(Task):
    phrase = "yes-or-no"
    hint = "only yes or no"
    comparison = "yes or no, case and punctuation aside"

    def read(self, value, options):
        return WORDS.get(value.strip(" .!*`").lower())

    def normalize_label(self, label, options):
        word = WORDS.get(label.strip(" .!").lower())
        if word is None:
            raise ValueError(f"label {label!r} is neither yes nor no")
        return word

    def match(self, pred, label, tolerance):
        return pred == label

    def sim_wrong_answer(self, answer, others, rng):
        return {"yes": "n", "no": "y"}[answer]  # the simulated expert's mistake, written short


class PromptCompletion(Layout):
    def recognise(self, columns, cfg, first_row):
        return Shape(self.name) if "prompt" in columns and "completion" in columns else None

    def required(self, shape, cfg):
        return ("prompt", "completion"), "give every record a 'prompt' and a 'completion'"

    def parse(self, shape, row, cfg):
        prompt, completion = row.get("prompt"), row.get("completion")
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise ShapeError("'prompt' and 'completion' must be text", "prompt", "write both as strings")
        return Parsed(question=prompt.strip(), answer=completion.strip(), conversation=None,
                      slot=AnswerSlot("completion"), used={"prompt", "completion"})

    def answer_column(self, shape, cfg):
        return "completion"


def reply_words(gen, task):
    """The words of the reply: a terse expert is taken as a sure one (lower is kept)."""
    return float(len(gen.text.split()))
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "robustft-yesno"
version = "0.1.0"

[project.entry-points."robustft.tasks"]
yes_no = "robustft_yesno:YesNo"

[project.entry-points."robustft.layouts"]
prompt_completion = "robustft_yesno:PromptCompletion"

[project.entry-points."robustft.scores"]
reply_words = "robustft_yesno:reply_words"

[tool.setuptools]
py-modules = ["robustft_yesno"]
'''

REGISTRIES = (TASKS, LAYOUTS, SCORES)


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("yesno-src")
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "robustft_yesno.py").write_text(PACKAGE)
    site = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return site


@pytest.fixture
def installed(plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    for registry in REGISTRIES:
        registry.refresh()
    yield plugin_site
    monkeypatch.undo()
    for registry in REGISTRIES:
        registry.refresh()


def test_robustfts_own_are_registered_in_pyproject_exactly_as_a_package_would():
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    for registry in REGISTRIES:
        assert groups[registry.group] == registry.builtin, registry.group
        assert set(registry.builtin) <= set(registry.names())


def test_a_name_nobody_registered_fails_when_the_run_starts_naming_the_setting(tmp_path):
    for key, value, what in (("data.task", "yes_no", "task"), ("data.format", "prompt_completion", "layout"),
                             ("denoise.score", "reply_words", "score method")):
        config = load_config(None, {key: value})  # the config checks the shape of the name only
        with pytest.raises(ConfigError, match=rf"^{key}: unknown {what} '{value}'; registered: .*entry-point group "
                                              rf"'robustft\.\w+'"):
            check_registered(config)
    with pytest.raises(ConfigError, match="data.task"):
        load_config(None, {"data.task": "no spaces please"})
    data = tmp_path / "d.csv"
    data.write_text("question,answer\nIs it?,yes\n")
    assert main(["denoise", "--data", str(data), "--task", "yes_no", "--model", "sim", "--base-url",
                 "http://127.0.0.1:9", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert not (tmp_path / "run").exists()  # stopped before anything was written


def _rows(n: int) -> list[tuple[str, str, str]]:
    return [(f"q{i}", f"Is {i * 7 + 3} an odd number in quiz round {i}?", "yes" if (i * 7 + 3) % 2 else "no")
            for i in range(n)]


def test_a_packages_task_type_layout_and_score_run_a_whole_denoise(installed, tmp_path, capsys):
    from robustft.finetune.export import export_run

    items = _rows(24)
    gold = tmp_path / "gold.csv"
    gold.write_text("id,question,answer\n" + "".join(f"{sid},{q},{a}\n" for sid, q, a in items))
    flipped = {sid for sid, _, _ in items[::3]}
    written = {"yes": ["yes", "Yes", "TRUE", "y"], "no": ["no", "No.", "false", "n"]}  # labels as people write them
    lines = []
    for i, (sid, q, a) in enumerate(items):
        given = ("no" if a == "yes" else "yes") if sid in flipped else a
        lines.append(json.dumps({"id": sid, "prompt": q, "completion": written[given][i % 4], "source": f"s{i}"}))
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(lines) + "\n")
    config = tmp_path / "c.yaml"
    config.write_text("data: {task: yes_no}\ndenoise: {score: reply_words, beta: 0.5}\n")
    out = tmp_path / "run"
    with SimServer(gold, accuracy=1.0, seed=3) as sim:
        assert main(["denoise", "--config", str(config), "--data", str(data), "--model", "sim", "--base-url",
                     sim.base_url, "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "yes_no" and summary["selection"]["score"] == "reply_words"
    records = {r["id"]: r for r in read_jsonl(out / "samples.jsonl")}
    # the layout: questions from `prompt`, labels from `completion`, normalised by the task type
    assert {sid: r["question"] for sid, r in records.items()} == {sid: q for sid, q, _ in items}
    assert all(r["original_label"] in ("yes", "no") for r in records.values())
    # the task type: every expert answer read as yes/no, the flipped labels (and only they) flagged
    assert {sid for sid, r in records.items() if r["decision"] == "noisy"} == flipped
    gold_of = {sid: a for sid, _, a in items}
    answers = [n["answer"] for r in records.values() for n in r["nodes"].values() if n.get("answer") is not None]
    assert len(answers) >= 2 * len(items) and set(answers) <= {"yes", "no"}
    prompt = records["q0"]["nodes"]["reasoning"]["prompt"]
    assert "yes-or-no" in prompt and "only yes or no" in prompt
    # the score: each scored reply's number is its word count; selection keeps the lower half
    scored = {sid: r["nodes"]["context"] for sid, r in records.items() if "context" in r["nodes"]}
    assert set(scored) == flipped
    for node in scored.values():
        assert node["score"] == float(len(node["response"].split()))
    relabeled = sorted(flipped, key=lambda sid: (scored[sid]["score"], int(sid[1:])))
    kept = set(relabeled[:math.floor(0.5 * len(flipped))])
    assert {sid for sid, r in records.items() if r["status"] == "relabeled"} == kept
    assert all(records[sid]["label"] == gold_of[sid] for sid in kept)
    # written back in the package's layout: only the completion of a changed record differs
    result = export_run(out, out=tmp_path / "clean.jsonl")
    assert result.format == "prompt_completion (jsonl)" and result.changed == len(kept)
    back = {json.loads(line)["id"]: line for line in (tmp_path / "clean.jsonl").read_text().splitlines()}
    original = {json.loads(line)["id"]: line for line in lines}
    assert set(back) == {sid for sid, r in records.items() if r["status"] in ("clean", "relabeled")}
    for sid, line in back.items():
        if sid in kept:
            assert json.loads(line) == {**json.loads(original[sid]), "completion": gold_of[sid]}
        else:
            assert line == original[sid]


def test_the_readmes_example_works():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Writing a task type, an input layout or a selection score"):]
    code = section[section.index("```python") + len("```python"):]
    namespace: dict = {}
    exec(compile(code[:code.index("```")], "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    task = namespace["YesNo"]()
    assert task.extract("Thinking.\nAnswer: **Yes.**") == "yes" and task.extract("Answer: maybe") is None
    assert task.normalize_label("No", None) == "no" and task.match("no", "no", 0.0)
    with pytest.raises(ValueError, match="neither yes nor no"):
        task.normalize_label("perhaps", None)
    layout = namespace["PromptCompletion"]()
    layout.name = "prompt_completion"
    from robustft.config import DataConfig

    assert layout.recognise(["prompt", "completion"], DataConfig(), None).name == "prompt_completion"
    parsed = layout.parse(None, {"prompt": "Is it?", "completion": "yes"}, None)
    assert (parsed.question, parsed.answer, parsed.slot.column) == ("Is it?", "yes", "completion")
    assert namespace["reply_words"](type("G", (), {"text": "Answer: yes"})(), "yes_no") == 2.0


def test_the_simulated_expert_makes_the_task_types_own_mistakes(installed, tmp_path):
    from robustft.sim.gold import load_gold
    from robustft.sim.model import SimModel

    items = _rows(12)
    gold = tmp_path / "gold.csv"
    gold.write_text("id,question,answer\n" + "".join(f"{sid},{q},{a}\n" for sid, q, a in items))

    def answers(model):
        return [json.loads(model.complete({"model": "sim", "messages": [
            {"role": "user", "content": f"Answer yes or no.\nQuestion:\n{q}\nAnswer: "}]}).encoded())
            ["choices"][0]["message"]["content"].rsplit("Answer:", 1)[1].strip() for _, q, _ in items]

    told = answers(SimModel(load_gold(gold), accuracy=0.0, seed=1, task="yes_no"))
    assert told == [{"yes": "n", "no": "y"}[a] for _, _, a in items]  # every answer wrong, as the task writes it
    # not told: another row's answer (for yes/no, the other word), as for any short text
    assert answers(SimModel(load_gold(gold), accuracy=0.0, seed=1)) == [{"yes": "no", "no": "yes"}[a]
                                                                         for _, _, a in items]
    with pytest.raises(ConfigError, match="data.task: unknown task 'nope'"):
        SimModel(load_gold(gold), task="nope")


def test_an_entry_of_the_wrong_kind_is_refused_naming_the_setting_and_the_base():
    from robustft.errors import ConfigError
    from robustft.plugins import Registry, instance_of
    from robustft.tasks import Task

    registry = Registry("robustft.tests-none", "data.task", "task",
                        {"mine": "robustft.tasks.builtin:Text", "wrong": "collections:OrderedDict"},
                        instance_of(Task, "robustft.tasks.Task"))
    assert isinstance(registry.get("mine"), Task) and registry.get("mine").name == "mine"
    with pytest.raises(ConfigError, match=r"data.task: the task 'wrong' .*OrderedDict is not a robustft.tasks.Task"):
        registry.get("wrong")

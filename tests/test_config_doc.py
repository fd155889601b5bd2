"""`robustft config` (every setting, generated from the models), the example configs agreeing with
it, and the script that fetches the paper's data for examples/paper/."""

from __future__ import annotations

import csv
import io
import importlib.util
import re
import shutil
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from robustft.cli import main
from robustft.config import ModelConfig, ModelOverride, RobustFTConfig, load_config
from robustft.config_doc import annotated_config, field_help

from shared_data import SHARED_DATA as SHARED, needs_full_data

REPO = Path(__file__).resolve().parents[1]


def all_fields(model: type[BaseModel], prefix: str = ""):
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            yield from all_fields(info.annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", info


def test_every_field_has_a_description():
    missing = [name for name, info in all_fields(RobustFTConfig) if not (info.description or "").strip()]
    assert missing == []
    # A role's override means what the model field means: each one exists under model:.
    assert set(ModelOverride.model_fields) <= set(ModelConfig.model_fields)


def test_the_printout_covers_every_field_and_loads_back_to_the_defaults():
    text = annotated_config()
    loaded = yaml.safe_load(text)
    assert RobustFTConfig(**loaded) == RobustFTConfig()
    assert loaded == RobustFTConfig().model_dump(mode="json")
    for dotted, info in all_fields(RobustFTConfig):
        node = loaded
        for key in dotted.split("."):
            assert key in node, dotted
            node = node[key]
        # its help is printed, as comment lines just above it
        words = field_help(info).split()[:6]
        assert re.search(r"#\s*" + r"\s+(?:#\s*)?".join(map(re.escape, words)), text), dotted
    for name in ModelOverride.model_fields:
        assert re.search(rf"#.*\b{name}\b", text.split("\nroles:")[0].rsplit("\nmodel:", 1)[1]), name
    assert all(len(line) <= 100 for line in text.splitlines())


def test_choices_and_bounds_are_printed():
    text = " ".join(line.strip().lstrip("#").strip() for line in annotated_config().splitlines())
    # task types are registered names (robustft.tasks): the description lists robustft's own
    assert "auto, multiple_choice, text, numeric, open, or a task type a package registers" in text
    assert "One of: paper, majority, judge, trust." in text
    assert "(> 0.0, <= 1.0)" in text  # beta


def test_cli_prints_it_and_writes_it(tmp_path, capsys):
    assert main(["config"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == annotated_config().rstrip("\n")
    assert main(["config", "--out", str(tmp_path / "all.yaml")]) == 0
    assert load_config(tmp_path / "all.yaml") == load_config()


# --- examples/ agree with the models ---------------------------------------------------------

EXAMPLES = sorted((REPO / "examples").rglob("*.yaml"))
_LEAF = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_]\w*):(?P<value>[^#]*?)\s*(?:#\s*(?P<comment>.*))?$")


def leaves(path: Path):
    """(dotted key, value text, comment) of every `key: value` line, sections tracked by indentation."""
    stack: list[tuple[int, str]] = []
    for line in path.read_text().splitlines():
        m = _LEAF.match(line)
        if not m or line.lstrip().startswith("#"):
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if not m["value"].strip():
            stack.append((indent, m["key"]))
            continue
        yield ".".join([k for _, k in stack] + [m["key"]]), m["value"].strip(), m["comment"] or ""


def registry_of(dotted: str):
    from robustft.data.shapes import LAYOUTS
    from robustft.entropy import REGISTRY as SCORES
    from robustft.tasks.registry import REGISTRY as TASKS

    return {"data.task": TASKS, "data.format": LAYOUTS, "denoise.score": SCORES}[dotted]


def field_of(dotted: str):
    model: type[BaseModel] = RobustFTConfig
    *sections, name = dotted.split(".")
    for section in sections:
        model = model.model_fields[section].annotation  # type: ignore[assignment]
    return model.model_fields[name]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(REPO / "examples")))
def test_examples_load_and_their_listed_choices_are_the_models(path):
    from robustft.backends.registry import check_providers

    check_providers(load_config(path))  # their backends' options too, as a run checks them
    for dotted, _, comment in leaves(path):
        options = [re.sub(r"\(.*?\)", "", part).strip() for part in comment.split("|")]
        if len(options) > 1 and all(re.fullmatch(r"\w+", o) for o in options):
            text = field_help(field_of(dotted))
            if "One of: " in text:
                assert options == list(text.split("One of: ")[1].rstrip(".").split(", ")), dotted
            else:  # a registered name (task type, layout, score): the example lists robustft's own
                assert all(re.search(rf"\b{o}\b", text) for o in options), dotted
                assert sorted(o for o in options if o != "auto") == sorted(registry_of(dotted).builtin), dotted


def test_the_server_example_shows_the_defaults_unless_marked():
    path = REPO / "examples" / "openai_server.yaml"
    defaults = RobustFTConfig().model_dump(mode="json")
    checked = 0
    for dotted, value, comment in leaves(path):
        if "example value" in comment:
            continue
        node = defaults
        for key in dotted.split("."):
            node = node[key]
        assert yaml.safe_load(value) == node, dotted
        checked += 1
    assert checked >= 25


# --- the paper's data ------------------------------------------------------------------------


def load_script():
    spec = importlib.util.spec_from_file_location("get_paper_data", REPO / "scripts" / "get_paper_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_configs_read_exactly_the_files_the_script_writes():
    script = load_script()
    paper = REPO / "examples" / "paper"
    used = set()
    for path in sorted(paper.glob("*.yaml")):
        config = load_config(path)
        for p in (config.data.path, paper / config.experiment.test_data):
            relative = Path(p).resolve().relative_to(script.DEFAULT_OUT)
            used.add(str(relative))
    # ...and the gold labels, for `robustft report DIR --gold data/paper/arc/labeled.csv`.
    assert set(script.FILES) - used == {"arc/labeled.csv", "fpb/labeled.csv"} and used < set(script.FILES)
    assert script.DEFAULT_OUT == REPO / "data" / "paper"
    assert "data/paper/" in (REPO / ".gitignore").read_text()
    assert "scripts/get_paper_data.py" in (paper / "README.md").read_text()


@needs_full_data("the script checks every published file whole against its SHA-256")
def test_the_script_rebuilds_the_shared_files_from_the_repositorys_layout(tmp_path):
    """A stand-in for the published repository (its layout: noisy sets under noisy/, FPB noisy sets with
    the `gt` column), made from the shared copy; the script must give back the shared files exactly."""
    script = load_script()
    clone = tmp_path / "RobustFT"
    gt = [row["gt"] for row in csv.DictReader((SHARED / "fpb" / "labeled.csv").open(newline="", encoding="utf-8"))]
    for dest, (repo_path, change, _) in script.FILES.items():
        target = clone / repo_path
        target.parent.mkdir(parents=True, exist_ok=True)
        if change is None:
            shutil.copy(SHARED / dest, target)
            continue
        rows = list(csv.reader((SHARED / dest).open(newline="", encoding="utf-8")))
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\n")
        for i, row in enumerate(rows):
            writer.writerow([row[0], "gt" if i == 0 else gt[i - 1], *row[1:]])
        target.write_text(out.getvalue(), encoding="utf-8", newline="")
    out_dir = tmp_path / "data" / "paper"
    assert script.main(["--source", str(clone), "--out", str(out_dir)]) == 0
    for dest in script.FILES:
        assert (out_dir / dest).read_bytes() == (SHARED / dest).read_bytes(), dest
    # A file that is not the published one is refused and not written.
    (clone / "data/arc/test.csv").write_text("id,question,answer,options\n")
    (out_dir / "arc/test.csv").unlink()
    assert script.main(["--source", str(clone), "--out", str(out_dir)]) == 1
    assert not (out_dir / "arc/test.csv").exists()


def test_the_script_says_it_needs_the_network(tmp_path, capsys):
    script = load_script()
    assert script.main(["--source", "http://127.0.0.1:9/", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "internet access" in err and "--source" in err and "luo-junyu/RobustFT" in err


def test_the_printout_lists_the_builtin_backends_options_commented_out_under_model():
    from robustft.backends.registry import BUILTIN, options_model

    model_part = annotated_config().split("\nroles:")[0].rsplit("\nmodel:", 1)[1]
    for provider in BUILTIN:
        for name, info in options_model(provider).model_fields.items():
            assert re.search(rf"# [a-z, ]*\b{provider}\b[a-z, ]*: ", model_part), provider
            assert f"  # {name}: " in model_part, (provider, name)
    assert "\n  device:" not in model_part  # commented out: the printout still loads back to the defaults

"""Backends as plugins: the entry-point group, an installed third-party backend running a whole
denoise, the public names, and the pool's lifecycle."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import robustft
from robustft.backends import registry
from robustft.backends.base import ChatBackend, Generation
from robustft.backends.fake import FakeChatModel
from robustft.backends.registry import BUILTIN, ModelPool, build_chat_model, check_providers, registered_names
from robustft.config import ModelConfig, load_config
from robustft.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MARK = "echo-plugin says"

PLUGIN = '''
import os
from typing import Literal

from pydantic import Field

from robustft import BackendOptions, Generation, options_of


class EchoBackend:
    """Answers its option `answer` to everything and logs each call, to show which backend answered."""

    class Options(BackendOptions):
        answer: Literal["A", "B", "C"] = Field("A", description="the letter every reply gives")

    def __init__(self, config):
        self.name = config.name or "echo"
        self.answer = options_of(config, self.Options).answer
        self.log = os.environ.get("ECHO_LOG")

    async def generate(self, messages):
        if self.log:
            with open(self.log, "a", encoding="utf-8") as fh:
                fh.write("call\\n")
        text = "{mark}: Answer: " + self.answer
        tokens = ["{mark}", ":", " Answer", ":", " " + self.answer]
        return Generation(text=text, tokens=tokens, token_logprobs=[-0.2] * 5,
                          prompt_tokens=10, completion_tokens=5)


def broken(config):
    raise RuntimeError("never built")
'''.format(mark=MARK)

PYPROJECT = '''
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "robustft-echo-backend"
version = "0.1.0"

[project.entry-points."robustft.backends"]
echo = "robustft_echo:EchoBackend"
brokenimport = "robustft_echo_missing:Backend"

[tool.setuptools]
py-modules = ["robustft_echo"]
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """A backend package installed into its own directory, as `pip install --target` puts it."""
    src = tmp_path_factory.mktemp("echo-src")
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "robustft_echo.py").write_text(PLUGIN)
    site = tmp_path_factory.mktemp("site")
    proc = subprocess.run([PYTHON, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(site), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert list(site.glob("robustft_echo_backend-*.dist-info"))
    return site


@pytest.fixture
def with_plugin(plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    registry.refresh()
    yield plugin_site
    registry.refresh()


def test_the_builtins_are_registered_in_pyproject_exactly_as_a_plugin_would_be():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["robustft.backends"] == BUILTIN
    assert registered_names() == sorted(BUILTIN)


def test_an_unknown_provider_is_a_config_error_listing_the_registered_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"model.provider.*no backend named 'nope'; registered: fake, openai, "
                                          r"transformers, vllm"):
        check_providers(load_config(None, {"model.provider": "nope"}))
    config = tmp_path / "c.yaml"
    config.write_text("roles: {reviewer: {provider: opneai}}\n")
    with pytest.raises(ConfigError, match=r"roles.reviewer.provider.*'opneai'.*registered: fake, openai"):
        check_providers(load_config(config))


def test_an_installed_plugin_is_found_by_its_entry_point(with_plugin):
    assert "echo" in registered_names()
    backend = build_chat_model(ModelConfig(provider="echo", name="e"))
    assert type(backend).__name__ == "EchoBackend" and isinstance(backend, ChatBackend)
    gen = asyncio.run(backend.generate([{"role": "user", "content": "hi"}]))
    assert isinstance(gen, Generation) and gen.text.endswith("Answer: A")
    with pytest.raises(ConfigError, match=r"'brokenimport': its backend robustft_echo_missing:Backend could not "
                                          r"be loaded: ModuleNotFoundError"):
        build_chat_model(ModelConfig(provider="brokenimport"))


def test_a_plugin_backend_answers_every_call_of_a_whole_denoise_run(plugin_site, tmp_path):
    data = tmp_path / "mc.csv"
    with data.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "question", "options", "answer"])
        writer.writeheader()
        for i in range(6):
            writer.writerow({"id": f"q{i}", "question": f"Which planet is number {i} in this quiz about the sky?",
                             "options": json.dumps(["Mars", "Venus", "Earth"]), "answer": "B" if i in (2, 5) else "A"})
    config = tmp_path / "plugin.yaml"
    # `answer` is the plugin's own option (EchoBackend.Options), beside the shared settings
    config.write_text("model: {provider: echo, name: echo-model, answer: B}\ndenoise: {beta: 1.0}\n")
    log = tmp_path / "calls.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), str(ROOT)]), "ECHO_LOG": str(log),
           "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "run"
    proc = subprocess.run([PYTHON, "-m", "robustft", "denoise", "--config", str(config), "--data", str(data),
                           "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert summary["config"]["model"]["provider"] == "echo" and summary["config"]["model"]["answer"] == "B"
    # every expert says B (the option), so the rows labelled A are the noisy ones, relabeled to B
    assert [s["status"] for s in samples] == ["relabeled", "relabeled", "clean", "relabeled", "relabeled", "clean"]
    assert [s["label"] for s in samples] == ["B"] * 6
    responses = [node["response"] for s in samples for node in s["nodes"].values() if node.get("response")]
    assert len(responses) >= 14 and all(r.startswith(MARK) for r in responses)
    assert len(log.read_text().splitlines()) >= summary["model_calls"]["total"] == len(responses)


def test_a_plugins_options_are_checked_when_the_run_starts_naming_the_role_key_provider_and_fix(with_plugin, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: {provider: echo, answer: C}\nroles: {judge: {answr: B}, reviewer: {answer: D}}\n")
    loaded = load_config(config)  # the config is a leaf: it checks shapes, not the backends' options
    assert loaded.model.options == {"answer": "C"} and loaded.model_for("judge").options == {"answer": "C", "answr": "B"}
    with pytest.raises(ConfigError) as err:
        check_providers(loaded)
    assert str(err.value) == ("roles.judge.answr: not a setting of a model, nor an option of provider 'echo' (its "
                              "options: answer); check the spelling, or remove it, or set roles.judge.provider to a "
                              "backend that has it")
    config.write_text("model: {provider: echo}\nroles: {reviewer: {answer: D}}\n")
    with pytest.raises(ConfigError, match=r"^roles.reviewer.answer: Input should be 'A', 'B' or 'C' \(got 'D'\), an "
                                          r"option of provider 'echo'; fix the value$"):
        check_providers(load_config(config))
    # a role on another backend does not inherit the default model's options
    config.write_text("model: {provider: echo, answer: C}\nroles: {judge: {provider: fake, script: ['Answer: B']}}\n")
    checked = load_config(config)
    check_providers(checked)
    assert checked.model_for("judge").options == {"script": ["Answer: B"]}
    assert asyncio.run(build_chat_model(checked.model_for("base")).generate([])).text.endswith("Answer: C")


def test_robustft_exports_the_backend_api_lazily():
    assert robustft.Generation is Generation and robustft.ChatBackend is ChatBackend
    assert {"Generation", "ChatBackend"} <= set(dir(robustft))
    code = ("import sys, robustft; light = 'robustft.backends.base' not in sys.modules; "
            "robustft.Generation; print(light, 'robustft.backends.base' in sys.modules)")
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.split() == ["True", "True"], proc.stderr
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        robustft.Nope  # noqa: B018


class Closable(FakeChatModel):
    def __init__(self):
        super().__init__(["Answer: A"])
        self.closed = 0

    async def aclose(self):
        self.closed += 1


def test_the_pool_closes_every_backend_that_can_be_closed():
    pool = ModelPool()
    config = load_config(None, {"model": {"provider": "fake"}, "roles": {"reviewer": {"name": "other"}}})
    given = Closable()
    pool.add(config.model_for("base"), given)
    built = pool.get(config.model_for("reviewer"))  # a plain fake: nothing to close
    assert isinstance(built, FakeChatModel) and pool.get(config.model_for("context")) is given
    asyncio.run(pool.aclose())
    assert given.closed == 1


def test_the_pool_closes_the_http_sessions_of_the_backends_it_built():
    from robustft.sim import SimServer
    from robustft.demo import DEMO_GOLD

    with SimServer(DEMO_GOLD) as sim:
        pool = ModelPool()
        config = ModelConfig(name="sim", base_url=sim.base_url)

        async def run():
            model = pool.get(config)
            await model.generate([{"role": "user", "content": "A. x\nB. y"}])
            session = await model.endpoints._session()
            await pool.aclose()
            return session
        session = asyncio.run(run())
    assert session.closed


def test_the_readmes_backend_example_runs():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Writing a backend"):]
    assert '[project.entry-points."robustft.backends"]' in section
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    backend = namespace["MyBackend"](ModelConfig(provider="fake", name="m"))
    gen = asyncio.run(backend.generate([{"role": "user", "content": "Is it A?"}]))
    assert isinstance(gen, Generation) and gen.text


def test_a_wrong_backend_option_stops_denoise_before_any_call_with_exit_2(tmp_path, capsys):
    from robustft.cli import main

    data = tmp_path / "d.csv"
    data.write_text('id,question,options,answer\nq1,Which?,"[""x"", ""y""]",A\n', encoding="utf-8")
    config = tmp_path / "c.yaml"
    config.write_text("model: {provider: fake, script: ['Answer: A'], devise: cpu}\n")
    out = tmp_path / "run"
    assert main(["denoise", "--config", str(config), "--data", str(data), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert ("model.devise: not a setting of a model, nor an option of provider 'fake' (its options: script); check "
            "the spelling, or remove it, or set model.provider to a backend that has it") in err
    assert not (out / "samples.jsonl").exists()
    config.write_text("model: {provider: fake, script: ['Answer: A']}\n")  # the fixed config runs
    assert main(["denoise", "--config", str(config), "--data", str(data), "--out", str(out), "--quiet"]) == 0


def test_optional_abilities_are_declared_by_plain_attributes_and_read_once_per_model():
    from robustft.agents.calls import ModelCalls
    from robustft.backends import base

    class OwnTimeout(FakeChatModel):
        enforces_timeout = True

    class NoOwnTimeout(FakeChatModel):
        enforces_timeout = False

    pool = ModelPool()
    calls = ModelCalls(pool, None, 1)
    for backend, expected in [(OwnTimeout(), True), (NoOwnTimeout(), False), (FakeChatModel(), False)]:
        config = ModelConfig(provider="fake", name=type(backend).__name__)
        pool.add(config, backend)
        assert calls._model(config).own_timeout is expected
    assert isinstance(Closable(), base.Closable) and not isinstance(FakeChatModel(), base.Closable)
    assert not isinstance(FakeChatModel(), base.HasEndpoints)

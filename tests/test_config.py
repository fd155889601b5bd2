import pytest

from robustft.backends.registry import check_providers
from robustft.config import PATH_SETTINGS, load_config, recorded_config
from robustft.errors import ConfigError
from robustft.prompts import PromptLibrary


def test_defaults_are_the_papers():
    cfg = load_config()
    assert (cfg.model.temperature, cfg.model.max_tokens, cfg.model.logprobs) == (1.0, 512, True)
    assert (cfg.denoise.k, cfg.denoise.beta, cfg.denoise.checker, cfg.denoise.concurrency) == (3, 0.5, "paper", 32)


def test_flags_override_the_file_and_roles_inherit_the_default_model(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {name: small, base_url: http://h/v1}\nroles: {reviewer: {name: big}}\ndenoise: {k: 5}\n")
    cfg = load_config(path, {"denoise.k": 7, "model.max_tokens": 64})
    assert cfg.denoise.k == 7
    assert cfg.model_for("base").name == "small" and cfg.model_for("base").max_tokens == 64
    reviewer = cfg.model_for("reviewer")
    assert reviewer.name == "big" and reviewer.base_url == "http://h/v1" and reviewer.max_tokens == 64


def test_unknown_keys_are_errors_that_name_the_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("denoise: {bta: 0.3}\n")
    with pytest.raises(ConfigError, match=r"field 'denoise.bta': unknown field"):
        load_config(path)


def test_out_of_range_values_name_the_field_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"field 'denoise.beta'.*1.5"):
        load_config(None, {"denoise.beta": 1.5})


@pytest.mark.parametrize("text,needle", [("- a\n- b\n", "top level must be a mapping"), ("a: [\n", "not valid YAML")])
def test_malformed_yaml(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_relative_data_path_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.csv").write_text("question,answer\nq,a\n")
    path = tmp_path / "sub" / "c.yaml"
    path.write_text("data: {path: d.csv}\n")
    assert load_config(path).data.path == tmp_path / "sub" / "d.csv"


def test_every_path_setting_of_a_file_is_relative_to_it_and_flags_to_the_current_directory(tmp_path, monkeypatch):
    cfg_dir, cwd = tmp_path / "cfg", tmp_path / "cwd"
    (cfg_dir / "models" / "tiny").mkdir(parents=True)
    (cfg_dir / "prompts").mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (cfg_dir / "c.yaml").write_text(
        "data: {path: d.csv}\ndenoise: {prompts_dir: prompts}\nexperiment: {test_data: t.csv}\n"
        "train: {model: models/tiny}\nmodel: {adapter: adapters/a}\nout: runs/x\n")
    cfg = load_config(tmp_path / "cfg" / "c.yaml")
    resolved = {(s, n): str(getattr(getattr(cfg, s), n)) for s, n in PATH_SETTINGS}
    assert resolved == {("data", "path"): str(cfg_dir / "d.csv"), ("denoise", "prompts_dir"): str(cfg_dir / "prompts"),
                        ("experiment", "test_data"): str(cfg_dir / "t.csv"),
                        ("train", "model"): str(cfg_dir / "models" / "tiny"),
                        ("model", "adapter"): str(cfg_dir / "adapters" / "a")}
    assert str(cfg.out) == "runs/x"  # outputs go where the command runs
    hub = tmp_path / "cfg" / "hub.yaml"
    hub.write_text("data: {path: org/name}\ntrain: {model: meta-llama/Llama-3.1-8B-Instruct}\n")
    assert (str(load_config(hub).data.path), load_config(hub).train.model) == ("org/name", "meta-llama/Llama-3.1-8B-Instruct")
    (cwd / "mine.csv").write_text("question,answer\nq,a\n")
    flagged = load_config(tmp_path / "cfg" / "c.yaml", {"data.path": "mine.csv", "experiment.test_data": "t2.csv"})
    assert str(flagged.data.path) == "mine.csv" and str(flagged.experiment.test_data) == "t2.csv"


def test_a_recorded_config_of_another_version_reads():
    recorded = load_config(None, {"model.name": "m", "roles": {"reviewer": {"name": "big"}}}).public_dict()
    recorded["model"]["provider"] = "a-plugin-not-installed-here"
    recorded["denoise"].update(setting_of_a_newer_version=1, beta="not a number")
    recorded["section_of_a_newer_version"] = {"x": 1}
    recorded["roles"]["judgee"] = {"name": "typo"}
    del recorded["train"]  # an older version had none
    cfg = recorded_config(recorded)
    assert cfg.model.provider == "a-plugin-not-installed-here" and cfg.model.name == "m"
    assert cfg.denoise.beta == 0.5 and cfg.roles["reviewer"].name == "big" and "judgee" not in cfg.roles
    assert cfg.train.lora_r == 8
    assert recorded_config(None) == recorded_config({"data": "not a section"}) == load_config()
    with pytest.raises(ConfigError, match="no backend named"):  # a config to run with is checked when it runs
        check_providers(load_config(None, {"model.provider": "a-plugin-not-installed-here"}))


def test_public_dict_holds_no_secret(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    cfg = load_config(None, {"model.name": "m", "model.base_url": "http://x/v1"})
    assert "sk-secret-value" not in str(cfg.public_dict())
    assert cfg.public_dict()["model"]["api_key_env"] == "OPENAI_API_KEY"


def test_prompts_insert_dataset_text_as_values_never_as_templates():
    lib = PromptLibrary()
    text = lib.question_prompt("What is {{ 7*7 }} {% if x %}?", ["{{a}}", "b"], "multiple_choice")
    assert "{{ 7*7 }} {% if x %}" in text and "A. {{a}}" in text and "B. b" in text
    assert "(A or B)" in text


def test_user_prompt_folder_overrides_by_name_and_rejects_strangers(tmp_path):
    (tmp_path / "base.jinja").write_text("Q: {{ question }}\nAnswer: ")
    assert PromptLibrary(tmp_path).question_prompt("why?", None, "text").startswith("Q: why?")
    (tmp_path / "bsae.jinja").write_text("x")
    with pytest.raises(ConfigError, match="bsae.jinja"):
        PromptLibrary(tmp_path)


def test_a_template_naming_an_unknown_value_fails_with_its_file(tmp_path):
    (tmp_path / "base.jinja").write_text("{{ nonsense }}")
    with pytest.raises(ConfigError, match=r"base.jinja.*'nonsense' is undefined"):
        PromptLibrary(tmp_path).question_prompt("q", None, "text")


def test_the_documented_example_configs_load(tmp_path):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples"
    server = load_config(examples / "openai_server.yaml")
    assert server.model.provider == "openai" and server.model.base_url.endswith("/v1")
    assert server.denoise.review == "on_disagreement" and server.denoise.ablate == [] and server.denoise.k == 3
    local = load_config(examples / "local_transformers.yaml")
    assert local.model.provider == "transformers" and local.model.batch_size == 8
    assert local.data.path.name == "demo.csv" and local.data.path.exists()

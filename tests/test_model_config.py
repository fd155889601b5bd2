"""Model settings: URLs, retry bounds, top_logprobs resolution, provider inference from the flags
(one rule for denoise, ablate and eval), and what counts as a model's identity."""

from __future__ import annotations

import pytest

from robustft.backends.store import model_identity
from robustft.cli import build_parser, main
from robustft.cli.common import settings_given
from robustft.config import ModelConfig, load_config, model_flag_updates
from robustft.errors import ConfigError
from robustft.finetune.evaluate import eval_model_config


@pytest.mark.parametrize("url,needle", [
    ("", "an empty URL"), ("   ", "an empty URL"), ("localhost:8000/v1", "must start with http:// or https://"),
    ("ftp://h/v1", "must start with http"), ("http://", "has no host"), ("http://h:99999/v1", "not a valid URL"),
    ("http://h /v1", "contains spaces"), ([], "an empty list"), (["http://a/v1", "nope"], "'nope' must start"),
])
def test_bad_base_urls_are_config_errors_naming_the_field(url, needle):
    with pytest.raises(ConfigError, match=rf"field 'model.base_url'.*{needle}"):
        load_config(None, {"model.base_url": url})


def test_good_base_urls_one_or_several():
    assert ModelConfig(base_url="https://api.example.com/v1").base_urls == ["https://api.example.com/v1"]
    many = ModelConfig(base_url=("http://10.0.0.1:8000/v1", "http://[::1]:8001/v1"))
    assert many.base_url == many.base_urls == ["http://10.0.0.1:8000/v1", "http://[::1]:8001/v1"]
    assert ModelConfig().base_urls == []


def test_retry_settings_are_bounded_and_documented_defaults_hold():
    model = ModelConfig()
    assert (model.max_retries, model.retry_backoff_max_s, model.give_up_after_s) == (3, 30.0, 300.0)
    with pytest.raises(ConfigError, match=r"field 'model.max_retries'.*less than or equal to 10"):
        load_config(None, {"model.max_retries": 11})
    with pytest.raises(ConfigError, match="retry_backoff_max_s"):
        load_config(None, {"model.retry_backoff_max_s": 0})
    with pytest.raises(ConfigError, match=r"roles.judge.give_up_after_s"):
        load_config(None, {"roles": {"judge": {"give_up_after_s": -1}}})


def test_top_logprobs_resolves_from_the_selection_score():
    assert load_config().model_for("context").top_logprobs == 0
    entropy = load_config(None, {"denoise.score": "entropy"})
    assert entropy.model.top_logprobs is None and entropy.model_for("context").top_logprobs == 5
    chosen = load_config(None, {"denoise.score": "entropy", "model.top_logprobs": 12,
                                "roles": {"reviewer": {"top_logprobs": 2}}})
    assert chosen.model_for("base").top_logprobs == 12 and chosen.model_for("reviewer").top_logprobs == 2
    with pytest.raises(ConfigError, match="top_logprobs"):
        load_config(None, {"model.top_logprobs": 21})


def test_identity_ignores_where_and_how_patiently_a_model_is_called_but_not_what_is_asked():
    a = ModelConfig(name="m", base_url="http://a/v1", top_logprobs=0)
    same = ModelConfig(name="m", base_url=["http://b/v1", "http://c/v1"], top_logprobs=0, timeout_s=9, max_retries=9,
                       retry_backoff_max_s=1, give_up_after_s=5, batch_size=64, api_key_env="OTHER")
    assert model_identity(a) == model_identity(same)
    assert model_identity(a) != model_identity(a.model_copy(update={"top_logprobs": 5}))


SERVER = ModelConfig(name="served", base_url="http://h:8000/v1")


@pytest.mark.parametrize("configured,model,base_url,expected", [
    (ModelConfig(), "m", ["http://a/v1"], {"name": "m", "base_url": "http://a/v1", "provider": "openai"}),
    (ModelConfig(), "m", ["http://a/v1", "http://b/v1"],
     {"name": "m", "base_url": ["http://a/v1", "http://b/v1"], "provider": "openai"}),
    (ModelConfig(), "path/to/model", None, {"name": "path/to/model", "provider": "transformers"}),
    (SERVER, "other", None, {"name": "other"}),  # the config names a server: only the name changes
    (ModelConfig(provider="vllm", name="x"), "y", None, {"name": "y"}),
    (ModelConfig(provider="transformers", name="x"), None, "http://a/v1", {"base_url": "http://a/v1", "provider": "openai"}),
    (SERVER, None, None, {}),
])
def test_one_rule_infers_the_provider_from_the_flags(configured, model, base_url, expected):
    assert model_flag_updates(configured, model=model, base_url=base_url) == expected


@pytest.mark.parametrize("model,base_url,needle", [("m", [""], "model.base_url: an empty URL"),
                                                   ("m", ["http://ok/v1", "oops"], "model.base_url: 'oops'"),
                                                   ("", None, "model.name is empty")])
def test_empty_or_bad_flags_are_errors_not_a_switch_to_a_local_model(model, base_url, needle):
    with pytest.raises(ConfigError, match=needle):
        model_flag_updates(ModelConfig(), model=model, base_url=base_url)


def test_denoise_and_eval_apply_the_same_rule():
    args = build_parser().parse_args(["denoise", "--model", "m", "--base-url", "http://a/v1",
                                      "--base-url", "http://b/v1"])
    assert vars(args)["model.base_url"] == ["http://a/v1", "http://b/v1"]
    overrides = settings_given(args, "denoise")
    assert overrides["model.base_url"] == ["http://a/v1", "http://b/v1"] and overrides["model.provider"] == "openai"
    config = load_config(None, overrides)
    evaluated = eval_model_config(load_config(), model="m", base_url=["http://a/v1", "http://b/v1"])
    assert (config.model.provider, config.model.base_url) == (evaluated.provider, evaluated.base_url)
    assert eval_model_config(load_config(), model="some/dir").provider == "transformers"
    for command in ("eval", "ablate"):
        parsed = build_parser().parse_args([command, "--base-url", "http://a/v1", "--base-url", "http://b/v1"])
        assert vars(parsed)["model.base_url"] == ["http://a/v1", "http://b/v1"]


def test_an_empty_base_url_flag_exits_2_with_the_fix(tmp_path, capsys):
    data = tmp_path / "d.csv"
    data.write_text("question,answer\nq,a\n")
    code = main(["denoise", "--data", str(data), "--model", "m", "--base-url", "", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "model.base_url (--base-url): an empty URL" in err and "http://127.0.0.1:8000/v1" in err
    assert not (tmp_path / "o").exists()
    code = main(["eval", "--data", str(data), "--model", "m", "--base-url", "localhost:8000"])
    assert code == 2 and "must start with http:// or https://" in capsys.readouterr().err


def test_a_role_may_override_every_model_setting_with_the_same_checks():
    from robustft.config import ModelOverride

    assert list(ModelOverride.model_fields) == list(ModelConfig.model_fields)
    for name, info in ModelOverride.model_fields.items():
        shared = ModelConfig.model_fields[name]
        assert info.default is None and info.metadata == shared.metadata and info.description == shared.description
    with pytest.raises(ConfigError, match=r"field 'roles.judge.temperature'.*greater than or equal to 0"):
        load_config(None, {"roles": {"judge": {"temperature": -1}}})
    with pytest.raises(ConfigError, match=r"field 'roles.judge.base_url'.*must start with http"):
        load_config(None, {"roles": {"judge": {"base_url": "h:1/v1"}}})


def test_a_new_model_setting_is_overridable_without_touching_the_override():
    from pydantic import Field

    from robustft.config import ModelOverride, overrides_of

    class Wider(ModelConfig):  # what adding a field to ModelConfig does
        top_k: int = Field(40, gt=0, description="Sample from the k most likely tokens.")

    WiderOverride = overrides_of(Wider, ModelOverride.__base__, "WiderOverride")
    change = WiderOverride(top_k=5, temperature=0.1)
    assert change.model_dump(exclude_unset=True) == {"top_k": 5, "temperature": 0.1}
    assert WiderOverride().top_k is None
    with pytest.raises(ValueError, match="greater than 0"):
        WiderOverride(top_k=0)
    resolved = Wider(**{**Wider(name="m").model_dump(), **change.model_dump(exclude_unset=True)})
    assert (resolved.top_k, resolved.temperature, resolved.name) == (5, 0.1, "m")


def test_a_backends_options_sit_beside_the_shared_settings_and_go_with_its_provider():
    config = load_config(None, {"model": {"provider": "transformers", "name": "tiny", "device": "cpu", "batch_size": 4},
                                "roles": {"reviewer": {"batch_size": 8},
                                          "judge": {"provider": "openai", "base_url": "http://h/v1"}}})
    assert config.model.options == {"device": "cpu", "batch_size": 4}
    assert config.model_for("base").options == {"device": "cpu", "batch_size": 4}
    assert config.model_for("reviewer").options == {"device": "cpu", "batch_size": 8}
    assert config.model_for("judge").options == {}  # openai has no device
    assert config.public_dict()["model"]["device"] == "cpu"  # summary.json keeps the keys where the YAML has them


def test_eval_takes_the_eval_batch_size_for_a_local_model_only_and_drops_another_backends_options():
    config = load_config(None, {"model": {"provider": "openai", "name": "m", "base_url": "http://h/v1",
                                          "batch_discount": 0.25}, "eval.batch_size": 3})
    assert eval_model_config(config).options == {"batch_discount": 0.25}
    config = load_config(None, {"model.batch_discount": 0.25, "eval.batch_size": 3})
    local = eval_model_config(config, model="path/to/model")
    assert local.provider == "transformers" and local.options == {"batch_size": 3}

"""Backends as plugins, and the pool that shares one backend instance between roles.

A backend is found by `model.provider` in the entry-point group `robustft.backends`. A package
registers one in its pyproject.toml:

    [project.entry-points."robustft.backends"]
    mybackend = "my_package.backend:MyBackend"

and `model: {provider: mybackend}` selects it; `MyBackend(config)` gets the `ModelConfig` and
implements `async generate(messages) -> Generation` (see `robustft.backends.base`). Its own
settings are `MyBackend.Options`, checked here when a run starts (`check_providers`). robustft's
own backends are registered the same way in its pyproject.toml; `BUILTIN` repeats those entries so
that a source tree whose package metadata is not installed (or is stale) still finds them.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable

from pydantic import BaseModel

from ..config import ModelConfig
from ..errors import ConfigError
from ..secrets import register_key_env
from .base import ChatBackend, Closable, NoOptions, options_of

ENTRY_POINT_GROUP = "robustft.backends"
BUILTIN = {
    "openai": "robustft.backends.openai:OpenAIChatModel",
    "transformers": "robustft.backends.transformers:TransformersChatModel",
    "vllm": "robustft.backends.vllm:VLLMChatModel",
    "fake": "robustft.backends.fake:FakeChatModel.from_config",
}


@lru_cache(maxsize=1)
def _scan() -> tuple[dict[str, EntryPoint], dict[str, list[str]]]:
    """(name -> entry point, name -> conflicting targets) for every backend installed."""
    found = {name: EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in BUILTIN.items()}
    conflicts: dict[str, list[str]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        known = found.get(ep.name)
        if known is not None and known.value != ep.value:
            conflicts.setdefault(ep.name, [known.value]).append(ep.value)
        found.setdefault(ep.name, ep)
    return found, conflicts


def refresh() -> None:
    """Forget what was found (after installing a backend package in a running process)."""
    _scan.cache_clear()


def registered_names() -> list[str]:
    return sorted(_scan()[0])


def check_provider(name: str) -> str:
    """`name` when a backend is registered under it, else ConfigError listing the registered ones."""
    if name not in _scan()[0]:
        raise ConfigError(f"model.provider: no backend named {name!r}; registered: {', '.join(registered_names())} "
                          f"(a backend package registers one in the entry-point group {ENTRY_POINT_GROUP!r})")
    return name


def check_providers(config: Any) -> None:
    """ConfigError naming the setting when a model of `config` (a RobustFTConfig) names no registered
    backend, or sets an option its backend does not have or a wrong value of one. A run checks this
    when it starts; the config itself checks only shapes."""
    places = [("model", config.model.provider, config.model)]
    places += [(f"roles.{role}", o.provider, config.model_for(role)) for role, o in config.roles.items()]
    for where, name, _ in places:
        if name is not None and name not in _scan()[0]:
            raise ConfigError(f"{where}.provider: no backend named {name!r}; registered: {', '.join(registered_names())} "
                              f"(a backend package registers one in the entry-point group {ENTRY_POINT_GROUP!r})")
    for where, _, model in places:
        backend_options(model, where)


def options_model(name: str) -> type[BaseModel]:
    """The `Options` model that the backend registered as `name` declares (`NoOptions` if none)."""
    factory = backend_factory(name)
    owner = getattr(factory, "__self__", factory)  # an entry point may name a classmethod (`Fake.from_config`)
    declared = getattr(owner, "Options", None)
    return declared if isinstance(declared, type) and issubclass(declared, BaseModel) else NoOptions


def backend_options(config: ModelConfig, where: str = "model") -> BaseModel:
    """`config`'s backend options, checked against its backend's `Options`; ConfigError naming
    `where` (model, roles.judge), the key, the provider and the fix."""
    return options_of(config, options_model(config.provider), where)


def backend_factory(name: str) -> Callable[[ModelConfig], Any]:
    found, conflicts = _scan()
    check_provider(name)
    if name in conflicts:
        raise ConfigError(f"model.provider {name!r} is registered by several packages ({', '.join(conflicts[name])}); "
                          "uninstall all but one")
    ep = found[name]
    try:
        return ep.load()
    except Exception as exc:  # noqa: BLE001 - a broken plugin is a configuration problem
        raise ConfigError(f"model.provider {name!r}: its backend {ep.value} could not be loaded: "
                          f"{type(exc).__name__}: {exc}") from None


def build_chat_model(config: ModelConfig) -> ChatBackend:
    """The backend named by `config.provider`, built from `config`."""
    register_key_env(config.api_key_env)  # every error from here on hides the key it is given
    backend_options(config)
    backend = backend_factory(config.provider)(config)
    if not callable(getattr(backend, "generate", None)):
        raise ConfigError(f"model.provider {config.provider!r}: {type(backend).__name__} has no generate(messages) method")
    return backend


class ModelPool:
    """One backend instance per distinct model config, shared by the roles that use it.

    Local models are large: two roles naming the same local model must not load it twice.
    `aclose()` releases every backend the pool built or was given that has an `aclose`.
    """

    def __init__(self) -> None:
        self._models: dict[str, ChatBackend] = {}
        self._owned: list[Any] = []

    def get(self, config: ModelConfig) -> ChatBackend:
        key = config.model_dump_json()
        model = self._models.get(key)
        if model is None:
            model = build_chat_model(config)
            self._owned.append(model)
            self._models[key] = model
        return model

    def backends(self) -> list[Any]:
        """Every distinct backend in the pool."""
        return list({id(m): m for m in [*self._owned, *self._models.values()]}.values())

    def add(self, config: ModelConfig, model: ChatBackend) -> None:
        """Use `model` for `config` (tests inject scripted models this way)."""
        self._models[config.model_dump_json()] = model

    async def aclose(self) -> None:
        seen: set[int] = set()
        for model in [*self._owned, *self._models.values()]:
            if id(model) in seen or not isinstance(model, Closable):
                continue
            seen.add(id(model))
            await model.aclose()

"""Discovering and loading plugins (entry point group ``fourm``).

Loading is lazy (the first call of :func:`get_manager` does it), happens in a fixed order (sorted by
entry point name) and ends with a check that every implemented hook exists. Two environment variables
help debugging and tests:

``FOURM_PLUGINS=a,b``           load only these modality plugins (the command plugins ``core``, ``trainers``
                                and ``quickstart`` still load)
``FOURM_DISABLE_PLUGINS=a,b``   never load these plugins (built-ins included)
"""

from __future__ import annotations

import importlib.metadata as metadata
import inspect
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .errors import DuplicateModalityError, FourmError, PluginLoadError, PluginValidationError, SpecError
from .specs import ModalitySet, ModalitySpec

ENTRY_POINT_GROUP = "fourm"
#: Plugins that provide commands rather than modalities; ``FOURM_PLUGINS`` does not filter them out.
BUILTIN_PLUGINS = ("core", "trainers", "quickstart")


@attrs.frozen
class PluginInfo:
    name: str  # entry point name
    module: str  # entry point value
    distribution: str
    version: str
    hooks: tuple[str, ...]


def _env_list(env: Mapping[str, str], key: str) -> set[str] | None:
    raw = env.get(key)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


class PluginManager:
    """Loads the plugins and builds the :class:`ModalitySet` from them."""

    def __init__(self, *, entry_points: Iterable[metadata.EntryPoint] | None = None,
                 env: Mapping[str, str] | None = None, modules: Iterable[tuple[str, Any]] = ()):
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._env = os.environ if env is None else env
        self._entry_points = entry_points
        self._extra_modules = tuple(modules)
        self._infos: dict[str, PluginInfo] = {}
        self._modalities: ModalitySet | None = None
        self._loaded = False
        self._lock = threading.RLock()

    # -- loading ---------------------------------------------------------------------------------
    def load(self) -> PluginManager:
        with self._lock:
            if self._loaded:
                return self
            eps = self._entry_points
            if eps is None:
                eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
            only = _env_list(self._env, "FOURM_PLUGINS")
            disabled = _env_list(self._env, "FOURM_DISABLE_PLUGINS") or set()
            eps = sorted(eps, key=lambda e: e.name)
            if only is not None:
                unknown = sorted(only - {ep.name for ep in eps})
                if unknown:
                    installed = ", ".join(ep.name for ep in eps) or "none"
                    raise PluginLoadError(
                        f"FOURM_PLUGINS names {', '.join(map(repr, unknown))}, which is not an installed fourm "
                        f"plugin; installed plugins: {installed}"
                    )
            seen: dict[str, str] = {}
            for ep in eps:
                if ep.name in disabled:
                    continue
                if only is not None and ep.name not in only and ep.name not in BUILTIN_PLUGINS:
                    continue
                dist_name, dist_version = _distribution_of(ep)
                if ep.name in seen:
                    raise PluginLoadError(
                        f"two distributions declare the fourm plugin {ep.name!r}: {seen[ep.name]} and {dist_name}; "
                        f"uninstall one of them"
                    )
                seen[ep.name] = dist_name
                try:
                    module = ep.load()
                except Exception as exc:  # noqa: BLE001 - re-raised with the plugin named
                    raise PluginLoadError(
                        f"fourm plugin {ep.name!r} (entry point '{ep.name} = {ep.value}' of distribution "
                        f"{dist_name} {dist_version}) failed to import: {type(exc).__name__}: {exc}. "
                        f"Fix or reinstall {dist_name}, or skip it with FOURM_DISABLE_PLUGINS={ep.name}"
                    ) from exc
                self._register(ep.name, ep.value, module, dist_name, dist_version)
            for name, module in self._extra_modules:
                self._register(name, getattr(module, "__name__", name), module, name, "0")
            self._loaded = True
            return self

    def _register(self, name: str, value: str, module: Any, dist: str, version: str) -> None:
        known = {n for n in dir(hookspecs) if n.startswith("fourm_")}
        for attr in dir(module):
            obj = getattr(module, attr, None)
            if attr.startswith("fourm_") and callable(obj) and attr not in known and inspect.isfunction(obj):
                raise PluginValidationError(
                    f"fourm plugin {name!r} ({dist}) defines {attr!r}, which is not a fourm hook; "
                    f"known hooks: {', '.join(sorted(known))}. Is it misspelt?"
                )
        try:
            self._pm.register(module, name=name)
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginValidationError(f"fourm plugin {name!r} ({dist}) is invalid: {exc}") from exc
        hooks = tuple(sorted(h.name for h in self._pm.get_hookcallers(module) or ()))
        self._infos[name] = PluginInfo(name=name, module=value, distribution=dist, version=version, hooks=hooks)

    # -- queries ---------------------------------------------------------------------------------
    @property
    def pluggy(self) -> pluggy.PluginManager:
        return self.load()._pm

    def plugins(self) -> list[PluginInfo]:
        self.load()
        return [self._infos[k] for k in sorted(self._infos)]

    def modalities(self) -> ModalitySet:
        """All registered modalities (built once, then cached)."""
        with self._lock:
            if self._modalities is not None:
                return self._modalities
            self.load()
            specs: list[ModalitySpec] = []
            owners: dict[str, str] = {}
            for impl in self._pm.hook.fourm_register_modalities.get_hookimpls():
                info = self._infos.get(impl.plugin_name)
                dist = info.distribution if info else impl.plugin_name
                version = info.version if info else None

                def register(spec: ModalitySpec, *, _dist=dist, _version=version, _name=impl.plugin_name) -> None:
                    if not isinstance(spec, ModalitySpec):
                        raise SpecError(
                            f"fourm plugin {_name!r} ({_dist}) called register() with a {type(spec).__name__}; "
                            f"pass a fourm_registry.ModalitySpec"
                        )
                    spec = attrs.evolve(spec, plugin=_dist, version=spec.version or _version)
                    specs.append(spec)
                    owners[spec.name] = _dist

                try:
                    impl.function(register=register)
                except FourmError as exc:
                    if isinstance(exc, SpecError) and not str(exc).startswith("fourm plugin "):
                        raise SpecError(f"fourm plugin {impl.plugin_name!r} ({dist}): {exc}") from exc
                    raise
                except (TypeError, ValueError) as exc:
                    raise SpecError(f"fourm plugin {impl.plugin_name!r} ({dist}) registered an invalid modality: {exc}") from exc
            try:
                self._modalities = ModalitySet(specs)
            except DuplicateModalityError:
                raise
            return self._modalities

    def register_commands(self, cli: Any) -> None:
        self.load()
        self._pm.hook.fourm_register_commands(cli=cli)


_manager: PluginManager | None = None
_manager_lock = threading.Lock()


def get_manager() -> PluginManager:
    """The process-wide plugin manager (created and loaded on first use)."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = PluginManager()
        return _manager.load()


def reset_manager() -> None:
    """Forget the loaded plugins (tests; after installing a plugin in-process)."""
    global _manager
    with _manager_lock:
        _manager = None


def get_modalities() -> ModalitySet:
    """Every modality registered by the installed plugins."""
    return get_manager().modalities()


def _distribution_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is not None:
        return dist.metadata["Name"], dist.version
    return f"{ep.value} (no distribution)", "?"

"""Finding and loading plugins: every plugin, built-in or field-installed, comes through
the ``dicombox`` entry-point group, and ``[plugins] disabled`` keeps any of them out.

Field-installed plugins live in the plugin environment this process was started with
(``dicombox.core.plugin_env``). That folder is added to the end of ``sys.path``, so its
wheels' entry points are found the same way as the built-in ones, while nothing in it
can shadow the core or a library the box itself installed. When a bundle provides an
entry point of the same name as a built-in plugin, the bundle's wins: that is how a
field update replaces a service.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pluggy

from dicombox.core import hookspecs, plugin_env

log = logging.getLogger("dicombox.plugins")
BUILT_IN = "built-in"


@dataclass(frozen=True)
class PluginInfo:
    name: str
    module: str
    version: str
    distribution: str
    enabled: bool
    error: str = ""
    source: str = BUILT_IN  # built-in, installed (beside the core), or "bundle NAME VERSION"


def _version_of(ep: EntryPoint, module: object) -> tuple[str, str]:
    dist = ep.dist
    version = getattr(module, "__version__", None) or (dist.version if dist else "?")
    return str(version), dist.name if dist else "?"


def _use_environment(env: Path) -> None:
    if str(env) not in sys.path:
        sys.path.append(str(env))


def _source(ep: EntryPoint, env: Path | None, bundle: str) -> str:
    if env is not None and ep.dist is not None and plugin_env.is_inside(ep.dist, env):
        return f"bundle {bundle}"
    if ep.dist is None or ep.dist.name == hookspecs.PROJECT:
        return BUILT_IN
    return "installed"


def _candidates(env: Path | None) -> list[tuple[EntryPoint, str]]:
    """One entry point per plugin name, with where it comes from; a bundle's beats any
    other of the same name."""
    bundle = plugin_env.label(env)
    chosen: dict[str, tuple[EntryPoint, str]] = {}
    for ep in entry_points(group=hookspecs.PROJECT):
        source = _source(ep, env, bundle)
        if ep.name in chosen:
            kept = chosen[ep.name][1]
            if source.startswith("bundle ") and not kept.startswith("bundle "):
                log.info("plugin %s: the one from %s replaces the %s one", ep.name, source, kept)
                chosen[ep.name] = (ep, source)
            else:
                log.warning(
                    "plugin %s: %s (%s) is ignored, one is loaded already",
                    ep.name,
                    ep.value,
                    source,
                )
            continue
        chosen[ep.name] = (ep, source)
    return [chosen[name] for name in sorted(chosen)]


def discover(disabled: list[str] | None = None) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """Load every enabled plugin; a plugin that fails to import is reported, not fatal
    (the box runs on without it; ``dicombox plugins install`` refuses a bundle whose
    plugin does this, by looking at the error recorded here)."""
    disabled_set = set(disabled or [])
    env = plugin_env.pinned()
    if env is not None:
        _use_environment(env)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    for ep, source in _candidates(env):
        dist_name = ep.dist.name if ep.dist else "?"
        if ep.name in disabled_set:
            infos.append(PluginInfo(ep.name, ep.value, "", dist_name, False, source=source))
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # a broken field plugin must not take the box down
            log.error("plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)
            error = f"{type(exc).__name__}: {exc}"
            infos.append(PluginInfo(ep.name, ep.value, "", dist_name, False, error, source))
            continue
        version, dist = _version_of(ep, module)
        infos.append(PluginInfo(ep.name, ep.value, version, dist, True, source=source))
    return pm, infos


def config_sections(pm: pluggy.PluginManager) -> dict[str, type]:
    sections: dict[str, type] = {}
    for contributed in pm.hook.dicombox_config_sections():
        sections.update(contributed)
    return sections


def register_hal_drivers(pm: pluggy.PluginManager) -> None:
    """Register the hardware drivers the plugins contribute (``dicombox_hal_drivers``);
    a plugin whose drivers cannot be registered costs those drivers, not the box."""
    for impl in pm.hook.dicombox_hal_drivers.get_hookimpls():
        try:
            entries = impl.function() or []
        except Exception as exc:
            log.error("plugin %s: its hardware drivers failed: %s", impl.plugin_name, exc)
            continue
        for entry in entries:
            try:
                entry.register()
            except Exception as exc:
                log.error("plugin %s: driver not registered: %s", impl.plugin_name, exc)

"""Finding and loading plugins: every plugin, built-in or field-installed, comes through
the ``dicombox`` entry-point group, and ``[plugins] disabled`` keeps any of them out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

import pluggy

from dicombox.core import hookspecs

log = logging.getLogger("dicombox.plugins")


@dataclass(frozen=True)
class PluginInfo:
    name: str
    module: str
    version: str
    distribution: str
    enabled: bool
    error: str = ""


def _version_of(ep: EntryPoint, module: object) -> tuple[str, str]:
    dist = ep.dist
    version = getattr(module, "__version__", None) or (dist.version if dist else "?")
    return str(version), dist.name if dist else "?"


def discover(disabled: list[str] | None = None) -> tuple[pluggy.PluginManager, list[PluginInfo]]:
    """Load every enabled plugin; a plugin that fails to import is reported, not fatal."""
    disabled_set = set(disabled or [])
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []
    for ep in sorted(entry_points(group=hookspecs.PROJECT), key=lambda e: e.name):
        if ep.name in disabled_set:
            infos.append(PluginInfo(ep.name, ep.value, "", ep.dist.name if ep.dist else "?", False))
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # a broken field plugin must not take the box down
            log.error("plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)
            infos.append(PluginInfo(ep.name, ep.value, "", "?", False, error=str(exc)))
            continue
        version, dist = _version_of(ep, module)
        infos.append(PluginInfo(ep.name, ep.value, version, dist, True))
    return pm, infos


def config_sections(pm: pluggy.PluginManager) -> dict[str, type]:
    sections: dict[str, type] = {}
    for contributed in pm.hook.dicombox_config_sections():
        sections.update(contributed)
    return sections

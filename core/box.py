"""The Box: everything the host shares with plugins, built once per process.

A plugin's hooks get the Box and reach the configuration, the store, the index, the job
queue and the event bus through it; nothing is global.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from dicombox.core import plugins as plugin_loader
from dicombox.core.audit import AuditTrail
from dicombox.core.config import Config, ConfigError, PluginsSection, load_config, load_section
from dicombox.core.events import EventBus
from dicombox.core.index.engine import close_engine, open_engine, sqlite_url
from dicombox.core.index.study_index import StudyIndex
from dicombox.core.jobs import JobQueue
from dicombox.core.store import InstanceStore

log = logging.getLogger("dicombox")


@dataclass
class Box:
    config: Config
    pm: pluggy.PluginManager
    plugin_infos: list[plugin_loader.PluginInfo]
    bus: EventBus
    store: InstanceStore
    index: StudyIndex
    jobs: JobQueue
    audit: AuditTrail
    role: str = "cli"  # supervisor | worker | cli

    @property
    def hook(self) -> Any:
        return self.pm.hook

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    def section(self, name: str) -> Any:
        """A plugin-owned configuration section (already validated)."""
        return self.config.extra[name]

    def local_ae_titles(self) -> list[str]:
        titles = [self.config.box.ae_title]
        for extra in self.hook.dicombox_local_ae_titles(box=self):
            titles.extend(t for t in extra if t not in titles)
        return titles

    def close(self) -> None:
        try:
            self.audit.close()  # first: what it still has to say may need the index
            close_engine(self.index.engine)
        finally:
            self.store.close()


def load_plugins_and_config(
    config_path: str | Path | None, **box_overrides: Any
) -> tuple[Config, pluggy.PluginManager, list[plugin_loader.PluginInfo]]:
    """Read the configuration, with the sections the enabled plugins contribute.

    ``[plugins] disabled`` decides which plugins load, so it is read first on its own.
    The plugins' hardware drivers are registered before the rest is read: a section
    that names a driver is checked against those known."""
    pm, infos = plugin_loader.discover(_disabled_plugins(config_path))
    plugin_loader.register_hal_drivers(pm)
    config = load_config(config_path, plugin_loader.config_sections(pm))
    return config.with_overrides(**box_overrides), pm, infos


def _disabled_plugins(config_path: str | Path | None) -> list[str]:
    if config_path is None:
        return []
    try:
        data = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
        table = data.get("plugins", {})
        return list(load_section(PluginsSection, table, "plugins").disabled)
    except (OSError, tomllib.TOMLDecodeError, ConfigError, AttributeError):
        return []  # load_config reports the problem properly in a moment


def open_box(
    config: Config,
    pm: pluggy.PluginManager,
    infos: list[plugin_loader.PluginInfo],
    role: str = "cli",
) -> Box:
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "run").mkdir(exist_ok=True)
    store = InstanceStore(data_dir, config.storage.reserve_mb << 20, config.storage.directory_fsync)
    index = StudyIndex(open_engine(sqlite_url(data_dir.resolve())))
    bus = EventBus()
    audit = AuditTrail(data_dir / "audit", config, index.engine)
    bus.subscribe("*", audit)
    return Box(
        config=config,
        pm=pm,
        plugin_infos=infos,
        bus=bus,
        store=store,
        index=index,
        jobs=JobQueue(index.engine),
        audit=audit,
        role=role,
    )

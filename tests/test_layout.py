"""The import rules of the design: the core knows no plugin and no hardware; hardware
knows nothing above it; plugins never import each other."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMPORT = re.compile(r"^\s*(?:from|import)\s+dicombox\.(\w+)(?:\.(\w+))?", re.M)


def imports(folder: str) -> list[tuple[Path, str, str]]:
    found = []
    for path in (ROOT / folder).rglob("*.py"):
        for match in IMPORT.finditer(path.read_text()):
            found.append((path, match.group(1), match.group(2) or ""))
    return found


def test_core_imports_no_plugin_and_no_hal():
    assert [str(p) for p, wing, _ in imports("core") if wing in ("plugins", "hal")] == []


def test_hal_imports_nothing_above_it():
    assert [str(p) for p, wing, _ in imports("hal") if wing in ("plugins", "core")] == []


def test_plugins_do_not_import_each_other():
    crossing = []
    for path, wing, name in imports("plugins"):
        own = path.relative_to(ROOT / "plugins").parts[0].removesuffix(".py")
        if wing == "plugins" and name != own:
            crossing.append(f"{path} imports plugin {name}")
    assert crossing == []

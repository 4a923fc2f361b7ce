"""Building dicombox the way `make run` and the image do (pip, isolated build) gives
clean metadata and none of the setuptools deprecation warnings it used to print."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_is_an_spdx_expression_with_no_license_classifier():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))


def test_a_wheel_builds_without_setuptools_warnings(tmp_path: Path):
    # A copy, so the build leaves no build/ folder in the working tree.
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("core", "hal", "plugins"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "out"), str(src)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = built.stdout + built.stderr
    assert built.returncode == 0, output
    for warning in (
        "project.license",
        "License classifiers are deprecated",
        "absent from the `packages` configuration",
    ):
        assert warning not in output, output
    (wheel,) = (tmp_path / "out").glob("dicombox-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert b"\nLicense-Expression: MIT\n" in metadata
    # The web console's pages and assets are still in the wheel.
    assert "dicombox/plugins/web/templates/base.html" in names
    assert "dicombox/plugins/web/static/console.css" in names

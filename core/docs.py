"""The generated documents: the configuration reference and the conformance statement.

``dicombox docs --write docs`` (or ``make docs``, or ``python -m dicombox.core.docs``)
writes them from the code: the configuration sections' definitions, the core's and every
loaded plugin's, and what the plugins register for ``dicombox conformance``. Both are
made with the embedded defaults, never the site's configuration, and hold nothing of the
machine or the day they were made, so the same code always gives the same bytes.
``--check`` says which committed file is stale instead of writing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pluggy

from dicombox.core import plugins as plugin_loader
from dicombox.core.box import open_box
from dicombox.core.config import ARRAY_SECTIONS, CORE_SECTIONS, load_config
from dicombox.core.config_docs import SectionDoc, configuration_reference
from dicombox.core.conformance import render_markdown, statement_rows

CONFIGURATION = "configuration.md"
CONFORMANCE = "conformance.md"
# The hand-written half of the statement, which the generated half points to.
SEE_ALSO = """\
With the embedded defaults. How the box behaves within these services (matching,
retrieves, association policy, statuses) is in
[conformance-behaviour.md](conformance-behaviour.md); where the seeds differ, the choices
made are in [conformance-choices.md](conformance-choices.md)."""
REGENERATE = "make docs  (or: dicombox docs --write docs)"


def _banner(what: str) -> str:
    return (
        f"<!-- Generated from {what} by `dicombox docs --write docs` (`make docs`). "
        "Do not edit by hand: change the code and regenerate. -->"
    )


def config_sections(pm: pluggy.PluginManager) -> list[SectionDoc]:
    """Every section: the core's in their order, then each plugin's by plugin name."""
    sections = [
        SectionDoc(name, cls, name in ARRAY_SECTIONS, "") for name, cls in CORE_SECTIONS.items()
    ]
    impls = pm.hook.dicombox_config_sections.get_hookimpls()
    for impl in sorted(impls, key=lambda i: i.plugin_name):
        for name, cls in impl.function().items():
            repeated = bool(getattr(cls, "repeated", False))
            sections.append(SectionDoc(name, cls, repeated, impl.plugin_name))
    return sections


def configuration_md(pm: pluggy.PluginManager) -> str:
    banner = _banner("the definitions of the configuration sections (their docstrings)")
    return configuration_reference(config_sections(pm), banner)


def conformance_md(pm: pluggy.PluginManager, infos: list[plugin_loader.PluginInfo]) -> str:
    """The statement for a box with the embedded defaults, opened on a scratch folder so
    that no data folder is touched."""
    with tempfile.TemporaryDirectory(prefix="dicombox-docs-") as scratch:
        config = load_config(None, plugin_loader.config_sections(pm))
        box = open_box(config.with_overrides(data_dir=scratch), pm, infos)
        try:
            statement = render_markdown(box, statement_rows(box), SEE_ALSO)
        finally:
            box.close()
    return f"{_banner('`dicombox conformance --markdown`')}\n\n{statement}"


def generate() -> dict[str, str]:
    """File name -> content of every generated document."""
    pm, infos = plugin_loader.discover()
    return {CONFIGURATION: configuration_md(pm), CONFORMANCE: conformance_md(pm, infos)}


def stale(folder: Path, documents: dict[str, str]) -> list[str]:
    """The documents whose committed copy in ``folder`` differs from ``documents``."""
    out = []
    for name, text in documents.items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(name)
    return out


def run(args: argparse.Namespace) -> int:
    if not (args.check or args.write):
        print("dicombox docs: say where: --write DIR (e.g. docs) or --check DIR", file=sys.stderr)
        return 2
    folder = Path(args.check or args.write)
    documents = generate()
    if args.check:
        old = stale(folder, documents)
        for name in old:
            print(f"{folder / name} is stale; regenerate it with: {REGENERATE}")
        if not old:
            print(f"{', '.join(str(folder / n) for n in documents)}: up to date")
        return 1 if old else 0
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in documents.items():
        (folder / name).write_text(text, encoding="utf-8")
        print(f"wrote {folder / name} ({text.count(chr(10))} lines)")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--write", metavar="DIR", help="write the documents into DIR (docs)")
    what.add_argument("--check", metavar="DIR", help="exit 1 if DIR's copies are stale")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dicombox.core.docs",
        description="write the configuration reference and the conformance statement",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

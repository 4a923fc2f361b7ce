"""The documentation: the generated files match the code, the README stays short, and
every relative link in README.md and docs/ leads to a file and heading that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dicombox.core import plugins as plugin_loader
from dicombox.core.config_docs import anchor, undocumented_keys
from dicombox.core.docs import CONFIGURATION, CONFORMANCE, REGENERATE, config_sections, generate
from tests.support.boxproc import run_cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")


@pytest.fixture(scope="module")
def fresh() -> dict[str, str]:
    return generate()


@pytest.mark.parametrize("name", [CONFIGURATION, CONFORMANCE])
def test_the_committed_generated_document_is_up_to_date(fresh: dict[str, str], name: str):
    committed = (DOCS / name).read_text(encoding="utf-8")
    assert committed == fresh[name], f"docs/{name} is stale; regenerate it with: {REGENERATE}"


def test_every_configuration_key_has_a_description():
    pm, _ = plugin_loader.discover()
    assert undocumented_keys(config_sections(pm)) == [], (
        "document each key with a docstring under its field, then run " + REGENERATE
    )


def test_the_reference_shows_each_key_with_type_default_and_description():
    text = (DOCS / CONFIGURATION).read_text(encoding="utf-8")
    assert (
        '| `duplicates` | one of `"keep-first"`, `"replace"`, `"keep-both"`, `"reject"` | '
        '`"keep-first"` | A SOP instance that is already stored.' in text
    )
    assert "### `[[printer]]`\n\nFrom the `print` plugin." in text
    assert '| `keys` | table | `{ A = "UP", B = "DOWN", E = "OK", F = "BACK" }` |' in text
    assert "| `name` | string | required | What rules and the CLI call it. |" in text


def test_the_statement_lists_every_service_the_plugins_register():
    text = (DOCS / CONFORMANCE).read_text(encoding="utf-8")
    for heading in (
        "### Storage: SCP",
        "### Storage Commitment: SCP",
        "### Query/Retrieve: SCP, SCU",
        "### Modality Worklist: SCP",
        "### Print: SCP",
        "### Verification: SCP, SCU",
    ):
        assert heading in text
    assert "| Siemens CSA Non-Image Storage | `1.3.12.2.1107.5.9.1` |" in text


def test_docs_check_names_the_stale_file_and_how_to_regenerate(tmp_path: Path):
    bare = run_cli("docs")
    assert bare.returncode == 2 and "--write DIR" in bare.stderr
    written = run_cli("docs", "--write", str(tmp_path))
    assert written.returncode == 0, written.stderr
    for name in (CONFIGURATION, CONFORMANCE):
        assert (tmp_path / name).read_text() == (DOCS / name).read_text()
    assert run_cli("docs", "--check", str(tmp_path)).returncode == 0

    (tmp_path / CONFORMANCE).write_text("# an old statement\n")
    checked = run_cli("docs", "--check", str(tmp_path))
    assert checked.returncode == 1
    assert f"{tmp_path / CONFORMANCE} is stale" in checked.stdout
    assert "make docs" in checked.stdout and CONFIGURATION not in checked.stdout


def test_the_readme_is_at_most_200_lines():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 200, f"README.md has {lines} lines: move reference material to docs/"


def _anchors(path: Path) -> set[str]:
    """The anchors GitHub makes of a Markdown file's headings (a repeated one gets -1 …)."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, re.M):
        slug = anchor(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def _links(path: Path) -> list[str]:
    text = CODE.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))
    return LINK.findall(text)


def test_github_anchors_are_made_as_github_makes_them():
    assert anchor("`[[remote]]`") == "remote"
    assert anchor("Query/Retrieve: SCP, SCU") == "queryretrieve-scp-scu"
    assert anchor("Robustness: what the fault tests prove") == (
        "robustness-what-the-fault-tests-prove"
    )
    assert anchor("The `dicombox` command") == "the-dicombox-command"


def test_every_relative_link_leads_to_a_file_and_heading_that_exist():
    broken = []
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    for page in pages:
        for target in _links(page):
            if re.match(r"[a-z]+:", target):
                continue  # http:, https:, mailto:
            file_part, _, fragment = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            where = f"{page.relative_to(ROOT)}: {target}"
            if not dest.exists():
                broken.append(f"{where} (no such file)")
            elif fragment and dest.suffix == ".md" and fragment not in _anchors(dest):
                broken.append(f"{where} (no such heading)")
    assert broken == []
    assert len(pages) >= 9  # the README and every document of docs/

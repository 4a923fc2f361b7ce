"""The conformance statement: what the loaded plugins register, as ``dicombox
conformance`` prints it (a table, JSON, or Markdown for the documentation)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pydicom.uid import UID

from dicombox.core import __version__
from dicombox.core.config_docs import anchor
from dicombox.core.tables import format_table

if TYPE_CHECKING:
    from dicombox.core.box import Box


def statement_rows(box: Box) -> list[dict[str, Any]]:
    """Every plugin's rows: ``{"service", "sop_class", "uid", "role",
    "transfer_syntaxes", "notes"}``."""
    return [row for batch in box.hook.dicombox_conformance(box=box) for row in batch]


def _identity(box: Box) -> list[tuple[str, str]]:
    net = box.config.network
    return [
        ("Implementation Class UID", net.implementation_class_uid),
        ("Implementation Version Name", net.implementation_version),
        ("AE titles", ", ".join(box.local_ae_titles())),
        ("Port", str(box.config.box.port)),
    ]


def render_text(box: Box, rows: list[dict[str, Any]]) -> str:
    net = box.config.network
    head = [
        f"dicombox {__version__} conformance statement (generated from the loaded plugins)",
        f"Implementation Class UID: {net.implementation_class_uid}",
        f"Implementation Version Name: {net.implementation_version}",
        f"AE titles: {', '.join(box.local_ae_titles())}; port {box.config.box.port}",
        "",
    ]
    table = format_table(
        [
            [r["service"], r["sop_class"], r["uid"], r["role"], str(len(r["transfer_syntaxes"]))]
            for r in rows
        ],
        ["SERVICE", "SOP CLASS", "UID", "ROLE", "SYNTAXES"],
    )
    return "\n".join(head) + "\n" + table


def syntax_text(syntax: str) -> str:
    """A transfer syntax by its name and UID; what is not a UID (an application profile,
    "as stored") as given."""
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)+", syntax):
        return syntax
    name = UID(syntax).name
    return f"{name} `{syntax}`" if name != syntax else f"`{syntax}`"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _groups(rows: list[dict[str, Any]]) -> list[tuple[str, str, list[str], list[dict[str, Any]]]]:
    """Rows gathered by service, role and transfer syntaxes, in a stable order."""
    groups: dict[tuple[str, str, tuple[str, ...]], list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["service"], row["role"], tuple(row["transfer_syntaxes"]))
        groups.setdefault(key, []).append(row)
    order = sorted(groups, key=lambda key: (key[0].lower(), key[1]))
    return [(service, role, list(syntaxes), groups[(service, role, syntaxes)])
            for service, role, syntaxes in order]  # fmt: skip


def render_markdown(box: Box, rows: list[dict[str, Any]], preface: str = "") -> str:
    """The statement as Markdown: who the box says it is, a summary of the services, and
    each group of SOP classes with its role and transfer syntaxes. ``preface`` goes
    before the services."""
    out = ["# Conformance statement", ""]
    out += [f"dicombox {__version__}, generated from what the loaded plugins register.", ""]
    out += [f"- {name}: `{value}`" for name, value in _identity(box)]
    out += ["", *([preface, ""] if preface else []), "## Services", ""]
    out += ["| service | role | SOP classes | transfer syntaxes |", "|---|---|---|---|"]
    groups = _groups(rows)
    seen: dict[str, int] = {}
    anchors = []
    for service, role, _, _ in groups:
        slug = anchor(f"{service}: {role}")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.append(slug if n == 0 else f"{slug}-{n}")
    for (service, role, syntaxes, members), slug in zip(groups, anchors, strict=True):
        out.append(
            f"| [{_cell(service)}](#{slug}) | {_cell(role)} | {len(members)} | {len(syntaxes)} |"
        )
    for service, role, syntaxes, members in groups:
        out += ["", f"### {service}: {role}", ""]
        out += ["Transfer syntaxes: " + ", ".join(syntax_text(s) for s in syntaxes) + ".", ""]
        out += ["| SOP class | UID | notes |", "|---|---|---|"]
        for r in members:
            uid = f"`{r['uid']}`" if r["uid"] else ""
            out.append(f"| {_cell(r['sop_class'])} | {uid} | {_cell(r.get('notes', ''))} |")
    return "\n".join(out) + "\n"

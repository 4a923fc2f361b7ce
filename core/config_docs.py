"""The configuration reference, written from the sections' own definitions.

A section is a dataclass; each of its keys is documented by the string right under the
field (an attribute docstring), and the section itself by the class docstring. This
module reads those strings from the source and lays every key out with its type, its
default and the values allowed, so the reference cannot drift from the code.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import textwrap
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from dicombox.core.config import keeps_other_keys

INTRO = """\
A single TOML file. Every key has a default, so an empty file runs the box, and so does
no file at all. A wrong key or value stops the box with a message that names the key,
the value and what is allowed; `dicombox config check FILE` checks a file before it is
used (exit 1 with the key, value and rule on error). A plugin may add sections of its
own. Every command reads the file given with `--config FILE`, else `$DICOMBOX_CONFIG`.
"""


@dataclass(frozen=True)
class SectionDoc:
    """One section as the reference shows it."""

    name: str
    cls: type
    repeated: bool  # written [[name]], one table per entry
    owner: str  # "" for the core, else the plugin's entry-point name

    @property
    def heading(self) -> str:
        return f"[[{self.name}]]" if self.repeated else f"[{self.name}]"


def key_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of the dataclass ``cls``, by field name."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # no source to read (built on the fly): no descriptions
        return {}
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef) or node.name != cls.__name__:
            continue
        for stmt, after in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                found[stmt.target.id] = inspect.cleandoc(after.value.value)
        break
    return found


def toml_value(value: Any) -> str:
    """``value`` as it would be written in the TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = (f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + ", ".join(items) + " }"
    return repr(value)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def type_text(tp: Any) -> str:
    """What a key takes, in the words of a TOML file."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(f"`{toml_value(a)}`" for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"list of {_plural(type_text(item))}"
    if origin is dict:
        return "table"
    if dataclasses.is_dataclass(tp):
        return "table"
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _plural(text: str) -> str:
    return text if text.startswith(("one of", "list", "table")) else f"{text}s"


def default_text(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        return f"`{toml_value(f.default)}`"
    if f.default_factory is not dataclasses.MISSING:
        return f"`{toml_value(f.default_factory())}`"
    return "required"


def _cell(text: str) -> str:
    """One table cell: a single line, with the table's own separator escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def section_table(cls: type) -> tuple[list[list[str]], list[str]]:
    """The rows of a section's table, and the keys that have no description."""
    hints = typing.get_type_hints(cls)
    docs = key_docs(cls)
    rows = []
    undocumented = []
    for f in dataclasses.fields(cls):
        if keeps_other_keys(f):
            continue
        doc = docs.get(f.name, "")
        if not doc:
            undocumented.append(f.name)
        rows.append([f"`{f.name}`", type_text(hints[f.name]), default_text(f), doc])
    return rows, undocumented


def undocumented_keys(sections: Iterable[SectionDoc]) -> list[str]:
    """``section.key`` for every key without a description."""
    return [f"{s.name}.{key}" for s in sections for key in section_table(s.cls)[1]]


def anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _render_section(section: SectionDoc) -> list[str]:
    out = [f"### `{section.heading}`", ""]
    if section.owner:
        out += [f"From the `{section.owner}` plugin.", ""]
    doc = inspect.getdoc(section.cls) or ""
    # A dataclass without a docstring gets its signature as one: that says nothing here.
    if doc and not doc.startswith(f"{section.cls.__name__}("):
        out += [doc, ""]
    rows, _ = section_table(section.cls)
    out += ["| key | type | default | description |", "|---|---|---|---|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    if any(keeps_other_keys(f) for f in dataclasses.fields(section.cls)):
        out += ["", "A driver that a plugin adds reads its own keys from this section too."]
    return [*out, ""]


def configuration_reference(sections: list[SectionDoc], banner: str) -> str:
    """The whole reference, as Markdown."""
    core = [s for s in sections if not s.owner]
    plugins = [s for s in sections if s.owner]
    out = [banner, "", "# Configuration reference", "", INTRO]

    def index(group: list[SectionDoc]) -> str:
        return ", ".join(f"[`{s.heading}`](#{anchor(s.name)})" for s in group)

    out += [f"Core sections: {index(core)}.", ""]
    if plugins:
        out += [f"Plugin sections: {index(plugins)}.", ""]
    out += ["## Core sections", ""]
    for section in core:
        out += _render_section(section)
    if plugins:
        out += [
            "## Plugin sections",
            "",
            "Each exists only while its plugin is loaded (`[plugins] disabled`).",
            "",
        ]
        for section in plugins:
            out += _render_section(section)
    return "\n".join(out).rstrip("\n") + "\n"

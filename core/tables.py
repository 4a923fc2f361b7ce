"""Aligned text tables, for the CLI verbs of the core and of the plugins."""

from __future__ import annotations

from typing import Any


def format_table(rows: list[list[Any]], headers: list[str]) -> str:
    """Rows as aligned columns under their headers."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=False))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)

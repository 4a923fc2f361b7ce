"""The worklist items and what their modalities reported of them (MPPS), for the
worklist page and ``GET /api/worklist``: the worklist plugin's own ``dicombox worklist
list --json``, run in the supervisor (see ``verbs``), since the console may not import
another plugin."""

from __future__ import annotations

import json
from typing import Any

from dicombox.plugins.web.console import Console


class WorklistError(RuntimeError):
    """The listing failed; the message is the verb's."""


def worklist_items(console: Console, everything: bool) -> list[dict[str, Any]]:
    """The scheduled items (``everything``: retired ones too). Raises VerbError when the
    worklist plugin is not enabled, WorklistError when its listing fails."""
    result = console.verbs.run(["worklist", "list", "--json", *(["--all"] if everything else [])])
    if not result.ok:
        raise WorklistError(result.message)
    try:
        items: list[dict[str, Any]] = json.loads(result.output)
    except ValueError:
        raise WorklistError(f"the worklist listing is not JSON: {result.message[:200]}") from None
    return items

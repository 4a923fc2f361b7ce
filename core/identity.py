"""The box's one identity on the wire: Implementation Class UID and Version Name.

The class UID sits under the 2.25 (UUID-derived) arc, which needs no registration and
belongs to nobody else. Both are configurable (``[network]``) for sites with a root of
their own.
"""

from __future__ import annotations

import uuid

IMPLEMENTATION_CLASS_UID = "2.25.146538184448950321445427290057983635702"
IMPLEMENTATION_VERSION_NAME = "DICOMBOX_1"


def new_uid() -> str:
    """A fresh UID under the 2.25 arc (used for objects the box itself creates)."""
    return f"2.25.{uuid.uuid4().int}"

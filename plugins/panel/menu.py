"""The key menu: OK opens it, UP and DOWN move, OK runs the entry, BACK leaves."""

from __future__ import annotations

from collections.abc import Sequence

from dicombox.core.hookspecs import PanelAction

MARK = "> "  # before the selected entry; the others are indented as much


class Menu:
    def __init__(self, actions: Sequence[PanelAction]) -> None:
        self.actions = list(actions)
        self.is_open = False
        self.selected = 0

    def open(self) -> None:
        self.is_open = bool(self.actions)
        self.selected = 0

    def close(self) -> None:
        self.is_open = False

    def press(self, key: str) -> PanelAction | None:
        """Handle a key of the open menu; the action to run when OK chose one."""
        if not self.is_open:
            return None
        count = len(self.actions)
        if key == "UP":
            self.selected = (self.selected - 1) % count
        elif key == "DOWN":
            self.selected = (self.selected + 1) % count
        elif key == "BACK":
            self.close()
        elif key == "OK":
            self.close()
            return self.actions[self.selected]
        return None

    def lines(self, rows: int) -> list[str]:
        """The page of entries holding the selected one, a page being ``rows`` entries
        (pages rather than scrolling: the entries stay where the eye found them)."""
        top = self.selected // rows * rows
        page = self.actions[top : top + rows]
        return [
            (MARK if top + i == self.selected else " " * len(MARK)) + action.label
            for i, action in enumerate(page)
        ]

"""The [commitment] configuration section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class CommitmentSection:
    """The storage commitment plugin: the SCP modalities ask, and the SCU that asks the
    remotes with `commit = true`."""

    enabled: bool = True
    """The SCP: answer modalities' N-ACTION requests."""
    report_on: Literal["same-or-new", "new"] = "same-or-new"
    """The SCP's report goes on the requestor's association while it still listens, else
    on a new one. `"new"`: always on a new association, to the `[[remote]]` with the
    caller's AE title."""
    report_retries: int = 3
    """A report on a new association that fails (no association, no answer, a failure
    status) is tried again this often; one the requestor has answered is never sent
    again."""
    after_burn: bool = False
    """Seed 001's way: commit only instances burned and verified on media. The media
    plugin records each as delivered to the remote `media`; the report waits for them."""
    burn_timeout_s: float = 86400.0
    """With `after_burn`: what is not burned by then is reported failed (Failure Reason
    0110, logged as "timed out")."""
    burn_check_s: float = 60.0
    """With `after_burn`: how often to look."""
    bundle: Literal["batch", "instance"] = "batch"
    """The SCU: one request for all a remote took during its `commit_delay_s`, or
    `"instance"`: one request each."""
    report_wait_s: float = 10.0
    """How long the SCU listens for the report on its own association before releasing
    it."""
    report_timeout_s: float = 3600.0
    """No report by then: ask again, up to `request_retries` times, then mark the
    instances refused, "timed out"."""
    request_retries: int = 2
    """How often the SCU asks again when no report came within `report_timeout_s`."""

    def validate(self, name: str) -> None:
        from dicombox.core.config import ConfigError

        if self.report_wait_s < 0 or self.report_timeout_s <= 0:
            raise ConfigError(f"[{name}] report_wait_s >= 0 and report_timeout_s > 0, please")

"""The [commitment] configuration section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class CommitmentSection:
    enabled: bool = True  # the SCP: answer N-ACTION requests from modalities
    # Where the SCP sends its report: on the requestor's association while it is still
    # open, else on a new one; or always on a new one (some modalities want that).
    report_on: Literal["same-or-new", "new"] = "same-or-new"
    report_retries: int = 3  # a report on a new association that fails is tried again
    # Seed 001: commit only what has been burned to media (the media plugin records each
    # burned and verified instance as delivered to the remote "media"); what is not
    # burned within burn_timeout_s is reported failed, "timed out".
    after_burn: bool = False
    burn_timeout_s: float = 86400.0
    burn_check_s: float = 60.0
    # The SCU: one request for all that a remote took within its commit_delay_s ("batch"),
    # or one request per instance.
    bundle: Literal["batch", "instance"] = "batch"
    report_wait_s: float = 10.0  # wait this long for the report on our association
    report_timeout_s: float = 3600.0  # no report by then: ask again (up to request_retries)
    request_retries: int = 2

    def validate(self, name: str) -> None:
        from dicombox.core.config import ConfigError

        if self.report_wait_s < 0 or self.report_timeout_s <= 0:
            raise ConfigError(f"[{name}] report_wait_s >= 0 and report_timeout_s > 0, please")

"""The burn job: a study (or several) onto disc, in the background.

The job builds the file-set (DICOMDIR, instances converted to the profile, IHE PDI
files) in a scratch folder of the store, masters the ISO image in-process, and has the
burner HAL write, verify and eject it, reporting progress at each step. A failure that
a fresh disc may cure (no disc, write error) is retried; a study that does not fit on
one disc is refused with its size. Burned and verified instances are recorded as
delivered to the remote "media", which storage commitment after burning waits for.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from dicombox.core.box import Box
from dicombox.core.index.deliveries import record_deliveries
from dicombox.core.jobs import Job, JobContext, PermanentJobError, TransientJobError
from dicombox.hal.burner import Burner, BurnerError, DiscTooSmall, NoMedia
from dicombox.hal.registry import DriverContext
from dicombox.plugins.media.deidentify import Deidentifier
from dicombox.plugins.media.fileset import build_fileset
from dicombox.plugins.media.iso import CAPACITY, master_iso
from dicombox.plugins.media.leftout import left_out_lines
from dicombox.plugins.media.pdi import VIEWER
from dicombox.plugins.media.settings import MediaSection, burner_registry

BURN = "burn"
MEDIA = "media"  # the deliveries "remote" of burned instances


def queue_burn(box: Box, settings: MediaSection, studies: list[str], **options: Any) -> int:
    """Queue one burn job for these studies (serialised on the one burner)."""
    payload_options = {k: v for k, v in options.items() if v}
    return box.jobs.enqueue(
        BURN,
        {"group": " ".join(studies), "items": studies, **payload_options},
        queue="burner",
        max_attempts=settings.retries + 1,
        retry_delay_s=10.0,
    )


def stored_instances(box: Box, studies: list[str]) -> list[tuple[str, Path]]:
    return [(uid, box.store.path(path)) for uid, path in box.index.study_instances(studies)]


def destination(box: Box, settings: MediaSection) -> str:
    """Where burned discs go, as the operator finds them."""
    return _destination(burner_for(box, settings))


def burner_for(box: Box, settings: MediaSection) -> Burner:
    """The burner ``[media] burner`` names, its options from ``[media]``."""
    registry = burner_registry(settings.burner)
    context = DriverContext(data_dir=box.config.data_dir)
    return registry.open(settings.burner, settings.burner_options(), context)


def run_burn(box: Box, settings: MediaSection, job: Job, progress: JobContext) -> list[str] | None:
    """Burn the job's studies; returns a line per instance left out (the job is then
    done with problems), or None when every instance is on the disc."""
    studies: list[str] = job.payload["items"]
    profile = job.payload.get("profile") or settings.profile
    copies = int(job.payload.get("copies") or settings.copies)
    instances = dict(stored_instances(box, studies))
    if not instances:
        raise PermanentJobError(f"none of the studies {', '.join(studies)} is stored")
    burner = burner_for(box, settings)
    viewer = Path(settings.viewer_dir) if settings.viewer_dir else None
    capacity, reserved = _capacity(burner, settings), _size_of(viewer)
    if reserved >= capacity // 2:
        raise PermanentJobError(
            f"the viewer in {viewer} takes {reserved >> 20} MB of a {capacity >> 20} MB disc: "
            "leave it off ([media] viewer_dir) or use a larger disc"
        )
    plan = _BurnPlan(job.payload, instances, capacity, reserved)
    box.jobs.checkpoint(job)
    level = job.payload.get("deidentify") or settings.deidentify
    # One de-identification for every disc of the job, the retries' too: the same new
    # UIDs on disc 3 as on disc 1 burned before a failure.
    deidentify = export_deidentifier(level, plan.export_key())
    base_label = _label(box, studies, anonymous=deidentify is not None)
    discs = len(plan.volumes)
    for number, uids in enumerate(plan.volumes, start=1):
        volume = [(uid, instances[uid]) for uid in uids if uid in instances]
        left = [c for c in range(1, copies + 1) if not plan.burned(number, c)]
        if not volume or not left:
            continue  # burned before a failure or a restart: not again
        which = f"disc {number}/{discs}" if discs > 1 else "disc"
        label = base_label
        if discs > 1:
            of = f"(disc {number} of {discs})"
            label = {**base_label, "description": f"{base_label['description']} {of}".strip()}
        scratch = box.store.scratch()
        try:
            progress(f"{which}: building the file-set of {len(volume)} instances")
            report = build_fileset(
                [path for _, path in volume],
                scratch / "disc",
                profile,
                label=label,
                deidentify=deidentify,
                previews=settings.previews,
                viewer=viewer,
                viewer_start=settings.viewer_start,
            )
            iso = scratch / "disc.iso"
            size = master_iso(
                scratch / "disc",
                iso,
                f"DICOMBOX_{number}OF{discs}",
                progress=lambda done, total, which=which: progress(
                    f"{which}: mastering {done}/{total} files"
                ),
                foreign=(VIEWER,),
            )
            if size > plan.capacity:
                raise PermanentJobError(
                    f"{which} needs {size >> 20} MB once converted for {profile}, the disc holds "
                    f"{plan.capacity >> 20} MB: choose a larger disc or a compressed profile"
                )
            for copy in left:
                _burn_one(burner, iso, settings, progress, f"{which}, copy {copy}/{copies}")
                plan.mark_burned(number, copy, _where(burner))
                box.jobs.checkpoint(job)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        refused = {str(path) for path, _ in report.refused}
        burned = [uid for uid, path in volume if str(path) not in refused]
        record_deliveries(box.index.engine, MEDIA, burned, "committed")
        plan.count(len(burned), left_out_lines(report.refused))
        box.jobs.checkpoint(job)
    plan.forget_export_key()  # nobody may re-derive the disc's UIDs from the job later
    box.jobs.checkpoint(job)
    box.bus.publish(
        "media.burned", studies=studies, instances=plan.instances, discs=discs, copies=copies
    )
    summary = f"{plan.instances} instances burned, {discs * copies} disc(s)"
    if plan.where:
        summary += f": {', '.join(plan.where)}"
    if plan.left_out:
        summary += f"; {len(plan.left_out)} left out"
    progress(summary)
    return plan.left_out or None


class _BurnPlan:
    """What a burn job has decided and done, kept in its payload so that a retry (a
    fresh disc after a failed one) or a restart burns only what is not burned yet.

    ``volumes`` (SOP Instance UIDs per disc) are fixed at the first run: disc 2 of a
    retry holds what disc 2 was meant to. Instances that arrived since (the study was
    still growing) go on further discs."""

    def __init__(
        self, payload: dict[str, Any], instances: dict[str, Path], capacity: int, reserved: int
    ) -> None:
        self._state: dict[str, Any] = payload.setdefault("plan", {})
        self.capacity = int(self._state.setdefault("capacity", capacity))
        volumes: list[list[str]] = self._state.setdefault("volumes", [])
        planned = {uid for volume in volumes for uid in volume}
        new = [(uid, path) for uid, path in instances.items() if uid not in planned]
        if new:
            # Every disc carries the viewer (``reserved``) next to its share of the study.
            groups = split_for_discs(new, self.capacity - reserved)
            volumes += [[uid for uid, _ in group] for group in groups]
        self.volumes: list[list[str]] = volumes
        self._state.setdefault("burned", [])
        self._state.setdefault("instances", 0)
        self._state.setdefault("left_out", [])

    def burned(self, disc: int, copy: int) -> bool:
        return f"{disc}/{copy}" in self._state["burned"]

    def mark_burned(self, disc: int, copy: int, where: str) -> None:
        self._state["burned"].append(f"{disc}/{copy}")
        if where not in self._state.setdefault("where", []):
            self._state["where"].append(where)

    @property
    def where(self) -> list[str]:
        """Where the discs burned so far went (ISO files, the drive), each once."""
        return list(self._state.get("where", []))

    def count(self, burned: int, left_out: list[str]) -> None:
        self._state["instances"] += burned
        self._state["left_out"] += left_out

    @property
    def instances(self) -> int:
        return int(self._state["instances"])

    @property
    def left_out(self) -> list[str]:
        return list(self._state["left_out"])

    def export_key(self) -> bytes:
        if "export_key" not in self._state:
            self._state["export_key"] = secrets.token_hex(32)
        return bytes.fromhex(self._state["export_key"])

    def forget_export_key(self) -> None:
        self._state.pop("export_key", None)


def split_for_discs(
    instances: list[tuple[str, Path]], capacity: int
) -> list[list[tuple[str, Path]]]:
    """The instances (in study, series order) in groups that each fit one disc, each
    to become a complete file-set of its own. A tenth of the disc is kept for the
    DICOMDIR, the PDI files, the ISO's own structures and conversions that grow."""
    budget = int(capacity * 0.9)
    groups: list[list[tuple[str, Path]]] = [[]]
    used = 0
    for uid, path in instances:
        size = path.stat().st_size
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append((uid, path))
        used += size
    return groups


def _size_of(folder: Path | None) -> int:
    """The bytes of the files below ``folder`` (0 for None)."""
    if folder is None:
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _capacity(burner: Burner, settings: MediaSection) -> int:
    """What one disc holds: the one in the drive, else the kind configured."""
    if settings.disc_capacity_mb:
        return settings.disc_capacity_mb << 20
    try:
        media = burner.media()
    except BurnerError:
        media = None
    if media is not None and media.present and media.capacity_bytes:
        return int(media.capacity_bytes)
    return CAPACITY[settings.disc]


def _where(burner: Burner) -> str:
    """Where the disc just burned is: the simulator's ISO file, else the burner."""
    disc = getattr(burner, "last_disc", None)
    return str(disc) if disc is not None else _destination(burner)


def _destination(burner: Burner) -> str:
    return str(getattr(burner, "destination", "") or burner.name)


def _burn_one(
    burner: Burner, iso: Path, settings: MediaSection, progress: JobContext, which: str
) -> None:
    try:
        media = burner.media()
        if not media.present:
            raise NoMedia("no disc in the drive")
        burner.burn(
            iso,
            "DICOMBOX",
            finalize=settings.finalize,
            speed=settings.speed,
            progress=lambda fraction: progress(f"{which}: burning {fraction:.0%}"),
        )
        if settings.verify:
            progress(f"{which}: verifying")
            if not burner.verify(iso):
                raise BurnerError("the disc does not read back as written")
        burner.eject()
    except DiscTooSmall as exc:
        raise PermanentJobError(str(exc)) from None  # a fresh disc of the same kind won't do
    except BurnerError as exc:
        raise TransientJobError(f"{which}: {exc}") from None


def export_deidentifier(
    level: str, key: bytes | None = None
) -> Callable[[Dataset], Dataset] | None:
    """The de-identification of one export (None: none), under ``key`` when given."""
    return None if level in ("", "none") else Deidentifier(level, key=key).apply


def _label(box: Box, studies: list[str], anonymous: bool = False) -> dict[str, str]:
    rows = [s for s in box.index.studies() if s.get("study_instance_uid") in studies]
    first = rows[0] if rows else {}
    if anonymous:  # the disc label must not name whom the de-identified disc is about
        first = {"patient_name": "ANONYMOUS"}
    return {
        "patient": str(first.get("patient_name", "")),
        "patient_id": str(first.get("patient_id", "")),
        "date": str(first.get("study_date", "")),
        "description": str(first.get("study_description", "")),
        "institution": box.config.box.institution,  # else the instances' own
    }

"""Query/Retrieve: C-FIND as SCP over the index, for the Patient Root, Study Root and
Patient/Study Only models. (C-MOVE, C-GET and the SCU verbs join this plugin next.)"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from dicombox.core import hookimpl
from dicombox.core.box import Box
from dicombox.core.net.commands import C_FIND_RQ
from dicombox.core.net.service import Service, SupportedContext
from dicombox.plugins.qr.find import FindSCP
from dicombox.plugins.qr.models import MODELS

__version__ = "0.1.0"
SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)


@dataclass(frozen=True)
class QRSection:
    max_matches: int = 0  # 0 = unlimited; past it the final status is A700
    case_insensitive_names: bool = False  # PN matching ignores case (seed 001 does)


@hookimpl
def dicombox_config_sections() -> dict[str, type]:
    return {"qr": QRSection}


@hookimpl
def dicombox_services(box: Box) -> list[Service]:
    settings: QRSection = box.section("qr")
    find = FindSCP(box, settings.max_matches, settings.case_insensitive_names)
    return [
        Service(
            name="qr-find",
            contexts=[SupportedContext(m.find, SYNTAXES) for m in MODELS],
            handlers={C_FIND_RQ: find.handle},
        )
    ]


@hookimpl
def dicombox_conformance(box: Box) -> list[dict[str, object]]:
    return [
        {
            "service": "Query/Retrieve",
            "sop_class": f"{m.name} Query/Retrieve - FIND",
            "uid": m.find,
            "role": "SCP",
            "transfer_syntaxes": [str(s) for s in SYNTAXES],
            "notes": f"levels {'/'.join(m.levels)}",
        }
        for m in MODELS
    ]

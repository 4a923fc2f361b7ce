"""What the storage SCP accepts: every standard storage SOP class, the private Siemens CSA
Non-Image class, and the transfer syntaxes in the configured order of preference."""

from __future__ import annotations

from pydicom import uid
from pynetdicom.presentation import AllStoragePresentationContexts

CSA_NON_IMAGE = "1.3.12.2.1107.5.9.1"

STORAGE_CLASSES: tuple[str, ...] = (
    *(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts),
    CSA_NON_IMAGE,
)

NATIVE = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
)
LOSSLESS_COMPRESSED = (
    uid.JPEGLosslessSV1,
    uid.JPEGLossless,
    uid.JPEGLSLossless,
    uid.JPEG2000Lossless,
    uid.HTJ2KLossless,
    uid.HTJ2KLosslessRPCL,
    uid.RLELossless,
    uid.DeflatedExplicitVRLittleEndian,
)
# Chosen only when the peer proposes nothing lossless for that context: a lossy image
# arrives in its lossy syntax, and storing it as received keeps it exactly as it is.
LOSSY = (
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLSNearLossless,
    uid.JPEG2000,
    uid.HTJ2K,
    *uid.MPEGTransferSyntaxes,
)


def transfer_syntax_order(preference: str) -> tuple[str, ...]:
    """Which syntax to pick when a peer proposes several for one context.

    ``lossless-first`` (default): lossless compressed, native, lossy: the smallest
    exact copy. ``native-first``: native, lossless compressed, lossy: the least work for
    senders that hold uncompressed data. ``compressed-first``: lossless compressed, lossy,
    native: the least disk, as seed 001 does; a peer that proposes lossy for a lossless
    image trades pixels away, so use it only where routes ask for it."""
    if preference == "native-first":
        return (*NATIVE, *LOSSLESS_COMPRESSED, *LOSSY)
    if preference == "compressed-first":
        return (*LOSSLESS_COMPRESSED, *LOSSY, *NATIVE)
    return (*LOSSLESS_COMPRESSED, *NATIVE, *LOSSY)


def is_storage_class(sop_class_uid: str) -> bool:
    """Anything that is not a known non-storage service is treated as storage when the
    box is promiscuous (private storage classes have no common prefix)."""
    name = uid.UID(sop_class_uid).name
    return not any(
        word in name
        for word in (
            "Find",
            "Move",
            "Get",
            "Print",
            "Worklist",
            "Commitment",
            "Procedure Step",
            "Verification",
        )
    )

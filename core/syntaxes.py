"""Transfer syntaxes by the short names a site engineer writes in the configuration."""

from __future__ import annotations

SYNTAX_NAMES = {
    "explicit": "1.2.840.10008.1.2.1",
    "implicit": "1.2.840.10008.1.2",
    "big-endian": "1.2.840.10008.1.2.2",
    "deflate": "1.2.840.10008.1.2.1.99",
    "rle": "1.2.840.10008.1.2.5",
    "jpeg-lossless": "1.2.840.10008.1.2.4.70",
    "jpeg-baseline": "1.2.840.10008.1.2.4.50",
    "jpeg-extended": "1.2.840.10008.1.2.4.51",
    "jpegls-lossless": "1.2.840.10008.1.2.4.80",
    "jpegls-near": "1.2.840.10008.1.2.4.81",
    "j2k-lossless": "1.2.840.10008.1.2.4.90",
    "j2k": "1.2.840.10008.1.2.4.91",
}


def syntax_uid(name_or_uid: str) -> str | None:
    """The UID for a short name or a UID; None for neither."""
    if name_or_uid in SYNTAX_NAMES:
        return SYNTAX_NAMES[name_or_uid]
    if name_or_uid.replace(".", "").isdigit() and name_or_uid.startswith("1.2.840.10008.1.2"):
        return name_or_uid
    return None

"""Small data sets of DIMSE messages (identifiers, commitment requests and reports) to
and from the bytes of a presentation context's transfer syntax."""

from __future__ import annotations

from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import UID


def decode_dataset(data: bytes, transfer_syntax: str) -> Dataset:
    ts = UID(transfer_syntax)
    return read_dataset(BytesIO(data), ts.is_implicit_VR, ts.is_little_endian)


def encode_dataset(ds: Dataset, transfer_syntax: str) -> bytes:
    ts = UID(transfer_syntax)
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = ts.is_implicit_VR, ts.is_little_endian
    write_dataset(fp, ds)
    return fp.getvalue()

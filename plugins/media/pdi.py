"""The IHE PDI (Portable Data for Imaging, RAD TF-3 4.47) files at the root of a medium.

``README.TXT`` says in plain ASCII what the medium holds and how to open it, and
``INDEX.HTM`` lists the same for a web browser. Both are 8.3 upper-case names, as PDI
asks of everything outside the DICOM file-set, and neither runs anything: PDI readers
must not depend on autorun, and a hospital's PC will not allow it. In PDI's terms the
medium is "DICOM only", or "DICOM + viewer" when the site configures a viewer program,
which is copied into ``VIEWER/`` and named here as the program to start by hand. The
web-viewable previews (``IHE_PDI/``) are linked from INDEX.HTM when present.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from urllib.parse import quote

from dicombox.plugins.media.previews import FOLDER as PREVIEWS

README = "README.TXT"
INDEX = "INDEX.HTM"
VIEWER = "VIEWER"  # the folder of a viewer program, when the site ships one


def write_pdi(
    folder: Path,
    report_rows: list[dict[str, str]],
    label: dict[str, str],
    viewer_start: str = "",
) -> None:
    """Write README.TXT and INDEX.HTM in ``folder`` (the medium's root) for the
    instances in ``report_rows`` (one dict per instance: patient_name, patient_id,
    birth_date, study_uid, study_date, study_description, accession, series_uid,
    series_number, modality, series_description) and ``label`` (patient, patient_id,
    date, institution, description; any may be missing). With a ``VIEWER`` folder in
    ``folder``, both say how to start ``viewer_start`` (a path inside it) by hand."""
    patients = _tree(report_rows)
    viewer = _viewer_program(folder, viewer_start)
    previews = (folder / PREVIEWS / INDEX).exists()  # web content with previews was written
    lines = _readme_lines(patients, len(report_rows), label, viewer, previews)
    # CRLF: the one line ending every text viewer shows as lines, Notepad included.
    text = "\r\n".join(lines) + "\r\n"
    (folder / README).write_bytes(_ascii(text).encode("ascii"))
    page = _index_page(patients, len(report_rows), label, viewer)
    if previews:
        page = page.replace(
            "</h1>", '</h1>\n<p><a href="IHE_PDI/INDEX.HTM">Image previews</a></p>', 1
        )
    # Non-ASCII as character references: the page reads right whatever charset is guessed.
    (folder / INDEX).write_bytes(page.encode("ascii", "xmlcharrefreplace"))


def _viewer_program(folder: Path, start: str) -> str | None:
    """The viewer's program as a path on the medium (``VIEWER/viewer.exe``), ``VIEWER``
    when no program is named, or None without a viewer."""
    if not (folder / VIEWER).is_dir():
        return None
    return f"{VIEWER}/{start.strip('/')}" if start else VIEWER


def _tree(rows: Iterable[dict[str, str]]) -> dict[tuple[str, str], dict[str, dict]]:
    """(patient name, patient ID) -> study UID -> {"row": first row, "series": Series}."""
    patients: dict[tuple[str, str], dict[str, dict]] = {}
    for row in rows:
        key = (row.get("patient_name", ""), row.get("patient_id", ""))
        study = patients.setdefault(key, {}).setdefault(
            row.get("study_uid", ""), {"row": row, "series": {}}
        )
        series = study["series"].setdefault(
            row.get("series_uid", ""),
            [
                row.get("series_number", ""),
                row.get("modality", ""),
                row.get("series_description", ""),
                0,
            ],
        )
        series[3] += 1
    return patients


def person_name(value: str) -> str:
    """A DICOM PN (Family^Given^Middle^Prefix^Suffix, with ideographic and phonetic
    forms after "=") as people write it: "Family, Given Middle"."""
    parts = [p.strip() for p in value.split("=")[0].split("^")]
    family, given = parts[0], " ".join(p for p in parts[1:3] if p)
    return f"{family}, {given}" if family and given else family or given or "(no name)"


def _day(value: str) -> str:
    """DA (YYYYMMDD) as YYYY-MM-DD; anything else as it is."""
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def _ascii(text: str) -> str:
    """Accents dropped (é -> e), and "?" for what has no ASCII letter at all."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return kept.encode("ascii", "replace").decode("ascii")


def _plural(n: int, word: str, plural: str = "") -> str:
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


def _summary(patients: dict, instances: int) -> str:
    studies = sum(len(s) for s in patients.values())
    return (
        f"{_plural(instances, 'DICOM instance')} of {_plural(len(patients), 'patient')} "
        f"in {_plural(studies, 'study', 'studies')}"
    )


def _label_lines(label: dict[str, str]) -> list[str]:
    lines = [
        ("Patient", person_name(label["patient"]) if label.get("patient") else ""),
        ("Patient ID", label.get("patient_id", "")),
        ("Date", _day(label.get("date", ""))),
        ("Institution", label.get("institution", "")),
        ("Description", label.get("description", "")),
        ("Written", date.today().isoformat()),
    ]
    return [f"{name + ':':<13}{value}" for name, value in lines if value]


def _content_lines(viewer: str | None, previews: bool = False) -> list[str]:
    """What the medium holds besides the DICOM files, as PDI names it: DICOM only, or
    with a viewer program, web content (the previews), or both."""
    if viewer is None and not previews:
        return [
            "Content: DICOM only. There is no viewer program and there are no web-viewable",
            "copies of the images.",
        ]
    extras = [
        *(["a viewer program"] if viewer is not None else []),
        *(["web-viewable previews"] if previews else []),
    ]
    lines = [f"Content: DICOM with {' and '.join(extras)}."]
    if viewer is not None:
        how = f"start {viewer}" if viewer != VIEWER else f"open the folder {VIEWER}"
        lines += [
            f"To look at the images on this computer, {how} (nothing starts by",
            "itself). The viewer is a convenience: the DICOM files are complete without it.",
        ]
    if previews:
        lines += [
            f"A small preview of each series is in {PREVIEWS}/{INDEX}: open it in a web",
            "browser. The previews are not for diagnosis; the DICOM files are the images.",
        ]
    return lines


def _readme_lines(
    patients: dict,
    instances: int,
    label: dict[str, str],
    viewer: str | None = None,
    previews: bool = False,
) -> list[str]:
    lines = [
        "DICOM MEDIUM - IHE PORTABLE DATA FOR IMAGING (PDI)",
        "",
        *_label_lines(label),
        "",
        "WHAT IS ON THIS MEDIUM",
        f"{_summary(patients, instances)}, in the DICOM file format (PS3.10).",
        *_content_lines(viewer, previews),
        "",
        "HOW TO OPEN IT",
        "Open the file DICOMDIR in the root directory with a DICOM viewer or import it",
        "into a PACS: it is the entry point and indexes every image and document. The",
        "files it refers to are in the directories below the root, named without",
        "extensions as DICOM requires; they are not meant to be opened one by one.",
        "INDEX.HTM lists the same content for a web browser.",
        "Nothing on this medium starts by itself (there is no autorun).",
        "",
        "PATIENTS AND STUDIES",
    ]
    for (name, patient_id), studies in patients.items():
        lines.append(f"{person_name(name)} (ID {patient_id or 'none'})")
        for study in studies.values():
            lines.append("  " + _study_title(study["row"]))
            for number, modality, description, count in study["series"].values():
                text = f"    Series {number} {modality} {description}".rstrip()
                lines.append(f"{text}: {_plural(count, 'instance')}")
    return lines


def _study_title(row: dict[str, str]) -> str:
    parts = [
        "Study",
        _day(row.get("study_date", "")),
        row.get("study_description", ""),
        f"(accession {row['accession']})" if row.get("accession") else "",
    ]
    return " ".join(p for p in parts if p)


def _index_page(
    patients: dict, instances: int, label: dict[str, str], viewer: str | None = None
) -> str:
    esc = html.escape
    head = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(v.strip())}</td></tr>"
        for k, _, v in (line.partition(":") for line in _label_lines(label))
    )
    body = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8" />',  # the bytes are ASCII, which UTF-8 includes
        "<title>DICOM medium</title>",
        "</head>",
        "<body>",
        "<h1>DICOM medium (IHE Portable Data for Imaging)</h1>",
        f"<table>{head}</table>",
        f"<p>{esc(_summary(patients, instances))}. Open the file "
        "<code>DICOMDIR</code> with a DICOM viewer. See "
        f'<a href="{README}">{README}</a>.</p>',
    ]
    if viewer is not None:
        body.append(
            f'<p>A viewer program is on this medium: <a href="{quote(viewer)}">{esc(viewer)}</a>'
            " (start it yourself; nothing starts by itself).</p>"
        )
    for (name, patient_id), studies in patients.items():
        body.append(f"<h2>{esc(person_name(name))} (ID {esc(patient_id or 'none')})</h2>")
        for study in studies.values():
            body.append(f"<h3>{esc(_study_title(study['row']))}</h3>")
            body.append("<table><tr><th>Series</th><th>Modality</th>")
            body.append("<th>Description</th><th>Instances</th></tr>")
            for number, modality, description, count in study["series"].values():
                cells = "".join(f"<td>{esc(str(v))}</td>" for v in (number, modality, description))
                body.append(f"<tr>{cells}<td>{count}</td></tr>")
            body.append("</table>")
    body += ["</body>", "</html>", ""]
    return "\n".join(body)

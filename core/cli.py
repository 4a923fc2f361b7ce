"""The ``dicombox`` command: the core's verbs, plus those the plugins add."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from dicombox.core import __version__
from dicombox.core.box import Box, load_plugins_and_config, open_box
from dicombox.core.config import ConfigError
from dicombox.core.jobs import FAILED, QUEUED, RUNNING

Command = Callable[[Box, argparse.Namespace], int]


def format_table(rows: list[list[Any]], headers: list[str]) -> str:
    """Rows as aligned columns under their headers (for plugins' CLI verbs too)."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=False))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _ago(t: float | None) -> str:
    if not t:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def cmd_studies(box: Box, args: argparse.Namespace) -> int:
    rows = box.index.studies()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print("no studies stored")
        return 0
    print(
        format_table(
            [
                [
                    r["patient_name"],
                    r["patient_id"],
                    r["study_date"],
                    r["modalities"],
                    r["series"],
                    r["instances"],
                    f"{r['bytes'] / 1e6:.1f}",
                    r["study_description"],
                    r["study_instance_uid"],
                ]
                for r in rows
            ],
            ["PATIENT", "ID", "DATE", "MOD", "SERIES", "IMAGES", "MB", "DESCRIPTION", "STUDY UID"],
        )
    )
    return 0


def cmd_jobs(box: Box, args: argparse.Namespace) -> int:
    if args.action in ("retry", "cancel"):
        if args.id is None:
            print(f"dicombox jobs {args.action}: give a job id")
            return 2
        ok = (box.jobs.retry if args.action == "retry" else box.jobs.cancel)(args.id)
        print(
            f"job {args.id}: "
            + (f"{args.action} done" if ok else f"not in a state that allows {args.action}")
        )
        return 0 if ok else 1
    states = {"active": (QUEUED, RUNNING), "failed": (FAILED,), "all": ()}[args.action or "all"]
    jobs = box.jobs.list(states, limit=args.limit)
    if args.json:
        print(json.dumps([dataclasses.asdict(j) for j in jobs], indent=1))
        return 0
    if not jobs:
        print("no jobs")
        return 0
    print(
        format_table(
            [
                [
                    j.id,
                    j.kind,
                    j.queue or "-",
                    j.state,
                    f"{j.attempts}/{j.max_attempts}",
                    _ago(j.next_run_at) if j.state == QUEUED else _ago(j.updated_at),
                    j.progress or "-",
                    (j.last_error or "")[:60],
                ]
                for j in jobs
            ],
            ["ID", "KIND", "QUEUE", "STATE", "TRIES", "WHEN", "PROGRESS", "LAST ERROR"],
        )
    )
    return 0


def _running(box: Box) -> dict[str, Any] | None:
    path = box.run_dir / "ready.json"
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
        return info
    except (OSError, ValueError, KeyError):
        return None


def cmd_status(box: Box, args: argparse.Namespace) -> int:
    info = _running(box)
    if info:
        print(
            f"running: {info['ae_title']} on port {info['port']}, pid {info['pid']}, "
            f"{info['workers']} network worker(s), up since {_ago(info['started'])}"
        )
    else:
        print("not running")
    for lines in box.hook.dicombox_status(box=box):
        for line in lines:
            print(line)
    counts = {s: len(box.jobs.list((s,), limit=10000)) for s in (QUEUED, RUNNING, FAILED)}
    print(f"jobs: {counts[QUEUED]} queued, {counts[RUNNING]} running, {counts[FAILED]} failed")
    return 0 if info else 3


def cmd_reindex(box: Box, args: argparse.Namespace) -> int:
    if _running(box):
        print("dicombox reindex: stop the box first (it re-checks by itself after an unclean stop)")
        return 1
    from dicombox.core.reconcile import reconcile

    report = reconcile(box)
    print(
        f"{report.scanned} file(s) checked, {report.indexed} added to the index, "
        f"{report.quarantined} moved to quarantine/"
    )
    return 0


def cmd_plugins(box: Box, args: argparse.Namespace) -> int:
    print(
        format_table(
            [
                [
                    i.name,
                    i.version or "-",
                    "enabled" if i.enabled else "disabled",
                    i.distribution,
                    i.error or i.module,
                ]
                for i in box.plugin_infos
            ],
            ["PLUGIN", "VERSION", "STATE", "DISTRIBUTION", "MODULE / ERROR"],
        )
    )
    return 0


def cmd_conformance(box: Box, args: argparse.Namespace) -> int:
    rows = [row for batch in box.hook.dicombox_conformance(box=box) for row in batch]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    net = box.config.network
    print(f"dicombox {__version__} conformance statement (generated from the loaded plugins)")
    print(f"Implementation Class UID: {net.implementation_class_uid}")
    print(f"Implementation Version Name: {net.implementation_version}")
    print(f"AE titles: {', '.join(box.local_ae_titles())}; port {box.config.box.port}\n")
    print(
        format_table(
            [
                [
                    r["service"],
                    r["sop_class"],
                    r["uid"],
                    r["role"],
                    str(len(r["transfer_syntaxes"])),
                ]
                for r in rows
            ],
            ["SERVICE", "SOP CLASS", "UID", "ROLE", "SYNTAXES"],
        )
    )
    return 0


def build_parser(
    plugin_cli: Callable[[argparse._SubParsersAction], None],
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dicombox", description="the dicombox DICOM appliance")
    parser.add_argument("--version", action="version", version=f"dicombox {__version__}")
    parser.add_argument(
        "--config",
        "-c",
        help="the TOML configuration file (default: embedded defaults)",
        default=os.environ.get("DICOMBOX_CONFIG"),
    )
    parser.add_argument("--data-dir", help="override [box] data_dir")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("serve", help="run the box (supervisor and network workers)")
    p.add_argument("--ae-title", help="override [box] ae_title")
    p.add_argument("--port", type=int, help="override [box] port")
    p.add_argument("--workers", type=int, help="override [box] workers")
    p.set_defaults(func=None)

    sub.add_parser("status", help="is the box running, what it holds, its jobs").set_defaults(
        func=cmd_status
    )
    p = sub.add_parser("studies", help="list stored studies: patient, date, modality, counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_studies)
    p = sub.add_parser("jobs", help="list jobs; 'retry ID' or 'cancel ID'")
    p.add_argument("action", nargs="?", choices=["all", "active", "failed", "retry", "cancel"])
    p.add_argument("id", nargs="?", type=int)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_jobs)
    p = sub.add_parser("config", help="'config check FILE' validates a configuration file")
    p.add_argument("action", choices=["check"])
    p.add_argument("file")
    p.set_defaults(func=None)
    sub.add_parser(
        "reindex", help="index stored files the index does not know (box stopped)"
    ).set_defaults(func=cmd_reindex)
    sub.add_parser("plugins", help="list plugins with their versions").set_defaults(
        func=cmd_plugins
    )
    p = sub.add_parser("conformance", help="print the conformance statement of the loaded plugins")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_conformance)
    plugin_cli(sub)
    return parser


def _config_check(path: str) -> int:
    try:
        config, _, infos = load_plugins_and_config(path)
    except ConfigError as exc:
        print(f"configuration error: {exc}")
        return 1
    print(
        f"{path}: OK ({len(config.remote)} remote(s), {len(config.route)} route(s), "
        f"plugins: {', '.join(i.name for i in infos if i.enabled)})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    from dicombox.core import plugins as plugin_loader

    pm, _ = plugin_loader.discover()  # every plugin's verbs are listed, even disabled ones'

    def plugin_cli(sub: argparse._SubParsersAction) -> None:
        pm.hook.dicombox_cli(subparsers=sub)

    args = build_parser(plugin_cli).parse_args(argv)
    if args.verb == "config":
        return _config_check(args.file)
    overrides = {"data_dir": args.data_dir}
    if args.verb == "serve":
        from dicombox.core.supervisor import serve

        overrides |= {"ae_title": args.ae_title, "port": args.port, "workers": args.workers}
        try:
            return serve(args.config, **overrides)
        except ConfigError as exc:
            print(f"configuration error: {exc}", file=sys.stderr)
            return 1
    try:
        config, pm, infos = load_plugins_and_config(args.config, **overrides)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 1
    box = open_box(config, pm, infos)
    try:
        return int(args.func(box, args))
    finally:
        box.close()


if __name__ == "__main__":
    sys.exit(main())

"""The ``dicombox`` command: the parser, ``serve`` and the box's own verbs. The plugin
bundle verbs come from cli_plugins, the TLS verbs from cli_tls, and each plugin adds its
own through the ``dicombox_cli`` hook."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dicombox.core import __version__, audit, plugin_env
from dicombox.core.box import Box, load_plugins_and_config, open_box
from dicombox.core.cli_plugins import add_plugins_verbs
from dicombox.core.cli_tls import add_tls_verbs
from dicombox.core.config import ConfigError
from dicombox.core.conformance import render_markdown, render_text, statement_rows
from dicombox.core.docs import add_arguments as add_docs_arguments
from dicombox.core.docs import run as run_docs
from dicombox.core.jobs import DONE_WITH_PROBLEMS, FAILED, QUEUED, RUNNING, Job, state_label
from dicombox.core.tables import format_table

Command = Callable[[Box, argparse.Namespace], int]


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
                    state_label(j.state),
                    f"{j.attempts}/{j.max_attempts or 'no limit'}",
                    _when(j),
                    j.progress or "-",
                    _first_error(j.last_error),
                ]
                for j in jobs
            ],
            ["ID", "KIND", "QUEUE", "STATE", "TRIES", "WHEN", "PROGRESS", "LAST ERROR"],
        )
    )
    for line in _problem_lines(jobs):
        print(line)
    return 0


PROBLEMS_SHOWN = 10  # per job, under the table; --json has them all


def _first_error(text: str) -> str:
    """The first line of a job's error (or problems), cut to fit the table."""
    lines = text.splitlines()
    more = f" (+{len(lines) - 1} more)" if len(lines) > 1 else ""
    return (lines[0][:60] + more) if lines else ""


def _problem_lines(jobs: list[Job]) -> list[str]:
    """Under the table, each problem of the jobs done with problems, a line each."""
    lines: list[str] = []
    for job in jobs:
        problems = job.last_error.splitlines() if job.state == DONE_WITH_PROBLEMS else []
        if not problems:
            continue
        lines.append(f"job {job.id} ({job.kind}) done with problems:")
        lines += [f"  {p}" for p in problems[:PROBLEMS_SHOWN]]
        if len(problems) > PROBLEMS_SHOWN:
            lines.append(f"  … and {len(problems) - PROBLEMS_SHOWN} more (dicombox jobs --json)")
    return lines


def _when(job: Job) -> str:
    """When a job last changed, or for one waiting to be tried again, when it will be."""
    if job.state == QUEUED and job.last_error and job.next_run_at > time.time():
        if job.next_run_at - time.time() > 12 * 3600:
            return "next try " + _ago(job.next_run_at)
        return "next try " + time.strftime("%H:%M:%S", time.localtime(job.next_run_at))
    return _ago(job.next_run_at) if job.state == QUEUED else _ago(job.updated_at)


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
    states = (QUEUED, RUNNING, FAILED, DONE_WITH_PROBLEMS)
    counts = {s: len(box.jobs.list((s,), limit=10000)) for s in states}
    print(
        f"jobs: {counts[QUEUED]} queued, {counts[RUNNING]} running, {counts[FAILED]} failed, "
        f"{counts[DONE_WITH_PROBLEMS]} done with problems"
    )
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
    if report.unindexed:
        print(f"{report.unindexed} file(s) could not be indexed (see the log): run it again")
        return 1
    return 0


OUTCOMES = {0: "success", 4: "minor failure", 8: "serious failure", 12: "major failure"}


def cmd_audit(box: Box, args: argparse.Namespace) -> int:
    try:
        since = audit.started_at(args.since) if args.since else 0.0
    except ValueError:
        print(f"dicombox audit: --since {args.since!r}: expected an ISO 8601 date or date-time")
        return 2
    records = list(audit.read_records(box.audit.path, since, args.last or 0, args.event))
    # Reading the trail is itself audited (PS3.15 Audit Log Used), after the reading.
    box.bus.publish("audit.read", user=audit.os_user(), log=box.audit.path.resolve().as_uri())
    if args.json:
        print(json.dumps(records, indent=1, default=str))
        return 0
    if args.xml:
        for record in records:
            if record.get("dicom"):
                print(record["dicom"])
        return 0
    if not records:
        print("no audit records")
        return 0
    rows = []
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(r.get("time", 0))))
        who, what = audit.who_and_what(r)
        rows.append([when, r.get("event", "-"), OUTCOMES.get(r.get("outcome"), "-"), who, what])
    print(format_table(rows, ["TIME", "EVENT", "OUTCOME", "WHO", "WHAT"]))
    return 0


def cmd_conformance(box: Box, args: argparse.Namespace) -> int:
    rows = statement_rows(box)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.markdown:
        print(render_markdown(box, rows), end="")
    else:
        print(render_text(box, rows))
    return 0


def _add_box_options(parser: argparse.ArgumentParser, config: Any, data_dir: Any) -> None:
    parser.add_argument(
        "--config",
        "-c",
        help="the TOML configuration file (default: $DICOMBOX_CONFIG, else embedded defaults)",
        default=config,
    )
    parser.add_argument("--data-dir", help="override [box] data_dir", default=data_dir)


def _box_options_after_verbs(parser: argparse.ArgumentParser) -> None:
    """Let every verb's parser, sub-verbs and plugins' verbs included, take ``--config``
    and ``--data-dir`` too, so they go before or after the verb. Their default there is
    SUPPRESS: a verb given neither leaves the value from before the verb in place."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        done: set[int] = set()
        for verb in action.choices.values():
            if id(verb) in done:  # an alias's parser is the verb's own
                continue
            done.add(id(verb))
            _add_box_options(verb, argparse.SUPPRESS, argparse.SUPPRESS)
            _box_options_after_verbs(verb)


def build_parser(
    plugin_cli: Callable[[argparse._SubParsersAction], None],
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dicombox", description="the dicombox DICOM appliance")
    parser.add_argument("--version", action="version", version=f"dicombox {__version__}")
    _add_box_options(parser, os.environ.get("DICOMBOX_CONFIG"), None)
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
    add_plugins_verbs(sub)
    add_tls_verbs(sub)
    p = sub.add_parser("conformance", help="print the conformance statement of the loaded plugins")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true")
    form.add_argument("--markdown", action="store_true", help="as docs/conformance.md has it")
    p.set_defaults(func=cmd_conformance)
    p = sub.add_parser(
        "docs", help="write (or check) the configuration reference and conformance statement"
    )
    add_docs_arguments(p)
    p.set_defaults(func=None, tool=run_docs)
    p = sub.add_parser("audit", help="read the audit trail (DICOM PS3.15 audit messages)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--since", help="records from this ISO 8601 date or date-time on")
    when.add_argument("--last", type=int, help="only the last N records")
    p.add_argument("--event", default="", help="one kind, e.g. instances-transferred, query")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="the records as JSON")
    form.add_argument("--xml", action="store_true", help="the PS3.15 AuditMessage XML only")
    p.set_defaults(func=cmd_audit)
    plugin_cli(sub)
    _box_options_after_verbs(parser)
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


def _end_children(timeout: float = 10) -> None:
    """SIGTERM this process's children, then SIGKILL those still there after ``timeout``."""
    mine = str(os.getpid())
    kids: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[1] == mine:
                kids.append(int(stat.parent.name))
        except (OSError, IndexError):
            continue
    for pid in kids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for pid in kids:
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                break
            time.sleep(0.05)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def _serve(args: argparse.Namespace, overrides: dict[str, Any], argv: list[str]) -> int:
    """``dicombox serve``, which SIGUSR2 restarts in place (same process id): stop as on
    SIGTERM, then exec the same command again, which picks up the plugin environment
    ``current`` points at now. Under systemd that is a reload, not a crash."""
    from dicombox.core.sdnotify import notify
    from dicombox.core.supervisor import ListenError, serve

    hidden: dict[str, str] = {}
    restart = False

    def on_restart(signum: int, frame: Any) -> None:
        nonlocal restart
        stop = signal.getsignal(signal.SIGTERM)
        if not callable(stop) or not getattr(stop, "serving", True):
            return  # still starting: the installer times out and rolls back
        notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        # serve() says STOPPING=1 on its way out; systemd must not take that for a stop.
        if "NOTIFY_SOCKET" in os.environ:
            hidden["NOTIFY_SOCKET"] = os.environ.pop("NOTIFY_SOCKET")
        restart = True
        stop(signum, frame)

    signal.signal(signal.SIGUSR2, on_restart)
    try:
        code = serve(args.config, **overrides)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 1
    except ListenError as exc:
        print(f"dicombox: {exc}", file=sys.stderr)
        return 1
    except BaseException:
        # A plugin that crashes the supervisor (say in its start hook, after a restart
        # onto new plugins) must not leave network workers serving with no supervisor.
        _end_children()
        raise
    if restart and code == 0:
        os.environ.update(hidden)
        print("dicombox: restarting in place", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "dicombox.core.cli", *argv])
    return code


def main(argv: list[str] | None = None) -> int:
    from dicombox.core import plugins as plugin_loader

    argv = list(sys.argv[1:] if argv is None else argv)
    # Which plugin environment runs is decided once, here, for this process and the
    # network workers it starts: they inherit it through the environment.
    plugin_env.pin(plugin_env.data_dir_from_args(argv))
    pm, _ = plugin_loader.discover()  # every plugin's verbs are listed, even disabled ones'

    def plugin_cli(sub: argparse._SubParsersAction) -> None:
        pm.hook.dicombox_cli(subparsers=sub)

    args = build_parser(plugin_cli).parse_args(argv)
    if args.verb == "config":
        return _config_check(args.file)
    # Tools (plugins keygen and bundle, tls selfsigned) need no box.
    if getattr(args, "tool", None) is not None:
        return int(args.tool(args))
    overrides = {"data_dir": args.data_dir}
    if args.verb == "serve":
        overrides |= {"ae_title": args.ae_title, "port": args.port, "workers": args.workers}
        return _serve(args, overrides, argv)
    try:
        config, pm, infos = load_plugins_and_config(args.config, **overrides)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 1
    box = open_box(config, pm, infos)
    try:
        return int(args.func(box, args))
    except BrokenPipeError:
        # `dicombox jobs | head`: the reader has what it wanted; say nothing more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        box.close()


if __name__ == "__main__":
    sys.exit(main())

"""``dicombox web user add | list | remove | passwd``: the console's accounts."""

from __future__ import annotations

import argparse
import getpass
import sys
import time

from dicombox.core.box import Box
from dicombox.core.tables import format_table
from dicombox.plugins.web.accounts import ROLES, AccountError, Accounts


def _password(args: argparse.Namespace) -> str:
    """From standard input (one line) with --password-stdin, else asked twice."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise AccountError("the two passwords differ")
    return first


def add_user(box: Box, args: argparse.Namespace) -> int:
    try:
        Accounts(box.index.engine).add(args.name, args.role, _password(args))
    except AccountError as exc:
        print(f"dicombox web user add: {exc}", file=sys.stderr)
        return 2
    print(f"user {args.name} added as {args.role}")
    return 0


def set_password(box: Box, args: argparse.Namespace) -> int:
    try:
        Accounts(box.index.engine).set_password(args.name, _password(args))
    except AccountError as exc:
        print(f"dicombox web user passwd: {exc}", file=sys.stderr)
        return 2
    print(f"password of {args.name} changed; their sessions are closed")
    return 0


def remove_user(box: Box, args: argparse.Namespace) -> int:
    try:
        Accounts(box.index.engine).remove(args.name)
    except AccountError as exc:
        print(f"dicombox web user remove: {exc}", file=sys.stderr)
        return 2
    print(f"user {args.name} removed")
    return 0


def list_users(box: Box, args: argparse.Namespace) -> int:
    users = Accounts(box.index.engine).list()
    if not users:
        print("no users: add one with 'dicombox web user add NAME --role admin'")
        return 0

    def when(t: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"

    rows = [[u.name, u.role, when(u.created_at), when(u.last_login)] for u in users]
    print(format_table(rows, ["NAME", "ROLE", "CREATED", "LAST LOGIN"]))
    return 0


def add_verb(subparsers: argparse._SubParsersAction) -> None:
    web = subparsers.add_parser("web", help="the web console: its user accounts")
    areas = web.add_subparsers(dest="web_area", required=True)
    user = areas.add_parser("user", help="add, list, remove console users")
    verbs = user.add_subparsers(dest="web_user_verb", required=True)
    add = verbs.add_parser("add", help="a new user (the password is asked for)")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, required=True,
                     help="viewer: looks; operator: also acts (burn, print, send, jobs); "
                     "admin: also checks configurations and manages users")  # fmt: skip
    add.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    add.set_defaults(func=add_user)
    passwd = verbs.add_parser("passwd", help="set a user's password (ends their sessions)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    passwd.set_defaults(func=set_password)
    verbs.add_parser("list", help="the users and their roles").set_defaults(func=list_users)
    remove = verbs.add_parser("remove", help="remove a user (ends their sessions)")
    remove.add_argument("name")
    remove.set_defaults(func=remove_user)

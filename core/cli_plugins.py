"""``dicombox plugins``: list the plugins; install, roll back, verify and sign plugin
bundles (the field update; see core/updates.py and core/bundles.py)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from dicombox.core import plugin_env, updates
from dicombox.core.box import Box
from dicombox.core.tables import format_table


def cmd_plugins(box: Box, args: argparse.Namespace) -> int:
    """``dicombox plugins``: each plugin, its version, state and where it comes from."""
    if args.json:
        print(json.dumps([dataclasses.asdict(i) for i in box.plugin_infos], indent=1))
        return 0
    print(
        format_table(
            [
                [
                    i.name,
                    i.version or "-",
                    "failed" if i.error else "enabled" if i.enabled else "disabled",
                    i.source,
                    i.distribution,
                    i.error or i.module,
                ]
                for i in box.plugin_infos
            ],
            ["PLUGIN", "VERSION", "STATE", "SOURCE", "DISTRIBUTION", "MODULE / ERROR"],
        )
    )
    store = plugin_env.EnvStore(box.data_dir)
    if store.current() is not None:
        print(f"plugin environment: {plugin_env.label(store.current())}")
        print(f"rollback goes to: {plugin_env.label(store.previous())}")
    return 0


def _update_site(box: Box, args: argparse.Namespace) -> updates.Site:
    return updates.Site(box.config, args.config)


def _refused(verb: str, exc: updates.UpdateRefused) -> int:
    print(f"dicombox plugins {verb}: refused: {exc.reason}")
    if exc.outcome:
        print(exc.outcome)
    return 1


def cmd_plugins_install(box: Box, args: argparse.Namespace) -> int:
    """``dicombox plugins install BUNDLE``: verify, install, try, switch, restart."""
    try:
        updates.install(_update_site(box, args), Path(args.bundle), print)
    except updates.UpdateRefused as exc:
        return _refused("install", exc)
    except plugin_env.EnvError as exc:  # another install holds the lock
        print(f"dicombox plugins install: {exc}")
        return 1
    return 0


def cmd_plugins_rollback(box: Box, args: argparse.Namespace) -> int:
    """``dicombox plugins rollback``: back to the previous plugin environment."""
    try:
        updates.rollback(_update_site(box, args), print)
    except updates.UpdateRefused as exc:
        return _refused("rollback", exc)
    except plugin_env.EnvError as exc:
        print(f"dicombox plugins rollback: {exc}")
        return 1
    return 0


def cmd_plugins_verify(box: Box, args: argparse.Namespace) -> int:
    """``dicombox plugins verify BUNDLE``: check a bundle against the trusted keys only."""
    from dicombox.core.bundles import BundleError, check_bundle

    with tempfile.TemporaryDirectory() as scratch:
        try:
            manifest = check_bundle(
                Path(args.bundle), box.config.updates.trusted_keys, Path(scratch)
            )
        except BundleError as exc:
            print(f"dicombox plugins verify: refused: {exc}")
            return 1
    plugins = ", ".join(p.name for p in manifest.plugins)
    print(f"{args.bundle}: {manifest.label} ({manifest.created}), signature and wheels OK")
    print(f"plugins: {plugins}; needs dicombox {manifest.min_dicombox} or later")
    return 0


def tool_keygen(args: argparse.Namespace) -> int:
    """``dicombox plugins keygen KEY``: a new signing key; prints its public half."""
    from dicombox.core.bundles import BundleError, generate_key

    try:
        public = generate_key(Path(args.key))
    except (BundleError, OSError) as exc:
        print(f"dicombox plugins keygen: {exc}")
        return 1
    print(f"private key written to {args.key}: keep it off the boxes")
    print("public key, for the configuration of each box that trusts it:")
    print(f'[updates]\ntrusted_keys = ["{public}"]')
    return 0


def tool_bundle(args: argparse.Namespace) -> int:
    """``dicombox plugins bundle --key KEY --out BUNDLE WHEEL…``: make a signed bundle."""
    from dicombox.core.bundles import BundleError, make_bundle

    try:
        manifest = make_bundle(
            Path(args.key),
            [Path(w) for w in args.wheels],
            Path(args.out),
            name=args.name or "",
            version=args.bundle_version or "",
            **({"min_dicombox": args.min_dicombox} if args.min_dicombox else {}),
        )
    except (BundleError, OSError) as exc:
        print(f"dicombox plugins bundle: {exc}")
        return 1
    print(
        f"{args.out}: {manifest.label}, {len(manifest.wheels)} wheel(s), plugins: "
        f"{', '.join(p.name for p in manifest.plugins)}"
    )
    return 0


def add_plugins_verbs(sub: argparse._SubParsersAction) -> None:
    """``dicombox plugins`` and its actions."""
    p = sub.add_parser("plugins", help="list plugins; install, roll back, sign plugin bundles")
    p.add_argument("--json", action="store_true", help="the plugin list as JSON")
    p.set_defaults(func=cmd_plugins)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    a = actions.add_parser(
        "install", help="verify a signed bundle, install it, restart onto it (or refuse it)"
    )
    a.add_argument("bundle")
    a.set_defaults(func=cmd_plugins_install)
    a = actions.add_parser("rollback", help="go back to the previous plugin environment")
    a.set_defaults(func=cmd_plugins_rollback)
    a = actions.add_parser("verify", help="check a bundle's signature and wheels only")
    a.add_argument("bundle")
    a.set_defaults(func=cmd_plugins_verify)
    a = actions.add_parser("keygen", help="make a signing key (for whoever makes bundles)")
    a.add_argument("key", help="file to write the private key to")
    a.set_defaults(func=None, tool=tool_keygen)
    a = actions.add_parser("bundle", help="sign wheels into a bundle")
    a.add_argument("--key", required=True, help="the private key file (from keygen)")
    a.add_argument("--out", required=True, help="the bundle file to write")
    a.add_argument("--name", help="bundle name (default: the first wheel's distribution)")
    a.add_argument(
        "--version",
        dest="bundle_version",
        metavar="VERSION",
        help="bundle version (default: the first wheel's)",
    )
    a.add_argument(
        "--min-dicombox", metavar="VERSION", help="oldest dicombox it runs on (default: this one)"
    )
    a.add_argument("wheels", nargs="+", metavar="WHEEL")
    a.set_defaults(func=None, tool=tool_bundle)

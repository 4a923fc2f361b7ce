"""``--config`` and ``--data-dir`` go before the verb or after it, for every verb: the
box's own, those plugins add through the ``dicombox_cli`` hook, and nested ones."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicombox.core import plugin_env
from dicombox.core import plugins as plugin_loader
from dicombox.core.cli import build_parser
from tests.support.boxproc import run_cli


def _parser() -> argparse.ArgumentParser:
    pm, _ = plugin_loader.discover()
    return build_parser(lambda sub: pm.hook.dicombox_cli(subparsers=sub))


def _verbs(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every verb path and its parser, sub-verbs included; a verb whose sub-verb must be
    given is not a command by itself."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if path and not any(a.required for a in subs):
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _verbs(sub, (*path, name))


def _required(parser: argparse.ArgumentParser) -> list[str]:
    """Values for a verb's required arguments, so that its command line parses."""
    argv: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        value = str(action.choices[0]) if action.choices else "1" if action.type is int else "x"
        if action.option_strings:
            if action.required:
                argv += [action.option_strings[0], value]
        elif action.nargs in (None, "+", 1):
            argv.append(value)
    return argv


def test_every_verb_takes_config_and_data_dir_before_and_after_it(monkeypatch):
    monkeypatch.delenv("DICOMBOX_CONFIG", raising=False)
    parser = _parser()
    verbs = list(_verbs(parser))
    names = {path for path, _ in verbs}
    # The box's own, plugins' (through the hook), and sub-verbs of each kind.
    assert {("studies",), ("serve",), ("echo",), ("burn",), ("worklist", "list")} <= names
    assert {("plugins", "install"), ("tls", "selftest"), ("config",)} <= names
    for path, verb in verbs:
        rest = _required(verb)
        lines = {
            "before": ["--config", "F", "--data-dir", "D", *path, *rest],
            "after": [*path, *rest, "--config", "F", "--data-dir", "D"],
            "short, after": [*path, *rest, "-c", "F", "--data-dir=D"],
            "between": [path[0], "--config", "F", "--data-dir", "D", *path[1:], *rest],
        }
        for where, argv in lines.items():
            args = parser.parse_args(argv)
            assert (args.config, args.data_dir) == ("F", "D"), f"{where}: {argv}"
        # Given on neither side, the top-level defaults stay.
        args = parser.parse_args([*path, *rest])
        assert (args.config, args.data_dir) == (None, None), path


def test_a_value_after_the_verb_wins_over_one_before_it(monkeypatch):
    monkeypatch.setenv("DICOMBOX_CONFIG", "from-env.toml")
    parser = _parser()
    assert parser.parse_args(["studies"]).config == "from-env.toml"
    args = parser.parse_args(["--config", "A", "studies", "--config", "B"])
    assert args.config == "B"


@pytest.mark.parametrize("where", ["before", "after"])
def test_the_plugin_environment_is_found_from_options_after_the_verb(tmp_path: Path, where: str):
    config = tmp_path / "box.toml"
    config.write_text(f'[box]\ndata_dir = "{tmp_path / "var"}"\n')
    options = ["--config", str(config)]
    argv = [*options, "plugins"] if where == "before" else ["plugins", "install", "b", *options]
    assert plugin_env.data_dir_from_args(argv) == tmp_path / "var"
    argv = ["studies", "--data-dir", str(tmp_path / "d"), "-c", str(config)]
    assert plugin_env.data_dir_from_args(argv) == tmp_path / "d"


def test_studies_and_conformance_read_the_config_given_after_the_verb(tmp_path: Path):
    config = tmp_path / "box.toml"
    config.write_text(
        f'[box]\nae_title = "AFTERVERB"\nport = 11999\ndata_dir = "{tmp_path / "var"}"\n'
    )
    studies = run_cli("studies", "--config", str(config))
    assert studies.returncode == 0, studies.stderr
    assert "no studies stored" in studies.stdout
    assert (tmp_path / "var").is_dir()
    conformance = run_cli("conformance", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert conformance.returncode == 0, conformance.stderr
    assert "AE titles: AFTERVERB" in conformance.stdout and "port 11999" in conformance.stdout
    assert (tmp_path / "d").is_dir()

"""The configuration file: defaults for every key, and errors that say what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicombox.core.config import ConfigError, load_config, parse_config
from tests.support.boxproc import run_cli


def test_an_empty_file_runs_on_defaults(tmp_path: Path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    config = load_config(path)
    assert (config.box.ae_title, config.box.port, config.box.data_dir) == (
        "DICOMBOX",
        11112,
        "./var",
    )
    assert config.storage.duplicates == "keep-first" and config.storage.reserve_mb == 512
    assert config.network.max_associations == 12 and config.network.max_pdu == 0


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[box]\nport = 'eleven'", "box.port = 'eleven': expected an integer"),
        ("[box]\nportt = 1", "[box] has unknown key 'portt'; allowed keys:"),
        ("[storage]\nduplicates = 'maybe'", "'keep-first' | 'replace' | 'keep-both' | 'reject'"),
        ("[box]\nae_title = 'A_TITLE_FAR_TOO_LONG'", "1 to 16 characters"),
        ("[media2]\nx = 1", "unknown section [media2]"),
        ("[[route]]\nforward = ['pacs']", "route[0].forward names 'pacs', which is no [[remote]]"),
        ("[[remote]]\nname = 'a'\nae_title = 'A'\nhost = 'h'", "[remote[0]] needs the key 'port'"),
        ("[remote]\nname = 'a'", "must be written [[remote]]"),
        # A forward retries without limit: no delay would be a tight loop at the peer.
        (
            "[[remote]]\nname = 'a'\nae_title = 'A'\nhost = 'h'\nport = 1\nretry_delay_s = 0",
            "expected 0 < retry_delay_s <= retry_delay_max_s",
        ),
        (
            "[[remote]]\nname = 'a'\nae_title = 'A'\nhost = 'h'\nport = 1\nretry_delay_s = 60"
            "\nretry_delay_max_s = 30",
            "retry_delay_s = 60.0, retry_delay_max_s = 30.0",
        ),
        # What the box says of itself in every A-ASSOCIATE-AC: pynetdicom cannot encode
        # these, and every association would drop unanswered.
        ("[network]\nimplementation_version = 'BOÎTE_1'", "1 to 16 printable ASCII"),
        ("[network]\nimplementation_version = ''", "1 to 16 printable ASCII"),
        ("[network]\nimplementation_class_uid = '1.2.3.abc'", "not a valid UID"),
        ("[network]\nimplementation_class_uid = '1.2." + "3" * 70 + "'", "not a valid UID"),
        ("[network]\nmin_data_rate = -1", "network.min_data_rate = -1: expected bytes per"),
        ("[network]\ndata_rate_window_s = 0", "network.data_rate_window_s = 0.0: expected > 0"),
        ("[network]\nmax_associations_per_host = -2", "max_associations_per_host = -2"),
    ],
)
def test_errors_name_key_value_and_rule(toml: str, message: str):
    import tomllib

    with pytest.raises(ConfigError) as caught:
        parse_config(tomllib.loads(toml))
    assert message in str(caught.value)


def test_config_check_cli(tmp_path: Path):
    good = tmp_path / "good.toml"
    good.write_text(
        '[box]\nae_title = "CTBOX"\n[[remote]]\nname = "pacs"\nae_title = "PACS"\n'
        'host = "127.0.0.1"\nport = 4242\n'
    )
    ok = run_cli("config", "check", str(good))
    assert ok.returncode == 0 and "OK (1 remote(s)" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[network]\nmax_pdu = 100\n")
    failed = run_cli("config", "check", str(bad))
    assert failed.returncode == 1
    assert "network.max_pdu = 100: 0 or at least 4096" in failed.stdout
    missing = run_cli("config", "check", str(tmp_path / "nope.toml"))
    assert missing.returncode == 1 and "no such configuration file" in missing.stdout


def test_plugins_cli_lists_versions_and_disabled(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text('[plugins]\ndisabled = ["storage"]\n')
    out = run_cli("--config", str(config), "--data-dir", str(tmp_path / "var"), "plugins")
    lines = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert "disabled" in lines["storage"] and "1.0.0" in lines["verification"]


def test_conformance_is_generated_from_loaded_plugins(tmp_path: Path):
    out = run_cli("--data-dir", str(tmp_path / "var"), "conformance", "--json")
    import json

    rows = json.loads(out.stdout)
    uids = {r["uid"] for r in rows}
    assert "1.3.12.2.1107.5.9.1" in uids and "1.2.840.10008.1.1" in uids
    assert "1.2.840.10008.5.1.4.1.1.88.67" in uids  # X-Ray Radiation Dose SR
    assert len([r for r in rows if r["service"] == "Storage"]) > 86


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[media]\nburner = "primera"', "burner = 'primera' needs hot_folder"),
        ('[media]\nviewer_dir = "/no/viewer"', "viewer_dir = '/no/viewer' is not"),
        ('[media]\nviewer_dir = "."\nviewer_start = "no.exe"', "'no.exe' is not a file in"),
        ('[worklist]\ncoerce_by = ["name"]', "coerce_by has 'name'"),
        ("[commitment]\nreport_wait_s = -1", "report_wait_s >= 0"),
        ('[[route]]\nwhen = { Colour = "red" }', "'Colour' is neither calling_ae"),
        (
            '[[remote]]\nname = "a"\nae_title = "A"\nhost = "h"\nport = 1\n'
            'transfer_syntaxes = ["jpeg2001"]',
            "transfer_syntaxes has 'jpeg2001'",
        ),
        ("[storage]\nwatermark_mb = 10\nwatermark_low_mb = 20", "watermark_low_mb must lie"),
    ],
)
def test_plugin_and_route_settings_are_checked(tmp_path: Path, toml: str, message: str):
    config = tmp_path / "box.toml"
    config.write_text(toml)
    result = run_cli("config", "check", str(config))
    assert result.returncode == 1 and message in result.stdout + result.stderr, result.stdout

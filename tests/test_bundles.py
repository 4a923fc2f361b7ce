"""Field updates: signed plugin bundles installed offline into a new plugin environment,
switched atomically, tried, and rolled back when the box fails its health check.

Real wheels of tiny plugins, real Ed25519 keys, real pip, real boxes (``dicombox serve``)
and a real C-ECHO peer."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from dicombox.core.updates import running
from tests.support.boxproc import RunningBox, run_cli
from tests.support.plugin_wheels import BROKEN_AT_IMPORT, BROKEN_AT_START, build_plugin


def answers_echo(port: int, ae_title: str = "DICOMBOX") -> bool:
    """C-ECHO with DCMTK's echoscu when it is installed, else with pynetdicom."""
    if shutil.which("echoscu"):
        done = subprocess.run(
            ["echoscu", "-aec", ae_title, "127.0.0.1", str(port)],
            capture_output=True,
            env={**os.environ, "TCP_NODELAY": "1"},
            timeout=30,
        )
        return done.returncode == 0
    ae = AE(ae_title="ECHOSCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=ae_title)
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status) and status.Status == 0


class Vendor:
    """Whoever makes bundles: a signing key, and wheels signed into bundles with it."""

    def __init__(self, where: Path, name: str = "vendor") -> None:
        self.where = where
        where.mkdir(parents=True, exist_ok=True)
        self.key = where / f"{name}.pem"
        out = run_cli("plugins", "keygen", str(self.key))
        assert out.returncode == 0, out.stdout + out.stderr
        self.public = out.stdout.split('trusted_keys = ["')[1].split('"')[0]

    def bundle(self, version: str, **plugin: str) -> Path:
        wheel = build_plugin(self.where / f"build-{version}", version, **plugin)
        out = self.where / f"hello-{version}.tar"
        made = run_cli("plugins", "bundle", "--key", str(self.key), "--out", str(out), str(wheel))
        assert made.returncode == 0, made.stdout + made.stderr
        return out


@pytest.fixture
def vendor(tmp_path: Path) -> Vendor:
    return Vendor(tmp_path / "vendor-side")


def site_config(vendor: Vendor, extra: str = "") -> str:
    return f'[updates]\ntrusted_keys = ["{vendor.public}"]\nhealth_timeout_s = 45\n{extra}'


@pytest.fixture
def box(tmp_path: Path, vendor: Vendor) -> Iterator[RunningBox]:
    """A box that trusts the vendor's key, not yet started."""
    running_box = RunningBox(tmp_path / "var", site_config(vendor))
    yield running_box
    running_box.stop()
    ready = running(running_box.data_dir)
    if ready:  # a box the installer started again after the first one died
        os.kill(int(ready["pid"]), signal.SIGTERM)
        deadline = time.monotonic() + 60
        while running(running_box.data_dir) and time.monotonic() < deadline:
            time.sleep(0.1)


def plugin_rows(box: RunningBox) -> dict[str, dict]:
    out = box.cli("plugins", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    return {row["name"]: row for row in json.loads(out.stdout)}


def environments(box: RunningBox) -> list[str]:
    envs = box.data_dir / "plugins" / "envs"
    return sorted(p.name for p in envs.iterdir()) if envs.exists() else []


def current(box: RunningBox) -> str | None:
    link = box.data_dir / "plugins" / "current"
    return os.readlink(link) if link.is_symlink() else None


def test_bundle_carries_signed_manifest_of_its_wheels(tmp_path: Path, vendor: Vendor):
    bundle = vendor.bundle("0.1")
    with tarfile.open(bundle) as tar:
        assert tar.getnames() == [
            "manifest.json",
            "manifest.sig",
            "dicombox_hello-0.1-py3-none-any.whl",
        ]
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert len(tar.extractfile("manifest.sig").read()) == 64  # type: ignore[union-attr]
    assert manifest["name"] == "dicombox-hello" and manifest["version"] == "0.1"
    assert manifest["plugins"] == [
        {"name": "hello", "value": "dicombox_hello", "distribution": "dicombox-hello"}
    ]
    (wheel,) = manifest["wheels"]
    assert len(wheel["sha256"]) == 64 and wheel["size"] > 0
    config = tmp_path / "box.toml"
    config.write_text(site_config(vendor))
    checked = run_cli(
        "--config",
        str(config),
        "--data-dir",
        str(tmp_path / "var"),
        "plugins",
        "verify",
        str(bundle),
    )
    assert checked.returncode == 0, checked.stdout
    assert "dicombox-hello 0.1" in checked.stdout and "signature and wheels OK" in checked.stdout


def test_install_offline_on_a_stopped_box(box: RunningBox, vendor: Vendor):
    out = box.cli("plugins", "install", str(vendor.bundle("0.1")))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "signature and 1 wheel(s) verified" in out.stdout
    assert "the box is not running: it starts with these plugins" in out.stdout
    hello = plugin_rows(box)["hello"]
    assert hello["enabled"] and hello["version"] == "0.1"
    assert hello["source"] == "bundle dicombox-hello 0.1"
    listing = box.cli("plugins").stdout
    assert "plugin environment: dicombox-hello 0.1" in listing
    assert "rollback goes to: built-in plugins only" in listing
    assert "hello from bundle" in box.cli("status").stdout
    with box:  # and the box starts with it
        assert answers_echo(box.port)
        assert "hello from bundle" in box.cli("status").stdout


def test_running_box_restarts_onto_the_bundle(box: RunningBox, vendor: Vendor):
    bundle = vendor.bundle("0.1")
    with box:
        pid = box.proc.pid  # type: ignore[union-attr]
        assert "hello from bundle" not in box.cli("status").stdout
        out = box.cli("plugins", "install", str(bundle))
        assert out.returncode == 0, out.stdout + out.stderr + box.output()[-3000:]
        assert "trial run passed: hello loaded" in out.stdout
        assert f"restarting the box (pid {pid}) on dicombox-hello 0.1" in out.stdout
        ready = running(box.data_dir)
        assert ready and ready["pid"] == pid  # restarted in place: the same process
        assert f"answers C-ECHO on port {ready['port']}" in out.stdout
        assert answers_echo(ready["port"])
        assert "hello from bundle" in box.cli("status").stdout
        assert "restarting in place" in box.output()


def test_bundle_plugin_replaces_the_built_in_of_the_same_name(box: RunningBox, vendor: Vendor):
    bundle = vendor.bundle(
        "2.0", distribution="dicombox-panel-plus", entry_point="panel", message="panel plus"
    )
    out = box.cli("plugins", "install", str(bundle))
    assert out.returncode == 0, out.stdout + out.stderr
    panel = plugin_rows(box)["panel"]
    assert panel["source"] == "bundle dicombox-panel-plus 2.0"
    assert panel["module"] == "dicombox_panel_plus" and panel["version"] == "2.0"
    assert "panel plus" in box.cli("status").stdout


def test_bundle_signed_by_an_untrusted_key_is_refused(box: RunningBox, vendor: Vendor, tmp_path):
    stranger = Vendor(tmp_path / "stranger-side", "stranger")
    out = box.cli("plugins", "install", str(stranger.bundle("0.1")))
    assert out.returncode == 1
    assert "refused: bad signature: the manifest is not signed by any of the 1 trusted" in (
        out.stdout
    )
    assert "nothing was switched: the box runs on built-in plugins only, as before" in out.stdout
    assert current(box) is None and environments(box) == []
    assert "hello" not in plugin_rows(box)


def test_manifest_changed_after_signing_is_refused(box: RunningBox, vendor: Vendor, tmp_path):
    bundle = vendor.bundle("0.1")
    with tarfile.open(bundle) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    members["manifest.json"] = members["manifest.json"].replace(b'"0.1"', b'"9.9"')
    forged = tmp_path / "forged.tar"
    with tarfile.open(forged, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = box.cli("plugins", "install", str(forged))
    assert out.returncode == 1 and "refused: bad signature" in out.stdout
    assert current(box) is None


def test_corrupt_wheel_is_refused(box: RunningBox, vendor: Vendor):
    bundle = vendor.bundle("0.1")
    data = bytearray(bundle.read_bytes())
    wheel_at = data.index(b"dicombox_hello.py")  # a file name inside the wheel's zip
    data[wheel_at] ^= 0x20
    bundle.write_bytes(bytes(data))
    out = box.cli("plugins", "install", str(bundle))
    assert out.returncode == 1
    assert "dicombox_hello-0.1-py3-none-any.whl: corrupt wheel: sha256 mismatch" in out.stdout
    assert current(box) is None and environments(box) == []


def test_broken_plugin_leaves_the_box_answering_on_the_old_one(box: RunningBox, vendor: Vendor):
    good = vendor.bundle("0.1")
    broken = vendor.bundle("0.2", module=BROKEN_AT_IMPORT, message="hello 0.2 is broken")
    assert box.cli("plugins", "install", str(good)).returncode == 0
    with box:
        before = running(box.data_dir)
        out = box.cli("plugins", "install", str(broken))
        assert out.returncode == 1, out.stdout
        assert (
            "refused: plugin hello failed to load: RuntimeError: hello 0.2 is broken" in out.stdout
        )
        assert "nothing was switched: the box runs on dicombox-hello 0.1, as before" in out.stdout
        assert running(box.data_dir) == before  # never restarted
        assert answers_echo(box.port)
        assert plugin_rows(box)["hello"]["version"] == "0.1"
        assert current(box) == "envs/1" and environments(box) == ["0", "1"]
        assert "hello from bundle" in box.cli("status").stdout


def test_box_failing_its_health_check_after_restart_is_rolled_back(box: RunningBox, vendor: Vendor):
    good = vendor.bundle("0.1")
    fails_at_start = vendor.bundle("0.2", module=BROKEN_AT_START, message="hello 0.2")
    assert box.cli("plugins", "install", str(good)).returncode == 0
    with box:
        pid = box.proc.pid  # type: ignore[union-attr]
        out = box.cli("plugins", "install", str(fails_at_start))
        assert out.returncode == 1, out.stdout + box.output()[-3000:]
        assert "trial run passed: hello loaded" in out.stdout
        assert "refused: the box failed its health check on dicombox-hello 0.2" in out.stdout
        assert "rolled back to dicombox-hello 0.1: the box answers C-ECHO again" in out.stdout
        ready = running(box.data_dir)
        # It died starting on 0.2, so the installer started it again as it had been started.
        assert ready and ready["pid"] != pid and answers_echo(ready["port"])
        assert plugin_rows(box)["hello"]["version"] == "0.1"
        assert current(box) == "envs/1" and environments(box) == ["0", "1"]
        assert "hello 0.2: cannot start here" in box.output()


def test_rollback_returns_to_the_previous_bundle(box: RunningBox, vendor: Vendor):
    first = vendor.bundle("0.1")
    second = vendor.bundle("0.2", message="hello again")
    assert box.cli("plugins", "install", str(first)).returncode == 0
    nothing = box.cli("plugins", "rollback")
    assert nothing.returncode == 0, nothing.stdout  # back to the built-in plugins only
    assert "hello" not in plugin_rows(box)
    assert box.cli("plugins", "rollback").returncode == 0  # and forward again
    assert box.cli("plugins", "install", str(second)).returncode == 0
    assert "hello again" in box.cli("status").stdout
    with box:
        pid = box.proc.pid  # type: ignore[union-attr]
        out = box.cli("plugins", "rollback")
        assert out.returncode == 0, out.stdout + box.output()[-3000:]
        assert "the box runs on dicombox-hello 0.1 and answers C-ECHO" in out.stdout
        ready = running(box.data_dir)
        assert ready and ready["pid"] == pid and answers_echo(ready["port"])
        assert plugin_rows(box)["hello"]["version"] == "0.1"
        status = box.cli("status").stdout
        assert "hello from bundle" in status and "hello again" not in status
        assert "rollback goes to: dicombox-hello 0.2" in box.cli("plugins").stdout


def test_rollback_with_nothing_before_is_refused(box: RunningBox):
    out = box.cli("plugins", "rollback")
    assert out.returncode == 1
    assert "refused: there is no previous plugin environment to go back to" in out.stdout


def test_trusted_keys_are_checked_in_the_configuration(tmp_path: Path):
    config = tmp_path / "bad.toml"
    config.write_text('[updates]\ntrusted_keys = ["not-a-key"]\n')
    out = run_cli("config", "check", str(config))
    assert out.returncode == 1
    assert "updates.trusted_keys[0] = 'not-a-key': not an Ed25519 public key" in out.stdout

"""compose.yaml and deploy/sipwatch.service: validated by the tools that read them.

    compose.yaml          `podman-compose config` (podman-compose from PyPI, a dev extra: it
                          parses and normalises the file and rejects what it cannot run), then
                          the layout this project depends on, read from its normalised output
    sipwatch.service      `systemd-analyze verify` (works without a running systemd), on a copy
                          whose binary paths point at this checkout's venv, since /opt/sipwatch
                          exists only on a node or in the image

Neither needs root; neither starts a container.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "sipwatch.service"


def _run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kw)
    except subprocess.TimeoutExpired:
        pytest.fail(f"timed out: {' '.join(argv)}", pytrace=False)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    try:
        import yaml  # podman-compose's own dependency
    except ImportError:
        pytest.fail("PyYAML missing: pip install podman-compose (the dev extra)", pytrace=False)
    if shutil.which("podman") is None:
        pytest.fail("podman not installed: apt-get install podman", pytrace=False)
    env = {**os.environ, "BASE_IMAGE": "localhost/base:test"}
    done = _run(
        [sys.executable, "-m", "podman_compose", "-f", str(ROOT / "compose.yaml"), "config"],
        cwd=ROOT,
        env=env,
    )
    if "No module named podman_compose" in done.stderr:
        pytest.fail(
            "podman-compose missing: pip install podman-compose (the dev extra)", pytrace=False
        )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


def test_compose_sidecar_shares_the_pbx_namespace(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"pbx", "sipwatch"}
    sipwatch, pbx = services["sipwatch"], services["pbx"]
    assert sipwatch["network_mode"] == "service:pbx"
    # ports of a shared namespace belong to the service that owns it
    assert "ports" not in sipwatch
    assert "127.0.0.1:9160:9160/tcp" in pbx["ports"]
    assert {"5060:5060/udp", "5060:5060/tcp"} <= set(pbx["ports"])
    assert sipwatch["depends_on"]["pbx"]["condition"] == "service_healthy"


def test_compose_config_mount_and_hardening(compose: dict[str, Any]) -> None:
    sipwatch = compose["services"]["sipwatch"]
    mount = "./deploy/compose/sipwatch.toml:/etc/sipwatch/sipwatch.toml:ro"
    assert mount in sipwatch["volumes"]
    assert (ROOT / "deploy" / "compose" / "sipwatch.toml").is_file()
    assert sipwatch["read_only"] is True
    assert sipwatch["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in sipwatch["security_opt"]
    for name in ("sipwatch", "pbx"):
        check = compose["services"][name]["healthcheck"]
        assert check["test"][0] == "CMD", name
    assert compose["services"]["sipwatch"]["healthcheck"]["test"][-1].endswith("healthcheck.py")
    # BASE_IMAGE reaches both builds
    for name in ("sipwatch", "pbx"):
        assert "BASE=localhost/base:test" in compose["services"][name]["build"]["args"]


@pytest.mark.parametrize(
    "text",
    [
        "services:\n  x:\n    image: a\n    volumes: [state:/var/lib/x]\n",  # undeclared volume
        "services:\n  x: [\n",  # not YAML
    ],
)
def test_compose_config_has_teeth(tmp_path: Path, text: str) -> None:
    """The validator used above refuses what it cannot run. It does not know every key
    (a misspelt key passes): a change to compose.yaml's keys deserves a check against the
    compose-spec schema too, which is no dependency of this project."""
    bad = tmp_path / "compose.yaml"
    bad.write_text(text)
    done = _run([sys.executable, "-m", "podman_compose", "-f", str(bad), "config"], cwd=tmp_path)
    assert done.returncode != 0


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze missing: apt-get install systemd", pytrace=False)
    text = UNIT.read_text()
    assert "ExecStart=/opt/sipwatch/bin/sipwatch run --config /etc/sipwatch/sipwatch.toml" in text
    sipwatch = Path(sys.executable).with_name("sipwatch")
    kill = shutil.which("kill") or "/bin/kill"
    copy = tmp_path / "sipwatch.service"
    copy.write_text(
        text.replace("/opt/sipwatch/bin/sipwatch", str(sipwatch)).replace("/bin/kill", kill)
    )
    done = _run([analyze, "verify", str(copy)])
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    done = _run([analyze, "security", "--offline=true", "--threshold=30", str(copy)])
    assert done.returncode == 0, done.stdout[-2000:]

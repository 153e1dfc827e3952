"""The status page (`GET /`) in a real browser: headless Chromium loads it from a real daemon
(a dry-run cluster agent on a file CIB, a real Kamailio), the test reads the rendered DOM,
and a screenshot is kept as a test artifact (build/test-artifacts/status-page.png)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_daemon import POLICY, get, running, wait_for

from testbed import free_port

pytestmark = pytest.mark.peers
SIPWATCH = str(Path(sys.executable).parent / "sipwatch")
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"


def chromium(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is missing: `make setup` installs Debian's chromium package")
    flags = [
        "--headless",
        "--no-sandbox",  # as root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={home / 'profile'}",
    ]
    return subprocess.run(
        [binary, *flags, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )


class _Texts(HTMLParser):
    """The text of each element with an id, and each probe row's cells, from the DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, str] = {}
        self.rows: dict[str, list[str]] = {}
        self._open: list[tuple[str | None, str | None]] = []
        self._cell = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self._open.append((a.get("id"), a.get("data-probe")))
        if a.get("data-probe"):
            self.rows[str(a["data-probe"])] = []
        if tag == "td":
            self._cell = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            row = next((p for _, p in reversed(self._open) if p), None)
            if row is not None:
                self.rows[row].append(self._cell.strip())
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        self._cell += data
        for ident, _ in self._open:
            if ident:
                self.by_id[ident] = self.by_id.get(ident, "") + data


def test_the_status_page_in_chromium_follows_the_pbx(kam, tmp_path: Path) -> None:
    from testbed.pacemaker import FileCluster

    cluster = FileCluster.build(tmp_path / "cib.xml")
    (tmp_path / "policy.toml").write_text(POLICY)
    port = free_port("tcp")
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text(
        f'policy = "policy.toml"\n[daemon]\nhttp_port = {port}\nverdict_file = ""\n'
        f'[[probes]]\nname = "pbx-udp"\nkind = "sip_options"\nuri = "{kam.uri("udp")}"\n'
        "interval_s = 0.5\ntimeout_s = 0.4\n"
        '[cluster]\nagent = "health_attribute"\ndry_run = true\nnode = "n1"\n'
        f'cib_file = "{cluster.path}"\n'
    )
    log = tmp_path / "daemon.log"
    with running(cfg, log):
        url = f"http://127.0.0.1:{port}/"

        def dom() -> _Texts:
            shown = chromium("--dump-dom", url, home=tmp_path)
            assert shown.returncode == 0, shown.stderr[-2000:]
            texts = _Texts()
            texts.feed(shown.stdout)
            return texts

        def readyz() -> int:
            try:
                return get(port, "/readyz")[0]
            except OSError:
                return 0  # not listening yet

        try:
            wait_for(lambda: readyz() == 200, timeout_s=15)
            green = dom()
            assert green.by_id["verdict"] == "green"
            assert green.by_id["role"] in ("active", "standby")
            assert green.rows["pbx-udp"][2] == "ok"
            assert "g_pbx runs on" in green.by_id["cluster-summary"]
            assert "no-reasons" in green.by_id

            kam.set_fault("OPTIONS", code=500)
            wait_for(lambda: readyz() == 503, timeout_s=15)
            red = dom()
            assert red.by_id["verdict"] == "red"
            assert red.rows["pbx-udp"][2] == "bad_status"
            assert "pbx-udp" in red.by_id["reasons"]
            assert "would" in red.by_id["actions"]  # the dry-run agent's publish_health
            shot = tmp_path / "status-page.png"
            taken = chromium(f"--screenshot={shot}", "--window-size=1200,900", url, home=tmp_path)
            assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-2000:]
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, ARTIFACTS / "status-page.png")
        finally:
            kam.clear_faults()


def test_a_register_probe_trace_shows_the_exchange_and_no_secret(kam, tmp_path: Path) -> None:
    """/probes/NAME/trace: REGISTER, the 401 challenge, the authorised REGISTER and its 200,
    in order; the password and the real digest response never appear (nor in the log)."""
    import re

    password = kam.users["monitor"]
    (tmp_path / "pw").write_text(password + "\n")
    (tmp_path / "pw").chmod(0o600)
    (tmp_path / "policy.toml").write_text(POLICY)
    port = free_port("tcp")
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text(
        f'policy = "policy.toml"\n[daemon]\nhttp_port = {port}\nverdict_file = ""\n'
        f'[[probes]]\nname = "reg"\nkind = "sip_register"\nuri = "{kam.uri("udp")}"\n'
        f'password_file = "{tmp_path / "pw"}"\ninterval_s = 0.5\ntimeout_s = 0.4\n'
    )
    log = tmp_path / "daemon.log"
    with running(cfg, log):

        def traced() -> str | None:
            try:
                status, text = get(port, "/probes/reg/trace")
            except OSError:
                return None
            return text if status == 200 and "SIP/2.0 200" in text else None

        text = wait_for(traced, timeout_s=15)
        assert get(port, "/probes/nope/trace")[0] == 404
        page = get(port, "/")[1]
    order = [m.group(0) for m in re.finditer(r"--> sent|<-- received", text)]
    assert order[:4] == ["--> sent", "<-- received", "--> sent", "<-- received"], text
    assert "SIP/2.0 401" in text and "Authorization: Digest" in text
    assert 'response="***"' in text
    assert not re.search(r'response="?[0-9a-f]{32}', text)
    assert password not in text and password not in log.read_text() and password not in page
    assert 'href="/probes/reg/trace"' in page

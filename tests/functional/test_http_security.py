"""The daemon's endpoint secured as exporter-toolkit secures an exporter's: TLS from a
certificate and key, basic auth from a users file of bcrypt hashes, the load balancers'
paths left open. A real `sipwatch run`, a real TLS client, a real Kamailio."""

from __future__ import annotations

import base64
import http.client
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt
import pytest
from test_daemon import POLICY, running, wait_for

from testbed import free_port

pytestmark = pytest.mark.peers
SIPWATCH = str(Path(sys.executable).parent / "sipwatch")
PASSWORD = "s3cret-monitor-pw"


def make_cert(where: Path) -> tuple[Path, Path]:
    cert, key = where / "http.crt", where / "http.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def fetch(port: int, path: str, cert: Path, auth: str | None = None) -> int:
    context = ssl.create_default_context(cafile=str(cert))
    request = urllib.request.Request(f"https://127.0.0.1:{port}{path}")
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=3, context=context) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def config(tmp_path: Path, kam, port: int, **daemon: str) -> Path:
    (tmp_path / "policy.toml").write_text(POLICY)
    lines = "".join(f'{k} = "{v}"\n' for k, v in daemon.items())
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text(
        f'policy = "policy.toml"\n[daemon]\nhttp_port = {port}\nverdict_file = ""\n{lines}'
        f'[[probes]]\nname = "pbx-udp"\nkind = "sip_options"\nuri = "{kam.uri("udp")}"\n'
        "interval_s = 0.5\ntimeout_s = 0.4\n"
    )
    return cfg


def test_tls_and_basic_auth_with_the_load_balancer_paths_open(kam, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    users = tmp_path / "users"
    users.write_text(
        f"# monitoring\nprom:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n"
    )
    users.chmod(0o600)
    port = free_port("tcp")
    cfg = config(
        tmp_path, kam, port,
        http_tls_cert_file=str(cert), http_tls_key_file=str(key), http_users_file=str(users),
    )  # fmt: skip
    log = tmp_path / "daemon.log"
    with running(cfg, log):

        def live() -> bool:
            try:
                return fetch(port, "/livez", cert) == 200
            except (OSError, urllib.error.URLError):
                return False

        wait_for(live, timeout_s=15)
        assert fetch(port, "/readyz", cert) in (200, 503)  # open: no credentials asked
        assert fetch(port, "/status", cert) == 401
        assert fetch(port, "/metrics", cert) == 401
        assert fetch(port, "/", cert, auth="prom:wrong") == 401
        assert fetch(port, "/", cert, auth=f"nobody:{PASSWORD}") == 401
        assert fetch(port, "/status", cert, auth=f"prom:{PASSWORD}") == 200
        assert fetch(port, "/metrics", cert, auth=f"prom:{PASSWORD}") == 200  # cached now
        with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP: not served
            urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=3)
    text = log.read_text()
    assert "event=http_auth_failed" in text and "tls=True auth=True" in text
    assert PASSWORD not in text and "wrong" not in text


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"http_users_file": "/nonexistent/users"}, "daemon.http_users_file: /nonexistent/users"),
        ({"http_tls_cert_file": "/nonexistent.crt"}, "go together"),
        (
            {"http_tls_cert_file": "/nonexistent.crt", "http_tls_key_file": "/nonexistent.key"},
            "does not exist",
        ),
    ],
)
def test_bad_security_settings_are_config_errors(kam, tmp_path: Path, setting, expected) -> None:
    cfg = config(tmp_path, kam, free_port("tcp"), **setting)
    done = subprocess.run(
        [SIPWATCH, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 6, done.stdout + done.stderr
    assert expected in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_a_users_file_others_can_read_is_warned_about(kam, tmp_path: Path) -> None:
    from sipwatch.http_security import load_users

    users = tmp_path / "users"
    users.write_text("prom:" + bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode() + "\n")
    users.chmod(0o644)
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("sipwatch.http").addHandler(handler)
    try:
        assert set(load_users(str(users))) == {"prom"}
    finally:
        logging.getLogger("sipwatch.http").removeHandler(handler)
    assert any("users_file_readable_by_others" in r.getMessage() for r in records)
    users.write_text("prom:plaintext\n")
    from sipwatch.errors import ConfigError

    with pytest.raises(ConfigError, match="line 1: expected name:bcrypt-hash"):
        load_users(str(users))

"""Password files as operators get them wrong (issue 17 §3, docs/bad-input.md): readable by
others (used, with a warning, as ssh warns of a key), a symlink (followed: Kubernetes and
systemd credentials are symlinks; its target's mode counts), dangling, missing, empty, a
directory (each a local error, exit 2, naming the file, never a traceback). Against the real
Kamailio registrar, through `sipwatch probe` and `sipwatch run`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed import free_port

pytestmark = pytest.mark.peers
SIPWATCH = str(Path(sys.executable).parent / "sipwatch")
PASSWORD = "monitor-secret-1"  # the session Kamailio's `monitor` (tests/conftest.py USERS)


def register(kam, path: Path) -> subprocess.CompletedProcess[str]:
    argv = [SIPWATCH, "probe", kam.uri("udp"), "--method", "REGISTER", "--password-file", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def secret(path: Path, mode: int, text: str = PASSWORD + "\n") -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o622])
def test_a_file_others_can_read_or_write_is_used_with_a_warning(kam, tmp_path, mode):
    done = register(kam, secret(tmp_path / "pw", mode))
    assert done.returncode == 0, done
    assert f"password file {tmp_path / 'pw'} is readable by others (mode {mode:o})" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_private_file_gives_no_warning(kam, tmp_path):
    done = register(kam, secret(tmp_path / "pw", 0o600))
    assert done.returncode == 0 and done.stderr == "", done


def test_a_symlink_is_followed_and_its_target_mode_counts(kam, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(secret(tmp_path / "pw", 0o600))
    done = register(kam, link)
    assert done.returncode == 0 and done.stderr == "", done
    (tmp_path / "pw").chmod(0o644)
    done = register(kam, link)
    assert done.returncode == 0 and "readable by others (mode 644)" in done.stderr, done


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p, "No such file or directory"),  # missing
        (lambda p: (p.parent / "dangling").symlink_to(p) or p.parent / "dangling", "No such file"),
        (lambda p: secret(p, 0o600, ""), "is empty"),
        (lambda p: secret(p, 0o600, "\n" + PASSWORD + "\n"), "is empty"),  # first line counts
        (lambda p: p.parent, "Is a directory"),
    ],
    ids=["missing", "dangling-symlink", "empty", "empty-first-line", "directory"],
)
def test_an_unusable_file_is_a_local_error_naming_it(kam, tmp_path, make, reason):
    path = make(tmp_path / "pw")
    done = register(kam, path)
    assert done.returncode == 2, done
    assert str(path) in done.stdout + done.stderr and reason in done.stdout + done.stderr, done
    assert "Traceback" not in done.stdout + done.stderr


def test_the_daemon_warns_once_at_start_and_at_each_reload(kam, tmp_path):
    pw = secret(tmp_path / "pw", 0o644)
    port = free_port("tcp")
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text(
        f'[daemon]\nhttp_port = {port}\nverdict_file = ""\n'
        f'[[probes]]\nname = "reg"\nkind = "sip_register"\nuri = "{kam.uri("udp")}"\n'
        f'password_file = "{pw}"\ninterval_s = 0.3\n'
    )
    log = tmp_path / "daemon.log"
    warning = f"event=password_file_readable_by_others probe=reg path={pw} mode=644"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SIPWATCH, "run", "--config", str(cfg)], stdout=out, stderr=subprocess.STDOUT
        )
    try:

        def count(text: str) -> int:
            return log.read_text().count(text)

        deadline = time.monotonic() + 15
        while count("event=daemon_started") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count(warning) == 1, log.read_text()
        proc.send_signal(1)  # SIGHUP: reload
        while count("event=config_reloaded") < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count(warning) == 2, log.read_text()
        assert "readable_by_others" in log.read_text() and PASSWORD not in log.read_text()
    finally:
        proc.kill()
        proc.wait(5)
    assert os.stat(pw).st_mode & 0o777 == 0o644  # warned about, never changed

"""`sipwatch check`'s fast path, the pure parts: which command lines take it (everything else
goes through argparse, unchanged), and the small [daemon] reader, which must agree with
tomllib wherever it answers and hand everything else to tomllib."""

from __future__ import annotations

import tomllib

import pytest

from sipwatch.check_fast import (
    DEFAULT_CONFIG,
    DEFAULT_HOST,
    DEFAULT_PORT,
    _daemon_section,
    daemon_endpoint,
    sha256_hex,
)
from sipwatch.cli import _plain_check
from sipwatch.config import DaemonSettings


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["check"], (DEFAULT_CONFIG, "text")),
        (["check", "--config", "a.toml"], ("a.toml", "text")),
        (["check", "--config=a.toml", "--format", "shell"], ("a.toml", "shell")),
        (["check", "--json", "--config", "a"], ("a", "json")),
        (["check", "--format", "json", "--format=text"], (DEFAULT_CONFIG, "text")),
        (["check", "--json", "--format", "shell"], (DEFAULT_CONFIG, "shell")),
        (["check", "--format", "nagios"], None),  # needs the policy's thresholds
        (["check", "--policy", "p"], None),
        (["check", "--no-daemon"], None),
        (["check", "--help"], None),
        (["check", "-h"], None),
        (["check", "--conf", "a"], None),  # an abbreviation: argparse's business
        (["check", "--config"], None),  # argparse reports the missing value
        (["check", "--config", "--json"], None),
        (["check", "--format", "xml"], None),
        (["check", "extra"], None),
        (["--version", "check"], None),
        (["probe", "sip:127.0.0.1"], None),
        ([], None),
    ],
)
def test_which_command_lines_take_the_fast_path(argv, expected):
    assert _plain_check(argv) == expected


def test_the_defaults_are_the_configs():
    defaults = DaemonSettings()
    assert (defaults.http_host, defaults.http_port) == (DEFAULT_HOST, DEFAULT_PORT)


def test_the_digest_is_sha256():
    import hashlib

    assert sha256_hex(b"x" * 1000) == hashlib.sha256(b"x" * 1000).hexdigest()


READ_HERE = [
    "",
    'policy = "p.toml"\n',
    "[daemon]\nhttp_port = 9200\n",
    '[daemon] # the HTTP side\nhttp_host = "::1"   # v6\nhttp_port = 1 # one\n',
    "[ daemon ]\nhttp_host = 'literal'\nhttp_users_file = '/etc/u'\n",
    '[[probes]]\nname = "a"\nuri = "sip:x"\n[daemon]\nhttp_port = 80\n[[probes]]\nname = "b"\n',
    "[daemon]\nhttp_port = 0\n[sip]\nt1_s = 0.5\n",
    '[probes.x]\ndaemon = 1\n[daemon]\nverdict_file = "/run/v"\n',
]
HANDED_TO_TOMLLIB = [
    "daemon.http_port = 9300\n",
    "daemon = { http_port = 9300 }\n",
    "[daemon.extra]\nx = 1\n",
    "[daemon]\nhttp_port = 9_300\n",
    "[daemon]\nhttp_port = 0x2454\n",
    "[daemon]\nhttp_port = 09300\n",
    '[daemon]\nhttp_host = "a\\u0062"\n',
    '[daemon]\n"http_port" = 9300\n',
    "[daemon]\nhttp.port = 1\n",
    'x = """\n[daemon]\nhttp_port = 1\n"""\n',
    "x = '''\n[daemon]\nhttp_port = 1\n'''\n",
    '[daemon]\nhttp_port = 1\n[daemon]\nhttp_host = "b"\n',
    '["daemon"]\nhttp_port = 1\n',
    "a = [\n[1, 2],\n]\n",
    "[daemon]\nhttp_port = 9300 junk\n",
    '[daemon]\nhttp_host = "a" junk\n',
]


@pytest.mark.parametrize("text", READ_HERE)
def test_the_small_reader_agrees_with_tomllib(text):
    section = _daemon_section(text)
    assert section is not None, "this one should be read without tomllib"
    full = tomllib.loads(text).get("daemon", {})
    assert section == {k: v for k, v in full.items() if k in ("http_host", "http_port")}


@pytest.mark.parametrize("text", HANDED_TO_TOMLLIB)
def test_anything_unusual_goes_to_tomllib(text):
    assert _daemon_section(text) is None


def test_the_endpoint_with_overrides(monkeypatch):
    raw = b'[daemon]\nhttp_host = "127.0.0.2"\nhttp_port = 9200\n'
    assert daemon_endpoint(raw) == ("127.0.0.2", 9200)
    assert daemon_endpoint(b"daemon.http_port = 9300\n") == (DEFAULT_HOST, 9300)  # tomllib
    assert daemon_endpoint(b"") == (DEFAULT_HOST, DEFAULT_PORT)
    assert daemon_endpoint(b"[daemon]\nhttp_port = 0\n") is None  # no HTTP side
    assert daemon_endpoint(b"[daemon\n") is None  # not TOML: the full path reports it
    assert daemon_endpoint(b"\xff") is None
    assert daemon_endpoint(b"daemon = 1\n") is None
    monkeypatch.setenv("SIPWATCH_DAEMON__HTTP_PORT", "9400")
    monkeypatch.setenv("SIPWATCH_DAEMON__HTTP_HOST", "::1")
    assert daemon_endpoint(raw) == ("::1", 9400)
    for bad in ("94OO", "\uff19\uff14", "70000", "", "-1"):
        monkeypatch.setenv("SIPWATCH_DAEMON__HTTP_PORT", bad)
        assert daemon_endpoint(raw) is None, bad

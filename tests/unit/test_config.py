"""Config loading: TOML + SIPWATCH_* env overrides; every error names the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipwatch.config import load_settings
from sipwatch.errors import ConfigError
from sipwatch.probes.sip_register import SipRegisterSpec

GOOD = """
[sip]
t1_s = 0.25

[dns]
nameservers = ["127.0.0.1"]
port = 5353

[[probes]]
name = "pbx-udp"
kind = "sip_options"
uri = "sip:127.0.0.1:5060"
alive_codes = ["2xx", "404"]

[[probes]]
name = "monitor-register"
kind = "sip_register"
uri = "sip:monitor@pbx.example.com"
password_env = "MONITOR_PW"
expires_s = 120
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sipwatch.toml"
    path.write_text(text)
    return path


def test_good_file_loads_into_probe_specs(tmp_path):
    s = load_settings(write(tmp_path, GOOD))
    assert s.sip.t1_s == 0.25 and s.dns.port == 5353
    assert [p.kind for p in s.probes] == ["sip_options", "sip_register"]
    reg = s.probes[1]
    assert isinstance(reg, SipRegisterSpec) and reg.expires_s == 120
    assert 404 in s.probes[0].alive and 500 not in s.probes[0].alive
    ctx = s.context()
    assert ctx.timers.t1_s == 0.25 and ctx.resolver.nameservers == ("127.0.0.1",)


def test_env_overrides_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SIPWATCH_SIP__T1_S", "0.1")
    monkeypatch.setenv("SIPWATCH_LOG_FORMAT", "json")
    s = load_settings(write(tmp_path, GOOD))
    assert s.sip.t1_s == 0.1 and s.log_format == "json"


@pytest.mark.parametrize(
    "snippet, key, reason",
    [
        ("[sip]\nt1_s = -1\n", "sip.t1_s", "greater than 0"),
        ("[sip]\nt1_s = 2.0\nt2_s = 1.0\n", "sip.t2_s", "t2_s must be >= t1_s"),
        ("[dns]\nport = 70000\n", "dns.port", "less than 65536"),
        ("[sip]\nbogus = 1\n", "sip.bogus", "Extra inputs"),
        ('[[probes]]\nkind = "sip_ping"\nuri = "sip:x"\n', "probes.0", "sip_ping"),
        ('[[probes]]\nkind = "sip_options"\nuri = "http://x"\n', "probes.0.sip_options", "scheme"),
        (
            '[[probes]]\nkind = "sip_options"\nuri = "sip:x"\ntimeout_s = 0\n',
            "probes.0.sip_options",
            "timeout_s",
        ),
        (
            '[[probes]]\nkind = "sip_options"\nuri = "sip:x"\nalive_codes = ["2yy"]\n',
            "probes.0.sip_options",
            "bad status code",
        ),
        (
            '[[probes]]\nkind = "sip_register"\nuri = "sip:x"\n',
            "probes.0.sip_register",
            "user part",
        ),
        (
            '[[probes]]\nkind = "sip_options"\nuri = "sip:x"\ntransport = "sctp"\n',
            "probes.0.sip_options",
            "transport",
        ),
        (
            '[[probes]]\nkind = "sip_options"\nuri = "sip:x"\nname = "a"\n'
            '[[probes]]\nkind = "sip_options"\nuri = "sip:y"\nname = "a"\n',
            "probes",
            "duplicate probe name",
        ),
    ],
)
def test_invalid_values_name_key_and_reason(tmp_path, snippet, key, reason):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, snippet))
    text = str(err.value)
    assert f"  {key}" in text and reason in text, text


def test_quorum_guard_needs_a_vip_probe(tmp_path):
    snippet = '[cluster]\nagent = "health_attribute"\nrelease_vip_without_quorum = true\n'
    with pytest.raises(ConfigError, match='needs a probe of kind "vip"'):
        load_settings(write(tmp_path, snippet))
    vip = '[[probes]]\nkind = "vip"\naddress = "10.0.0.100"\n'
    settings = load_settings(write(tmp_path, snippet + vip))
    assert settings.cluster.release_vip_without_quorum is True
    # Without an agent too (the OCF shim is then the path to Pacemaker).
    alone = load_settings(write(tmp_path, "[cluster]\nrelease_vip_without_quorum = true\n" + vip))
    assert alone.cluster.agent == "none"


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[sip\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_bad_env_override_names_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("SIPWATCH_SIP__T1_S", "fast")
    with pytest.raises(ConfigError, match=r"sip\.t1_s"):
        load_settings(write(tmp_path, GOOD))


def test_shipped_probe_sets_are_valid():
    root = Path(__file__).parent.parent.parent / "probes"
    files = sorted(root.glob("*.toml"))
    assert files, "probes/ must ship probe sets"
    for path in files:
        assert load_settings(path).probes, path


def test_portsip_node_probes_wss_5065_as_a_major_probe():
    """PortSIP's WebRTC transport (WSS 5065) is probed; every shipped policy makes it major
    while the other SIP transports stay critical (see the probe set's comment)."""
    from sipwatch.policy import load_policy

    root = Path(__file__).parent.parent.parent
    probes = {p.name: p for p in load_settings(root / "probes" / "portsip-node.toml").probes}
    wss = probes["pbx-wss"]
    assert (wss.parsed_uri.transport, wss.parsed_uri.port) == ("wss", 5065)
    assert wss.tls_ca_file == probes["pbx-tls"].tls_ca_file
    assert wss.tls_server_name == probes["pbx-tls"].tls_server_name
    for path in sorted((root / "policies").glob("*.toml")):
        policy = load_policy(path)
        assert policy.rule_for("pbx-wss", "sip_options").role == "major", path.name
        assert policy.rule_for("pbx-tls", "sip_options").role == "critical", path.name


def test_ws_keys_in_a_config_file(tmp_path):
    path = tmp_path / "ws.toml"
    path.write_text(
        '[[probes]]\nname = "w"\nkind = "sip_options"\nuri = "sip:127.0.0.1:8080"\n'
        'transport = "ws"\nws_path = "/sip"\nws_origin = "https://pbx.example"\n'
    )
    (spec,) = load_settings(path).probes
    assert (spec.parsed_uri.transport, spec.ws_path, spec.ws_origin) == (
        "ws",
        "/sip",
        "https://pbx.example",
    )
    path.write_text(
        '[[probes]]\nname = "w"\nkind = "sip_register"\nuri = "sip:m@127.0.0.1;transport=ws"\n'
        'ws_path = "no-slash"\n'
    )
    with pytest.raises(ConfigError, match="ws_path 'no-slash'"):
        load_settings(path)


def test_portsip_node_ships_a_commented_call_probe_that_validates(tmp_path):
    """The call through the VIP in the PortSIP probe set is commented out (addresses to
    edit); uncommented as it stands, it is a valid sip_call probe."""
    import re

    root = Path(__file__).parent.parent.parent
    text = (root / "probes" / "portsip-node.toml").read_text()
    start = text.index('# name = "call-ivr-via-vip"')
    block = text[text.rindex("# [[probes]]", 0, start) : text.index("\n\n", start)]
    path = write(tmp_path, re.sub(r"(?m)^# ", "", block))
    (spec,) = load_settings(path).probes
    assert (spec.kind, spec.media_s, spec.outbound_proxy) == (
        "sip_call",
        1.0,
        "sip:192.168.1.130:5060",
    )
    assert not any(
        p.kind == "sip_call" for p in load_settings(root / "probes" / "portsip-node.toml").probes
    )


@pytest.mark.parametrize(
    "line, why",
    [
        ("media_s = -1", "media_s must be between 0 and 30"),
        ("teardown_s = 0", "teardown_s must be > 0"),
        ("media_ms = 1", "media_ms"),
    ],
)
def test_call_probe_keys_are_checked(tmp_path, line, why):
    path = write(
        tmp_path, f'[[probes]]\nkind = "sip_call"\nuri = "sip:ivr@127.0.0.1:5060"\n{line}\n'
    )
    with pytest.raises(ConfigError, match=why):
        load_settings(path)


def test_a_config_rewritten_while_it_loads_is_read_once(tmp_path, monkeypatch):
    """A reload reads the file while a deploy or an editor writes it: the settings and the
    digest (`sipwatch check` trusts a daemon whose digest is its file's) come from one read.
    Here the file turns into bad TOML right after its first open: reading it a second time
    (as pydantic's TOML source did) raised TOMLDecodeError out of the daemon's reload."""
    import builtins
    import hashlib
    import io

    from sipwatch.config import load_config

    cfg = tmp_path / "sipwatch.toml"
    good = b'[[probes]]\nname = "pbx"\nkind = "sip_options"\nuri = "sip:127.0.0.1:5060"\n'
    cfg.write_bytes(good)
    real_open = io.open
    opens = []

    def racing_open(file, *args, **kwargs):
        if str(file) == str(cfg):
            opens.append(1)
            if len(opens) == 2:  # the writer got in between two reads
                with real_open(cfg, "wb") as fh:
                    fh.write(b"[daemon\n")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(io, "open", racing_open)
    monkeypatch.setattr(builtins, "open", racing_open)
    settings, digest = load_config(cfg)
    monkeypatch.undo()
    assert [p.name for p in settings.probes] == ["pbx"]
    assert digest == hashlib.sha256(good).hexdigest()
    assert len(opens) == 1

"""The node probe kinds in config files: each loads into its spec, bad values name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipwatch.config import load_settings
from sipwatch.errors import ConfigError
from sipwatch.probes import kinds
from sipwatch.probes.drbd import DrbdSpec
from sipwatch.probes.from_vip import FromVipSpec
from sipwatch.probes.pbx_process import PbxProcessSpec
from sipwatch.probes.via_vip import ViaVipSipSpec
from sipwatch.probes.vip import VipSpec

GOOD = """
[[probes]]
name = "ivr-via-vip"
kind = "via_vip_sip"
uri = "sip:192.0.2.24:5060"
outbound_proxy = "sip:192.0.2.130:5060"
server_match = "PortSIP IVR"

[[probes]]
name = "ivr-from-vip"
kind = "from_vip"
uri = "sip:192.0.2.24:5060"
source_address = "192.0.2.130"
method = "tcp"

[[probes]]
name = "pbx"
kind = "pbx_process"
pidfile = "/run/pbx.pid"
listen_port = 5060
always_running = true

[[probes]]
name = "vip"
kind = "vip"
address = "192.0.2.130"
interface = "eth1"

[[probes]]
name = "drbd"
kind = "drbd"
resource = "portsip"
command = ["/usr/sbin/drbdsetup", "status", "--json"]
timeout_s = 3.0
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_every_kind_loads_into_its_spec(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, GOOD))
    kinds = [type(p) for p in s.probes]
    assert kinds == [ViaVipSipSpec, FromVipSpec, PbxProcessSpec, VipSpec, DrbdSpec]
    via, from_vip, proc, vip, drbd = s.probes
    assert str(via.next_hop) == "sip:192.0.2.130:5060"
    assert via.route_headers() == (("Route", "<sip:192.0.2.130:5060;lr>"),)
    assert from_vip.local_addr == ("192.0.2.130", 0) and from_vip.method == "tcp"
    assert proc.always_running and proc.listen_port == 5060
    assert str(vip.ip) == "192.0.2.130"
    assert drbd.command == ("/usr/sbin/drbdsetup", "status", "--json")


def test_registry_knows_every_kind() -> None:
    expected = {
        "via_vip_sip": ViaVipSipSpec,
        "from_vip": FromVipSpec,
        "pbx_process": PbxProcessSpec,
        "vip": VipSpec,
        "drbd": DrbdSpec,
    }
    for kind, spec in expected.items():
        assert kinds()[kind].spec is spec


@pytest.mark.parametrize(
    "snippet, phrase",
    [
        ('kind = "via_vip_sip"\nuri = "sip:192.0.2.24"\n', "outbound_proxy"),
        ('kind = "via_vip_sip"\nuri = "sip:a"\noutbound_proxy = "x"\n', "outbound_proxy"),
        (
            'kind = "via_vip_sip"\nuri = "sip:a"\noutbound_proxy = "sip:b"\nserver_match = "("\n',
            "server_match",
        ),
        ('kind = "from_vip"\nuri = "sip:192.0.2.24"\n', "source_address"),
        ('kind = "from_vip"\nuri = "sip:a"\nsource_address = "vip"\n', "not an IP address"),
        (
            'kind = "from_vip"\nuri = "sip:a"\nsource_address = "192.0.2.1"\nmethod = "icmp"\n',
            "method",
        ),
        ('kind = "pbx_process"\n', "at least one of"),
        ('kind = "pbx_process"\npidfile = "/run/x"\nbogus = 1\n', "bogus"),
        ('kind = "vip"\naddress = "192.0.2.300"\n', "not an IP address"),
        ('kind = "drbd"\ncommand = []\n', "command"),
        ('kind = "drbd"\ntimeout_s = 0\n', "timeout_s"),
    ],
)
def test_bad_values_are_config_errors(tmp_path: Path, snippet: str, phrase: str) -> None:
    with pytest.raises(ConfigError, match=phrase):
        load_settings(write(tmp_path, "[[probes]]\n" + snippet))

"""One test per crash the fuzz targets (fuzz/, `make fuzz`) found, named after the bug, with
the minimised input: each parser must refuse it with its own parse error, never let another
exception escape. The inputs are also in fuzz/corpus/<target>/ as seeds."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sipwatch.cluster.pacemaker import (
    CallResult,
    CibSnapshot,
    ClusterView,
    PacemakerTools,
    _parse,
)
from sipwatch.config import load_settings
from sipwatch.errors import ClusterError, ConfigError, SipUriError
from sipwatch.policy.load import load_policy
from sipwatch.probes.drbd import DrbdParseError, parse_status
from sipwatch.sip.uri import parse_uri

#: Nesting deeper than the interpreter's recursion limit: what a recursive reader cannot take.
DEEP = sys.getrecursionlimit() + 10


def test_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    # fuzz target `config`: tomllib.load decodes the bytes itself and raises
    # UnicodeDecodeError, which is not a TOMLDecodeError.
    path = tmp_path / "sipwatch.toml"
    path.write_bytes(b'[sip]\nuser_agent = "\xff"\n')
    with pytest.raises(ConfigError, match=r"sipwatch\.toml is not UTF-8"):
        load_settings(path)


def test_policy_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    # fuzz target `policy`: the same UnicodeDecodeError from tomllib.load.
    path = tmp_path / "policy.toml"
    path.write_bytes(b'description = "\xeb"\n')
    with pytest.raises(ConfigError, match=r"policy\.toml is not UTF-8"):
        load_policy(path)


def test_config_file_nested_too_deeply_is_a_config_error(tmp_path: Path) -> None:
    # tomllib parses arrays and inline tables recursively: RecursionError.
    path = tmp_path / "sipwatch.toml"
    path.write_bytes(b"a = " + b"[" * DEEP)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_settings(path)


def test_policy_file_nested_too_deeply_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(b"a = " + b"{b=" * DEEP)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_policy(path)


def test_drbd_status_nested_too_deeply_is_a_parse_error() -> None:
    # json.loads recurses per array/object level: RecursionError, not ValueError.
    with pytest.raises(DrbdParseError, match="nested too deeply"):
        parse_status(b"[" * DEEP)


def _mon_root(text: str) -> ET.Element:
    return _parse(CallResult("crm_mon", 0, text), "pacemaker-result")


def _deep_resources(tag: str) -> str:
    return f"<{tag} id='g'>" * DEEP + f"</{tag}>" * DEEP


@pytest.mark.parametrize("tag", ["group", "clone", "bundle"])
def test_crm_resources_nested_too_deeply_are_a_cluster_error(tag: str) -> None:
    # ClusterView.from_xml walked nested groups/clones/bundles recursively: RecursionError.
    # Pacemaker nests at most a bundle or clone around a group around primitives.
    root = _mon_root(
        f"<pacemaker-result><resources>{_deep_resources(tag)}</resources></pacemaker-result>"
    )
    with pytest.raises(ClusterError, match="nested"):
        ClusterView.from_xml(root)


def test_crm_simulate_resources_nested_too_deeply_are_a_cluster_error() -> None:
    class Canned(PacemakerTools):
        def run(
            self,
            tool: str,
            args: Sequence[str],
            *,
            cib_file: Path | None = None,
            retry: bool = True,
        ) -> CallResult:
            status = f"<cluster_status><resources>{_deep_resources('group')}</resources>"
            return CallResult(
                tool, 0, f"<pacemaker-result>{status}</cluster_status></pacemaker-result>"
            )

    with pytest.raises(ClusterError, match=r"crm_simulate: .* nested"):
        Canned(env={}).simulate(Path("cib.xml"))


def test_uri_with_control_characters_in_a_parameter_is_refused() -> None:
    # fuzz target `sip_headers` (URI sub-target): parse_uri took any character in a parameter
    # value and in the headers; str.strip() then ate the trailing \x1f of the printed URI, so
    # it read back as another URI, and a CR/LF could have reached a Request-URI.
    text = "sips:a5s;transport;tct=x" + "\x1f" * 19 + "?" + "\x1f" * 23
    with pytest.raises(SipUriError, match=r"invalid (URI parameter|headers part)"):
        parse_uri(text)
    with pytest.raises(SipUriError, match="invalid URI parameter"):
        parse_uri(text.partition("?")[0])


@pytest.mark.parametrize(
    "text",
    [
        "sip:pbx\n;lr",  # host: `$` matched before a trailing newline
        "sip:100\n@pbx",  # user, the same
        "sip:pbx;lr\r\nX: y",  # a header smuggled through a parameter
        "sip:pbx?Subject=\x00",  # headers after '?' are checked too, though not kept
        "sip:pbx;na me=1",
        "sip:pbx;lr\x1f",  # str.strip() took \x1f for whitespace
    ],
)
def test_uri_parts_must_be_rfc3261_characters_whole(text: str) -> None:
    with pytest.raises(SipUriError):
        parse_uri(text)


BAN_WITHOUT_OFFSET = """<cib><configuration><constraints>
  <rsc_location id="cli-ban-g-on-n1" rsc="g" role="Started"><rule id="r" score="-INFINITY">
    <expression id="e" attribute="#uname" operation="eq" value="n1"/>
    <date_expression id="d" operation="lt" end="2030-01-02 03:04:05"/></rule></rsc_location>
</constraints></configuration></cib>"""


def test_ban_end_without_utc_offset_is_local_time() -> None:
    # fuzz target `cibadmin`: an end date without an offset parsed to a naive datetime, and
    # BanInfo.active() raised TypeError comparing it with the agent's aware clock. Pacemaker
    # reads such a date as local time; so does sipwatch.
    ban = CibSnapshot(Path("/dev/null"), ET.fromstring(BAN_WITHOUT_OFFSET)).bans("g")["n1"]
    local = datetime(2030, 1, 2, 3, 4, 5).astimezone()
    assert ban.end == local
    assert ban.active(local - timedelta(seconds=1))
    assert not ban.active(local + timedelta(seconds=1))


def test_a_101_with_a_non_ascii_header_value_is_malformed_not_a_traceback() -> None:
    # fuzz target `ws_frames`: wsproto decodes the 101's comma lists as ASCII and let a
    # UnicodeDecodeError out of WsClient.receive, which the probe did not catch.
    from sipwatch.sip.ws import Failed, WsClient

    client = WsClient("127.0.0.1", 5066, secure=False)
    client.handshake()
    events = client.receive(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        b"Connection: \xffUpgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"
    )
    assert len(events) == 1 and isinstance(events[0], Failed), events
    assert events[0].kind == "malformed" and "not ASCII" in events[0].detail


def test_a_full_datagram_without_content_length_gains_one_written_back() -> None:
    # fuzz target `sip_message` (its round-trip property, not a crash of sipwatch): a datagram
    # of MAX_HEADERS fields and no Content-Length parses; written back for a stream it gets a
    # Content-Length, one field over the parser's limit, which a stream parse refuses clearly.
    from sipwatch.errors import SipParseError
    from sipwatch.sip.message import MAX_HEADERS, parse_message

    head = (
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
        "From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
    )
    fillers = "".join(f"X-{i}: y\r\n" for i in range(MAX_HEADERS - 5))
    message = parse_message((head + fillers + "\r\n").encode(), datagram=True)
    assert len(message.headers) == MAX_HEADERS
    written = message.to_bytes()
    assert b"\r\nContent-Length: 0\r\n" in written
    with pytest.raises(SipParseError, match=f"more than {MAX_HEADERS} header fields"):
        parse_message(written, datagram=False)

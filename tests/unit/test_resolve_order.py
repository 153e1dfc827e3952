"""Pure parts of RFC 3263 server location: SRV ordering (RFC 2782), transport selection
(RFC 3263 §4.1), NAPTR filtering, SRV names. No DNS here; see tests/functional/test_resolve.py.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipwatch.errors import ConfigError
from sipwatch.sip.resolve import (
    NaptrRecord,
    ResolveError,
    ResolverConfig,
    SrvQuery,
    SrvRecord,
    Target,
    default_port,
    order_srv,
    select_naptr,
    select_transport,
    srv_queries,
)
from sipwatch.sip.uri import parse_uri

ALL = ("udp", "tcp", "tls")


def srv(target: str, priority: int = 0, weight: int = 0, port: int = 5060) -> SrvRecord:
    return SrvRecord(priority=priority, weight=weight, port=port, target=target)


# --- order_srv (RFC 2782 usage rules) ------------------------------------------------------


def test_order_srv_sorts_by_ascending_priority() -> None:
    records = [srv("c", priority=30), srv("a", priority=10), srv("b", priority=20)]
    ordered = order_srv(records, random.Random(1))
    assert [r.target for r in ordered] == ["a", "b", "c"]


def test_order_srv_weight_90_10_picks_heavy_first_about_nine_times_in_ten() -> None:
    rng = random.Random(20240601)
    heavy, light = srv("heavy", weight=90), srv("light", weight=10)
    firsts = Counter(order_srv([light, heavy], rng)[0].target for _ in range(2000))
    # RFC 2782 draws 0..sum inclusive, so P(heavy first) = 91/101 ≈ 0.90 → ~1802 of 2000.
    assert 1720 <= firsts["heavy"] <= 1880
    assert firsts["heavy"] + firsts["light"] == 2000


def test_order_srv_weight_zero_is_rarely_first_but_never_dropped() -> None:
    rng = random.Random(7)
    zero, ten = srv("zero", weight=0), srv("ten", weight=10)
    firsts: Counter[str] = Counter()
    for _ in range(2000):
        ordered = order_srv([ten, zero], rng)
        assert sorted(r.target for r in ordered) == ["ten", "zero"]
        firsts[ordered[0].target] += 1
    # Weight 0 is placed first and wins only when the draw is 0: P = 1/11 → ~182 of 2000.
    assert 110 <= firsts["zero"] <= 260


def test_order_srv_all_weights_zero_spreads_evenly() -> None:
    rng = random.Random(3)
    records = [srv("a"), srv("b"), srv("c")]
    firsts = Counter(order_srv(records, rng)[0].target for _ in range(3000))
    assert set(firsts) == {"a", "b", "c"}
    assert all(850 <= n <= 1150 for n in firsts.values()), firsts


def test_order_srv_is_deterministic_for_a_seeded_rng() -> None:
    records = [srv(name, weight=w) for name, w in [("a", 10), ("b", 20), ("c", 30), ("d", 0)]]
    first = order_srv(records, random.Random(99))
    assert first == order_srv(records, random.Random(99))
    assert sorted(r.target for r in first) == ["a", "b", "c", "d"]


def test_order_srv_drops_dot_targets() -> None:
    ordered = order_srv([srv(".", priority=0), srv("real", priority=10)], random.Random(0))
    assert ordered == [srv("real", priority=10)]


def test_order_srv_all_dot_targets_give_empty_list() -> None:
    assert order_srv([srv("."), srv(".", priority=5)], random.Random(0)) == []


def test_order_srv_empty_input() -> None:
    assert order_srv([], random.Random(0)) == []


@given(
    st.lists(
        st.builds(
            SrvRecord,
            priority=st.integers(0, 3),
            weight=st.integers(0, 100),
            port=st.integers(1, 65535),
            target=st.sampled_from(["a", "b", "c", "d", "."]),
        ),
        max_size=12,
    ),
    st.integers(0, 2**32),
)
def test_order_srv_priority_respected_and_nothing_lost(records: list[SrvRecord], seed: int) -> None:
    ordered = order_srv(records, random.Random(seed))
    priorities = [r.priority for r in ordered]
    assert priorities == sorted(priorities)
    assert Counter(ordered) == Counter(r for r in records if r.target != ".")


# --- select_transport (RFC 3263 §4.1) ------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "transports", "expected"),
    [
        ("sip:pbx.example.test", ALL, None),  # DNS decides (NAPTR, SRV)
        ("sips:pbx.example.test", ALL, None),
        ("sip:pbx.example.test;transport=tcp", ALL, "tcp"),
        ("sip:pbx.example.test;transport=UDP", ALL, "udp"),
        ("sip:pbx.example.test;transport=tls", ALL, "tls"),
        ("sips:pbx.example.test;transport=tcp", ALL, "tls"),  # RFC 3261 §26.2
        ("sips:pbx.example.test;transport=tls", ALL, "tls"),
        ("sip:192.0.2.1", ALL, "udp"),
        ("sip:[2001:db8::1]", ALL, "udp"),
        ("sips:192.0.2.1", ALL, "tls"),
        ("sip:pbx.example.test:5080", ALL, "udp"),  # explicit port, no transport: UDP
        ("sips:pbx.example.test:5081", ALL, "tls"),
        ("sip:pbx.example.test:5080", ("tcp", "tls"), "tcp"),  # no UDP in the client: TCP
        ("sip:pbx.example.test;maddr=192.0.2.9", ALL, "udp"),  # TARGET is maddr (§4)
        ("sip:192.0.2.1;transport=tcp", ALL, "tcp"),
    ],
)
def test_select_transport(uri: str, transports: tuple[str, ...], expected: str | None) -> None:
    assert select_transport(parse_uri(uri), transports) == expected


@pytest.mark.parametrize(
    ("uri", "transports", "in_message"),
    [
        ("sips:pbx.example.test;transport=udp", ALL, "transport=udp is not allowed"),
        ("sip:pbx.example.test;transport=tcp", ("udp",), "'tcp' is not supported"),
        ("sip:pbx.example.test;transport=ws", ALL, "'ws' is not supported"),
        ("sips:192.0.2.1", ("udp", "tcp"), "no supported transport for a sips URI"),
        ("sip:192.0.2.1", ("tls",), "no supported transport for a sip URI"),
    ],
)
def test_select_transport_refuses(uri: str, transports: tuple[str, ...], in_message: str) -> None:
    with pytest.raises(ResolveError) as info:
        select_transport(parse_uri(uri), transports)
    assert in_message in str(info.value)
    assert info.value.reason == "no_transport"
    assert info.value.is_local


# --- select_naptr (RFC 3263 §4.1) ----------------------------------------------------------


def naptr(order: int, pref: int, service: str, repl: str, flags: str = "s") -> NaptrRecord:
    return NaptrRecord(order, pref, flags, service, "", repl)


NAPTRS = [
    naptr(30, 10, "SIP+D2U", "_sip._udp.x.test"),
    naptr(20, 20, "SIP+D2T", "_sip._tcp-b.x.test"),
    naptr(20, 10, "sip+d2t", "_sip._tcp.x.test"),  # services are case-insensitive
    naptr(10, 10, "SIPS+D2T", "_sips._tcp.x.test", flags="S"),
    naptr(1, 1, "SIPS+D2W", "_sips._ws.x.test"),  # WebSocket: not ours
    naptr(2, 1, "E2U+sip", "x.test", flags="u"),  # ENUM, not a SIP service
    naptr(3, 1, "SIP+D2U", "x.test", flags="a"),  # not terminal-to-SRV
    naptr(4, 1, "SIP+D2U", "."),  # no replacement
]


def test_select_naptr_orders_by_order_then_preference_and_drops_others() -> None:
    assert select_naptr(NAPTRS, "sip", ALL) == [
        SrvQuery("tls", "_sips._tcp.x.test"),
        SrvQuery("tcp", "_sip._tcp.x.test"),
        SrvQuery("tcp", "_sip._tcp-b.x.test"),
        SrvQuery("udp", "_sip._udp.x.test"),
    ]


def test_select_naptr_sips_keeps_only_sips_d2t() -> None:
    assert select_naptr(NAPTRS, "sips", ALL) == [SrvQuery("tls", "_sips._tcp.x.test")]


def test_select_naptr_drops_transports_the_client_lacks() -> None:
    assert select_naptr(NAPTRS, "sip", ("udp",)) == [SrvQuery("udp", "_sip._udp.x.test")]
    assert select_naptr(NAPTRS, "sips", ("udp", "tcp")) == []


def test_select_naptr_ignores_records_with_a_regexp() -> None:
    record = NaptrRecord(10, 10, "s", "SIP+D2U", "!^.*$!sip:x@x.test!", "_sip._udp.x.test")
    assert select_naptr([record], "sip", ALL) == []


# --- srv_queries, ports, Target, config ----------------------------------------------------


def test_srv_queries_for_sip_in_udp_tcp_tls_order() -> None:
    assert srv_queries("sip", "x.test", ALL) == [
        SrvQuery("udp", "_sip._udp.x.test"),
        SrvQuery("tcp", "_sip._tcp.x.test"),
        SrvQuery("tls", "_sips._tcp.x.test"),
    ]


def test_srv_queries_for_sips_only_sips_tcp() -> None:
    assert srv_queries("sips", "x.test", ALL) == [SrvQuery("tls", "_sips._tcp.x.test")]


def test_srv_queries_respects_client_transports() -> None:
    assert srv_queries("sip", "x.test", ("tcp",)) == [SrvQuery("tcp", "_sip._tcp.x.test")]


def test_default_ports() -> None:
    assert (default_port("udp"), default_port("tcp"), default_port("tls")) == (5060, 5060, 5061)


def test_target_str_brackets_ipv6_only() -> None:
    assert str(Target("udp", "192.0.2.1", 5060, "a.test")) == "udp:192.0.2.1:5060"
    assert str(Target("tls", "2001:db8::1", 5061, "a.test")) == "tls:[2001:db8::1]:5061"


def test_target_rejects_unknown_transport_and_bad_port() -> None:
    with pytest.raises(ValueError, match="transport"):
        Target("sctp", "192.0.2.1", 5060, "a.test")
    with pytest.raises(ValueError, match="port 0"):
        Target("udp", "192.0.2.1", 0, "a.test")


def test_resolver_config_rejects_unknown_transport_and_bad_timeout() -> None:
    with pytest.raises(ConfigError, match="transports"):
        ResolverConfig(transports=("udp", "sctp"))  # ws and wss are supported (RFC 7118)
    with pytest.raises(ConfigError, match="timeout_s"):
        ResolverConfig(timeout_s=0)

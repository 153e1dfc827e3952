"""`sipwatch run` with a `sip_call` probe against sipp as the IVR: /status shows the call's
outcome and extra fields, /metrics its success; an IVR that answers without echo turns it
`no_media` and the node yellow (the shipped policy's `major` role for sip_call). After the
daemon stops, sipp's own counters show no call still open: every call got its BYE."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed import MissingToolError, free_port
from testbed.sipp import SippIvr, start_sipp_ivr, start_sipp_uas
from tests.functional.test_daemon import _listening, get, running, wait_for

pytestmark = pytest.mark.peers
ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "data" / "sipp" / "answer.xml"


def _ivr(tmp_path: Path, rtp_echo: bool) -> SippIvr:
    try:
        return start_sipp_ivr(
            SCENARIO, tmp_path / ("echo" if rtp_echo else "silent"), rtp_echo=rtp_echo,
            calls=0, max_open=5, call_timeout_s=60,
        )  # fmt: skip
    except MissingToolError as exc:
        pytest.fail(str(exc), pytrace=False)


def _config(tmp_path: Path, uri: str, port: int, options_uri: str) -> Path:
    # The shipped policy, its startup grace off: that grace would make any failure yellow.
    shipped = (ROOT / "policies" / "default.toml").read_text()
    (tmp_path / "policy.toml").write_text(
        shipped.replace("startup_grace_s = 30.0", "startup_grace_s = 0.0", 1)
    )
    cfg = tmp_path / "sipwatch.toml"
    cfg.write_text(
        f'policy = "policy.toml"\n[daemon]\nhttp_port = {port}\n'
        f'[[probes]]\nname = "call-ivr"\nkind = "sip_call"\nuri = "{uri}"\n'
        "interval_s = 0.5\ntimeout_s = 2.0\nmedia_s = 0.5\nteardown_s = 1.0\n"
        # The node's PBX answers OPTIONS: with the call probe alone down the score would be
        # 0 and the node red by score; next to a healthy critical probe, major is yellow.
        f'[[probes]]\nname = "pbx"\nkind = "sip_options"\nuri = "{options_uri}"\n'
        "interval_s = 0.5\ntimeout_s = 0.4\n"
    )
    return cfg


def _status(port: int) -> dict:  # type: ignore[type-arg]
    return json.loads(get(port, "/status")[1])  # type: ignore[no-any-return]


def _stop_and_count(ivr: SippIvr, proc) -> dict[str, str]:  # type: ignore[no-untyped-def]
    proc.terminate()
    proc.wait(10)
    try:
        return wait_for(lambda: (s := ivr.stats()).get("CurrentCall") == "0" and s, 5.0)
    except AssertionError:
        raise AssertionError(f"the daemon left a call up at sipp: {ivr.stats()}") from None


def test_daemon_reports_a_call_probe_and_leaves_no_call_up(tmp_path):
    ivr = _ivr(tmp_path, rtp_echo=True)
    pbx = start_sipp_uas("200", tmp_path / "pbx")
    try:
        port = free_port("tcp")
        cfg = _config(tmp_path, ivr.uri(), port, pbx.uri())
        with running(cfg, tmp_path / "daemon.log") as proc:
            wait_for(lambda: _listening(port))
            probe = wait_for(
                lambda: (p := _status(port)["probes"].get("call-ivr")) and p["runs"] >= 2 and p
            )
            last = probe["last"]
            assert last["outcome"] == "ok" and last["kind"] == "sip_call", last
            x = last["extra"]
            assert x["bye_status"] == 200 and x["rtp_received"] > 0, x
            assert x["rtp_loss_pct"] is not None and x["jitter_ms"] is not None, x
            assert x["answer_ms"] is not None and x["pdd_ms"] is not None, x
            assert _status(port)["verdict"] == "green"
            metrics = get(port, "/metrics")[1]
            assert 'sipwatch_probe_success{kind="sip_call",probe="call-ivr"} 1.0' in metrics
            stats = _stop_and_count(ivr, proc)
        assert proc.returncode == 0
        assert stats["FailedCall(C)"] == "0" and int(stats["SuccessfulCall(C)"]) >= 2, stats
    finally:
        pbx.stop()
        ivr.stop()


def test_an_ivr_without_echo_is_no_media_and_the_node_yellow(tmp_path):
    ivr = _ivr(tmp_path, rtp_echo=False)
    pbx = start_sipp_uas("200", tmp_path / "pbx")
    try:
        port = free_port("tcp")
        cfg = _config(tmp_path, ivr.uri(), port, pbx.uri())
        with running(cfg, tmp_path / "daemon.log") as proc:
            wait_for(lambda: _listening(port))
            status = wait_for(lambda: (s := _status(port))["verdict"] == "yellow" and s, 15.0)
            probe = status["probes"]["call-ivr"]
            assert probe["last"]["outcome"] == "no_media", probe
            assert probe["last"]["extra"]["bye_status"] == 200
            assert status["probes"]["pbx"]["last"]["outcome"] == "ok"
            reason = next(r for r in status["reasons"] if r["probe"] == "call-ivr")
            assert (reason["outcome"], reason["effect"]) == ("no_media", "yellow"), reason
            assert get(port, "/readyz")[1].startswith("yellow")
            assert "sipwatch_verdict 1.0" in get(port, "/metrics")[1]
            stats = _stop_and_count(ivr, proc)
        # the calls were answered and ended with BYE: sipp counts each as successful
        assert stats["FailedCall(C)"] == "0" and int(stats["SuccessfulCall(C)"]) >= 2, stats
    finally:
        pbx.stop()
        ivr.stop()

"""The OCF resource agent ocf:sipwatch:sipwatch, installed by `sipwatch ocf install`.

- `ocf-tester` (resource-agents' own conformance test: meta-data against the DTD, start,
  stop, monitor, probes, idempotence) on the installed agent, in health mode with the real
  `sipwatch check` against a closed port (red) and in service mode against a real Kamailio.
- The agent's mapping of `sipwatch check` exit codes, its deadline, OCF_CHECK_LEVEL and
  validation, with a fake `sipwatch` at the declared seam (the agent's `sipwatch`
  parameter). The health attribute lands in a file CIB (CIB_file): never a live cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sipwatch.cli import main
from testbed import KamailioPeer
from testbed.pacemaker import FileCluster

HEALTH = "#health-sipwatch"
DTD_DIR = Path("/usr/share/resource-agents")


def need(tool: str) -> str:
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None:
        pytest.fail(
            f"{tool} is not installed: run `make test` or `.ci/run` (resource-agents, "
            "libxml2-utils, pacemaker-cli-utils)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def agent() -> Iterator[Path]:
    """The agent installed by `sipwatch ocf install --root` into a directory every user can
    traverse (ocf-tester runs meta-data as `nobody`; pytest's tmp dirs are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="sipwatch-ocf-", dir="/tmp"))
    try:
        root.chmod(0o755)
        assert main(["ocf", "install", "--root", str(root)]) == 0
        yield root / "usr/lib/ocf/resource.d/sipwatch/sipwatch"
    finally:
        shutil.rmtree(root, ignore_errors=True)


class FakeSipwatch:
    """A `sipwatch` that logs its arguments and exits as told (`rc`), or hangs."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "sipwatch"
        self.log = folder / "sipwatch.log"
        self.rc_file = folder / "rc"
        self.hang = folder / "hang"
        self.config_rc = folder / "config-rc"
        self.path.write_text(f"""#!/bin/sh
echo "$*" >> "{self.log}"
case "$1" in
config) if [ -f "{self.config_rc}" ]; then echo "invalid configuration: probes.0.uri: bad" >&2
            exit "$(cat "{self.config_rc}")"; fi; exit 0;;
check)  if [ -f "{self.hang}" ]; then sleep 30; fi
        rc=$(head -n 1 "{self.rc_file}"); rest=$(tail -n +2 "{self.rc_file}")
        if [ -n "$rest" ]; then printf '%s\\n' "$rest" > "{self.rc_file}"; fi
        echo "verdict=red code=$rc score=0 eligible=1 active=1 source=probed reason='fake detail'"
        exit "$rc";;
esac
exit 2
""")  # fmt: skip
        self.path.chmod(0o755)
        self.set(0)

    def set(self, *codes: int) -> None:
        """Exit codes for the next checks, the last one repeated."""
        self.rc_file.write_text("\n".join(str(c) for c in codes) + "\n")

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def fake(tmp_path: Path) -> FakeSipwatch:
    folder = tmp_path / "fake"
    folder.mkdir()
    return FakeSipwatch(folder)


def run_agent(
    agent: Path, action: str, *, env: dict[str, str], timeout_s: float = 60.0
) -> subprocess.CompletedProcess[str]:
    full = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin",
        "OCF_ROOT": "/usr/lib/ocf",
        "OCF_RESOURCE_INSTANCE": "sw",
        "OCF_RESKEY_CRM_meta_interval": "10000",
        "OCF_RESKEY_CRM_meta_timeout": "20000",
        "OCF_RESKEY_CRM_meta_on_node": "n1",
        "HA_LOGFACILITY": "none",
        **env,
    }
    return subprocess.run(
        [str(agent), action], env=full, capture_output=True, text=True, timeout=timeout_s
    )


def exit_reason(done: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("ocf-exit-reason:")]
    return lines[-1].removeprefix("ocf-exit-reason:") if lines else ""


@pytest.fixture
def env(cluster: FileCluster, fake: FakeSipwatch, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "sipwatch.toml"
    config.write_text("# the fake sipwatch does not read it\n")
    return {
        "CIB_file": str(cluster.path),
        "OCF_RESKEY_sipwatch": str(fake.path),
        "OCF_RESKEY_config": str(config),
        "OCF_RESKEY_state": str(tmp_path / "state" / "sw.state"),
        "OCF_RESKEY_verdict_file": str(tmp_path / "no-daemon" / "verdict"),
        "OCF_CHECK_LEVEL": "10",
    }


# --- install and meta-data ------------------------------------------------------------------


@pytest.mark.parametrize("config", ["missing", "present"])
def test_unknown_action_is_unimplemented_whatever_the_config(
    agent: Path, env: dict[str, str], tmp_path: Path, config: str
) -> None:
    """resource-agents answer an action they do not have with usage and
    OCF_ERR_UNIMPLEMENTED (3), before any validation: a missing config must not turn it
    into OCF_ERR_CONFIGURED (6) or OCF_ERR_INSTALLED (5)."""
    if config == "missing":
        env = {**env, "OCF_RESKEY_config": str(tmp_path / "no-such.toml")}
    done = run_agent(agent, "no-such-action", env=env)
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert "usage:" in done.stdout + done.stderr


def test_install(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert main(["ocf", "install", "--root", str(root)]) == 0
    agent = root / "usr/lib/ocf/resource.d/sipwatch/sipwatch"
    assert agent.stat().st_mode & 0o777 == 0o755
    text = agent.read_text()
    venv_sipwatch = Path(sys.executable).parent / "sipwatch"
    assert f'OCF_RESKEY_sipwatch_default="{venv_sipwatch.absolute()}"' in text
    assert text.startswith("#!/bin/sh\n")
    for shell in ("sh", "dash"):
        if shutil.which(shell):
            assert subprocess.run([shell, "-n", str(agent)], check=False).returncode == 0
    assert main(["ocf", "install", "--root", str(root)]) == 0  # again: same file, replaced
    assert sorted(p.name for p in agent.parent.iterdir()) == ["sipwatch"]
    assert main(["ocf", "install", "--root", str(root), "--sipwatch", '/x"; rm -rf /']) == 2


def test_meta_data_is_valid_against_the_installed_dtd(agent: Path) -> None:
    xmllint = need("xmllint")
    done = run_agent(agent, "meta-data", env={})
    assert done.returncode == 0
    assert '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">' in done.stdout
    lint = subprocess.run(
        [xmllint, "--noout", "--valid", "-"],
        input=done.stdout,
        cwd=DTD_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stderr
    root = ET.fromstring(done.stdout.split("\n", 2)[2])  # after the XML and DOCTYPE lines
    params = {p.get("name"): p.find("content") for p in root.iterfind("./parameters/parameter")}
    assert set(params) == {
        "mode", "config", "sipwatch", "policy", "attribute", "state", "pidfile", "timeout_margin",
        "verdict_file", "verdict_max_age",
    }  # fmt: skip
    assert params["mode"] is not None and params["mode"].get("default") == "health"
    depths = {a.get("depth") for a in root.iterfind("./actions/action[@name='monitor']")}
    assert depths == {"0", "10"}


# --- ocf-tester -------------------------------------------------------------------------------


def ocf_tester(agent: Path, params: dict[str, str], env: dict[str, str]) -> str:
    if os.geteuid() != 0:
        pytest.skip(
            "!!! ocf-tester NEEDS ROOT (it runs the agent as `nobody` and checks its "
            "permissions): the OCF agent is NOT conformance-tested in this run — run as root "
            "(CI does) !!!"
        )
    tester = need("ocf-tester")
    need("xmllint")
    argv = [tester, "-n", "sw"]
    for key, value in params.items():
        argv += ["-o", f"{key}={value}"]
    full = {**os.environ, "OCF_RESKEY_CRM_meta_on_node": "n1", "HA_LOGFACILITY": "none", **env}
    done = subprocess.run(
        [*argv, str(agent)], env=full, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{agent} passed all tests" in done.stdout
    return done.stdout


@pytest.mark.parametrize("level", ["0", "10"])
def test_ocf_tester_health_mode_with_real_check(
    agent: Path, cluster: FileCluster, tmp_path: Path, closed_udp_port: int, level: str
) -> None:
    """The real `sipwatch check` against a closed port: red, published to the file CIB at
    depth 10; ocf-tester's last stop removes it again."""
    config = tmp_path / "sipwatch.toml"
    config.write_text(
        f'[[probes]]\nname = "pbx-udp"\nkind = "sip_options"\n'
        f'uri = "sip:127.0.0.1:{closed_udp_port};transport=udp"\ntimeout_s = 1.0\n'
    )
    state = tmp_path / "state" / "sw.state"
    params = {"config": str(config), "state": str(state)}
    env = {"CIB_file": str(cluster.path), "OCF_CHECK_LEVEL": level}
    ocf_tester(agent, params, env)
    assert not state.exists()
    assert cluster.node_attribute("n1", HEALTH) is None

    # The same real check through the agent: depth 10 publishes red.
    run_env = {**env, "OCF_RESKEY_config": str(config), "OCF_RESKEY_state": str(state)}
    assert run_agent(agent, "start", env=run_env).returncode == 0
    assert run_agent(agent, "monitor", env=run_env).returncode == 0
    expected = "red" if level == "10" else None
    assert cluster.node_attribute("n1", HEALTH) == expected
    assert run_agent(agent, "stop", env=run_env).returncode == 0
    assert cluster.node_attribute("n1", HEALTH) is None


def test_ocf_tester_service_mode_with_real_pbx(
    agent: Path, kam: KamailioPeer, tmp_path: Path
) -> None:
    """Service mode against a real Kamailio: start waits for SIP, every depth-10 monitor
    runs the real `sipwatch check` (OPTIONS over UDP and TCP)."""
    config = tmp_path / "sipwatch.toml"
    config.write_text(
        f'[[probes]]\nname = "pbx-udp"\nkind = "sip_options"\nuri = "{kam.uri("udp")}"\n'
        f'timeout_s = 2.0\n\n[[probes]]\nname = "pbx-tcp"\nkind = "sip_options"\n'
        f'uri = "{kam.uri("tcp")}"\ntimeout_s = 2.0\n'
    )
    state = tmp_path / "sw.state"
    params = {"mode": "service", "config": str(config), "state": str(state)}
    ocf_tester(agent, params, {"OCF_CHECK_LEVEL": "10"})
    assert not state.exists()

    # The same agent sees the PBX refuse SIP: a failed monitor with the reason.
    env = {
        "OCF_RESKEY_mode": "service",
        "OCF_RESKEY_config": str(config),
        "OCF_RESKEY_state": str(state),
        "OCF_CHECK_LEVEL": "10",
    }
    assert run_agent(agent, "start", env=env).returncode == 0
    kam.set_fault("OPTIONS", code=500, reason="Server Internal Error")
    failed = run_agent(agent, "monitor", env=env)
    assert failed.returncode == 1
    assert exit_reason(failed).startswith("sipwatch check: red (exit 1)")
    assert run_agent(agent, "stop", env=env).returncode == 0


# --- exit-code mapping, deadline, depth, validation (fake sipwatch at the seam) -----------------


@pytest.mark.parametrize(
    ("check_rc", "health_rc", "published", "service_rc"),
    [
        (0, 0, "green", 0),
        (190, 0, "yellow", 190),  # degraded
        (1, 0, "red", 1),
        (7, 0, "red", 1),  # the PBX is not running: a failed monitor, never "stopped"
        (6, 190, None, 190),  # bad config: local error, nothing published, no failover
        (5, 190, None, 190),  # missing tool: local error
        (2, 190, None, 190),  # sipwatch itself broken: local error
    ],
)
def test_monitor_maps_check_exit_codes(
    agent: Path,
    cluster: FileCluster,
    fake: FakeSipwatch,
    env: dict[str, str],
    check_rc: int,
    health_rc: int,
    published: str | None,
    service_rc: int,
) -> None:
    assert run_agent(agent, "start", env=env).returncode == 0
    assert fake.calls() == [f"config {env['OCF_RESKEY_config']}"]  # health start: no SIP
    fake.set(check_rc)
    done = run_agent(agent, "monitor", env=env)
    assert done.returncode == health_rc, done.stderr
    assert cluster.node_attribute("n1", HEALTH) == published
    assert fake.calls()[-1] == f"check --config {env['OCF_RESKEY_config']} --format shell"
    if health_rc == 190:
        assert exit_reason(done).startswith("local error, nothing published or failed over")
    assert run_agent(agent, "stop", env=env).returncode == 0
    assert cluster.node_attribute("n1", HEALTH) is None

    service = {**env, "OCF_RESKEY_mode": "service"}
    fake.set(0)
    assert run_agent(agent, "start", env=service).returncode == 0
    fake.set(check_rc)
    done = run_agent(agent, "monitor", env=service)
    assert done.returncode == service_rc, done.stderr
    if service_rc == 1:
        assert exit_reason(done) == f"sipwatch check: red (exit {check_rc}): fake detail"
    assert run_agent(agent, "stop", env=service).returncode == 0


def test_policy_parameter_is_passed(agent: Path, fake: FakeSipwatch, env: dict[str, str]) -> None:
    # The depth as Pacemaker passes it (an op attribute OCF_CHECK_LEVEL=10 in the CIB).
    env = {k: v for k, v in env.items() if k != "OCF_CHECK_LEVEL"}
    env = {**env, "OCF_RESKEY_policy": "fast", "OCF_RESKEY_OCF_CHECK_LEVEL": "10"}
    assert run_agent(agent, "start", env=env).returncode == 0
    assert run_agent(agent, "monitor", env=env).returncode == 0
    assert fake.calls()[-1] == (
        f"check --config {env['OCF_RESKEY_config']} --format shell --policy fast"
    )


@pytest.mark.parametrize("mode", ["health", "service"])
def test_check_deadline_from_operation_timeout(
    agent: Path, cluster: FileCluster, fake: FakeSipwatch, env: dict[str, str], mode: str
) -> None:
    env = {**env, "OCF_RESKEY_mode": mode}
    assert run_agent(agent, "start", env=env).returncode == 0
    fake.hang.touch()
    env["OCF_RESKEY_CRM_meta_timeout"] = "3000"  # ms
    env["OCF_RESKEY_timeout_margin"] = "1"  # s: the check gets 2 s
    started = time.monotonic()
    done = run_agent(agent, "monitor", env=env, timeout_s=10)
    elapsed = time.monotonic() - started
    assert 1.9 < elapsed < 3.0  # killed at the deadline, well before Pacemaker's 3 s
    if mode == "health":
        assert done.returncode == 0
        assert cluster.node_attribute("n1", HEALTH) == "red"
    else:
        assert done.returncode == 1
        assert exit_reason(done) == "sipwatch check did not finish within 2.000 s"


def test_depth_0_and_probes_send_no_sip(
    agent: Path, cluster: FileCluster, fake: FakeSipwatch, env: dict[str, str], tmp_path: Path
) -> None:
    pidfile = tmp_path / "pbx.pid"
    pidfile.write_text(f"{os.getpid()}\n")  # a live process
    cheap = {**env, "OCF_CHECK_LEVEL": "0", "OCF_RESKEY_pidfile": str(pidfile)}
    probe = {**env, "OCF_RESKEY_CRM_meta_interval": "0"}
    assert run_agent(agent, "monitor", env=probe).returncode == 7  # not started
    assert run_agent(agent, "start", env=cheap).returncode == 0
    assert run_agent(agent, "monitor", env=cheap).returncode == 0
    assert run_agent(agent, "monitor", env=probe).returncode == 0
    assert not any(c.startswith("check") for c in fake.calls())
    assert cluster.node_attribute("n1", HEALTH) is None  # a live process publishes nothing

    dead = subprocess.Popen(["true"])
    dead.wait()
    pidfile.write_text(f"{dead.pid}\n")
    assert run_agent(agent, "monitor", env=cheap).returncode == 0
    assert cluster.node_attribute("n1", HEALTH) == "red"  # health: a dead PBX is red
    service = {**cheap, "OCF_RESKEY_mode": "service"}
    done = run_agent(agent, "monitor", env=service)
    assert done.returncode == 1
    assert exit_reason(done) == f"the PBX process (pidfile {pidfile}) is not running"
    assert not any(c.startswith("check") for c in fake.calls())


def test_service_start_waits_for_the_pbx(
    agent: Path, fake: FakeSipwatch, env: dict[str, str]
) -> None:
    service = {**env, "OCF_RESKEY_mode": "service", "OCF_RESKEY_CRM_meta_timeout": "6000"}
    fake.set(1, 0)  # not answering yet, then fine
    assert run_agent(agent, "start", env=service).returncode == 0
    assert sum(c.startswith("check") for c in fake.calls()) == 2
    assert Path(env["OCF_RESKEY_state"]).read_text() == "green\n"
    assert run_agent(agent, "stop", env=service).returncode == 0

    fake.set(1)  # never answers: start fails within its timeout, nothing left behind
    service["OCF_RESKEY_CRM_meta_timeout"] = "3000"
    service["OCF_RESKEY_timeout_margin"] = "1"
    started = time.monotonic()
    done = run_agent(agent, "start", env=service)
    assert time.monotonic() - started < 3.0
    assert done.returncode == 1
    assert exit_reason(done).startswith("the PBX did not pass sipwatch check before the start")
    assert not Path(env["OCF_RESKEY_state"]).exists()


def test_service_start_gives_up_on_a_pbx_that_is_not_running(
    agent: Path, fake: FakeSipwatch, env: dict[str, str]
) -> None:
    """Exit 7 twice in a row: the PBX the group started before us died. Fail the start at
    once instead of holding the cluster's recovery for the whole start timeout (seen in the
    lab: a crash during the shim's start cost 18 s)."""
    service = {**env, "OCF_RESKEY_mode": "service", "OCF_RESKEY_CRM_meta_timeout": "20000"}
    fake.set(7, 0)  # one "not running" is tolerated
    assert run_agent(agent, "start", env=service).returncode == 0
    assert run_agent(agent, "stop", env=service).returncode == 0
    fake.set(7)
    started = time.monotonic()
    done = run_agent(agent, "start", env=service)
    assert time.monotonic() - started < 5.0
    assert done.returncode == 1
    assert exit_reason(done).startswith("the PBX is not running: sipwatch check: red (exit 7)")
    assert not Path(env["OCF_RESKEY_state"]).exists()


def test_service_start_trusts_a_live_pidfile_over_a_stale_not_running(
    agent: Path, fake: FakeSipwatch, env: dict[str, str], tmp_path: Path
) -> None:
    """The daemon may still report the PBX as not running from before its start: with the
    pidfile's process alive (a real process of ours), exit 7 is waited out, not failed."""
    pbx = subprocess.Popen(["sleep", "60"])
    try:
        pidfile = tmp_path / "pbx.pid"
        pidfile.write_text(f"{pbx.pid}\n")
        service = {**env, "OCF_RESKEY_mode": "service", "OCF_RESKEY_pidfile": str(pidfile),
                   "OCF_RESKEY_CRM_meta_timeout": "20000"}  # fmt: skip
        fake.set(7, 7, 7, 0)
        assert run_agent(agent, "start", env=service).returncode == 0
        assert sum(c.startswith("check") for c in fake.calls()) == 4
    finally:
        pbx.kill()
        pbx.wait(5)


def test_validation(agent: Path, fake: FakeSipwatch, env: dict[str, str]) -> None:
    bad_mode = {**env, "OCF_RESKEY_mode": "bogus"}
    done = run_agent(agent, "start", env=bad_mode)
    assert done.returncode == 6
    assert exit_reason(done) == "mode must be health or service, not 'bogus'"
    assert run_agent(agent, "monitor", env=bad_mode).returncode == 7  # not running

    missing = {**env, "OCF_RESKEY_sipwatch": "/nonexistent/sipwatch"}
    done = run_agent(agent, "validate-all", env=missing)
    assert done.returncode == 5
    assert exit_reason(done) == "Setup problem: couldn't find command: /nonexistent/sipwatch"

    no_config = {**env, "OCF_RESKEY_config": "/nonexistent/sipwatch.toml"}
    done = run_agent(agent, "start", env=no_config)
    assert done.returncode == 5
    assert exit_reason(done) == "config file /nonexistent/sipwatch.toml is missing or unreadable"

    fake.config_rc.write_text("2\n")
    done = run_agent(agent, "validate-all", env=env)
    assert done.returncode == 6
    assert exit_reason(done) == (
        f"invalid sipwatch config {env['OCF_RESKEY_config']}: "
        "invalid configuration: probes.0.uri: bad"
    )
    fake.config_rc.unlink()

    # Started, then sipwatch vanishes: monitor is degraded (loud), stop still succeeds.
    assert run_agent(agent, "start", env=env).returncode == 0
    assert run_agent(agent, "monitor", env=missing).returncode == 190
    assert run_agent(agent, "stop", env=missing).returncode == 0
    assert not Path(env["OCF_RESKEY_state"]).exists()
    assert run_agent(agent, "monitor", env=env).returncode == 7
    assert run_agent(agent, "notify", env=env).returncode == 3


def test_publish_failure_is_reported_not_fatal(
    agent: Path, cluster: FileCluster, fake: FakeSipwatch, env: dict[str, str], tmp_path: Path
) -> None:
    """crm_attribute (the publisher under CIB_file) fails: the monitor says so (190 with the
    reason) instead of failing the health clone over and over."""
    broken = tmp_path / "broken-bin"
    broken.mkdir()
    tool = broken / "crm_attribute"
    tool.write_text("#!/bin/sh\necho 'crm_attribute: simulated failure' >&2\nexit 1\n")
    tool.chmod(0o755)
    assert run_agent(agent, "start", env=env).returncode == 0
    fake.set(1)
    path = f"{broken}:{os.environ.get('PATH', '/usr/bin:/bin')}:/usr/sbin:/sbin"
    done = run_agent(agent, "monitor", env={**env, "PATH": path})
    assert done.returncode == 190
    assert exit_reason(done).startswith(f"could not publish {HEALTH}=red (sipwatch check: red")
    assert cluster.node_attribute("n1", HEALTH) is None
    assert run_agent(agent, "stop", env=env).returncode == 0


# --- the no-Python fast path: the daemon's verdict file -------------------------------------

DAEMON_POLICY = """
startup_grace_s = 0.0
[defaults]
fall = 1
rise = 1
confirm_interval_s = 0
[kinds.sip_options]
role = "critical"
"""


def _wait(pred: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline, "not within the bound"
        time.sleep(0.05)


def test_monitor_reads_the_daemon_verdict_file_without_starting_sipwatch(
    agent: Path, fake: FakeSipwatch, env: dict[str, str], kam: Any, tmp_path: Path
) -> None:
    """Issue 15: with a real `sipwatch run` keeping its verdict file, the service-mode monitor
    answers from it (no `sipwatch check`: the fake, which would say red, is never asked) and
    follows the verdict; a stopped daemon, a foreign config, a stale or changed config make
    it fall back to `sipwatch check`."""
    (tmp_path / "policy.toml").write_text(DAEMON_POLICY)
    verdict = tmp_path / "run" / "verdict"
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(
        f'policy = "policy.toml"\n[daemon]\nhttp_port = 0\nverdict_file = "{verdict}"\n'
        f'[[probes]]\nname = "pbx-udp"\nkind = "sip_options"\n'
        f'uri = "{kam.uri("udp", user="ping")}"\ninterval_s = 0.3\ntimeout_s = 0.25\n'
    )
    service = {
        **env,
        "OCF_RESKEY_mode": "service",
        "OCF_RESKEY_config": str(cfg),
        "OCF_RESKEY_verdict_file": str(verdict),
    }
    fake.set(0)
    assert run_agent(agent, "start", env=service).returncode == 0
    fake.set(1)  # were `sipwatch check` asked, it would say red
    checks_before = len([c for c in fake.calls() if c.startswith("check")])
    real = str(Path(sys.executable).parent / "sipwatch")
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen([real, "run", "--config", str(cfg)], stdout=log, stderr=log)
    try:
        _wait(verdict.exists)
        assert "verdict=green" in verdict.read_text()
        done = run_agent(agent, "monitor", env=service)
        assert done.returncode == 0, done.stderr
        kam.set_fault("OPTIONS", code=500)
        _wait(lambda: "verdict=red" in verdict.read_text())
        done = run_agent(agent, "monitor", env=service)
        assert done.returncode == 1, done.stderr
        assert exit_reason(done).startswith("sipwatch run: red (exit 1): "), exit_reason(done)
        kam.clear_faults()
        _wait(lambda: "verdict=green" in verdict.read_text())
        assert run_agent(agent, "monitor", env=service).returncode == 0
        assert len([c for c in fake.calls() if c.startswith("check")]) == checks_before
        # Another config than the daemon's: its verdict is not about it.
        other = tmp_path / "other.toml"
        other.write_text(cfg.read_text())
        assert (
            run_agent(agent, "monitor", env={**service, "OCF_RESKEY_config": str(other)}).returncode
            == 1
        )
        # Stale (the heartbeat stopped): a copy whose boot_s is a minute old.
        stale = tmp_path / "stale"
        stale.write_text(
            "".join(
                f"boot_s={int(v) - 60}\n" if k == "boot_s" else f"{k}={v}\n"
                for k, v in (ln.split("=", 1) for ln in verdict.read_text().splitlines())
            )
        )
        assert (
            run_agent(
                agent, "monitor", env={**service, "OCF_RESKEY_verdict_file": str(stale)}
            ).returncode
            == 1
        )
        # The daemon's config edited but not reloaded: config_current=0 at the next heartbeat.
        cfg.write_text(cfg.read_text() + "# edited\n")
        _wait(lambda: "config_current=0" in verdict.read_text())
        assert run_agent(agent, "monitor", env=service).returncode == 1
        checks = [c for c in fake.calls() if c.startswith("check")]
        assert len(checks) == checks_before + 3, checks
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    assert not verdict.exists()  # removed when the daemon stops
    assert run_agent(agent, "monitor", env=service).returncode == 1  # the slow path again
    assert run_agent(agent, "stop", env=service).returncode == 0


def test_health_mode_publishes_a_changed_verdict_from_the_file(
    agent: Path, cluster: FileCluster, fake: FakeSipwatch, env: dict[str, str], tmp_path: Path
) -> None:
    """Health mode: the fast monitor answers alone only while the file's verdict is what was
    published; a new verdict goes through the full path, which publishes it (still without
    `sipwatch check`: the verdict file is trusted there too)."""
    from sipwatch.model import Decision, Verdict
    from sipwatch.verdict_file import boottime_s, render

    verdict = tmp_path / "verdict"

    def write(v: Verdict, code: int) -> None:
        verdict.write_text(
            render(
                Decision(v, 100 if code == 0 else 0),
                code=code,
                pid=os.getpid(),  # a live process: this test
                boot_s=boottime_s(),
                config=env["OCF_RESKEY_config"],
                config_sha256="0" * 64,
                config_current=True,
            )
        )

    health = {**env, "OCF_RESKEY_verdict_file": str(verdict)}
    fake.set(0)
    assert run_agent(agent, "start", env=health).returncode == 0
    write(Verdict.GREEN, 0)
    assert run_agent(agent, "monitor", env=health).returncode == 0
    assert cluster.node_attribute("n1", HEALTH) == "green"
    write(Verdict.RED, 1)
    assert run_agent(agent, "monitor", env=health).returncode == 0
    assert cluster.node_attribute("n1", HEALTH) == "red"
    write(Verdict.RED, 1)
    assert run_agent(agent, "monitor", env=health).returncode == 0
    assert not [c for c in fake.calls() if c.startswith("check")], fake.calls()
    assert run_agent(agent, "stop", env=health).returncode == 0


# --- bad input (issue 17 §3, docs/bad-input.md) ----------------------------------------------

#: A directory name a careless or hostile operator could give: spaces, both quotes, and
#: every shell metacharacter that would run a command if the shim ever built a shell string.
NASTY = "a b 'c' \"d\" $(touch PWNED) `touch PWNED` ; touch PWNED & | > < * ? ~ \\ !x"


def _argv_logger(path: Path, log: Path) -> Path:
    """A `sipwatch` that writes each argument on a line of its own (so an argument split or
    joined by the shim shows), then answers `config` and `check` green."""
    path.write_text(
        f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done >> "{log}"\necho ---- >> "{log}"\n'
        'case "$1" in check) echo "verdict=green code=0 score=100 eligible=1 active=1 '
        "source=probed reason=''\"; exit 0;; esac\nexit 0\n"
    )
    path.chmod(0o755)
    return path


def test_parameters_with_spaces_quotes_and_metacharacters_are_passed_intact(
    agent: Path, cluster: FileCluster, env: dict[str, str], tmp_path: Path
) -> None:
    nasty = tmp_path / NASTY
    nasty.mkdir()
    log = tmp_path / "argv.log"
    config = nasty / "sipwatch.toml"
    config.write_text("# not read by the logger\n")
    env = {
        **env,
        "OCF_RESKEY_sipwatch": str(_argv_logger(nasty / "sipwatch", log)),
        "OCF_RESKEY_config": str(config),
        "OCF_RESKEY_policy": NASTY,
        "OCF_RESKEY_state": str(nasty / "sw.state"),
    }
    for action in ("validate-all", "start", "monitor", "stop"):
        done = run_agent(agent, action, env=env)
        assert done.returncode == 0, (action, done.stderr)
    calls = [c.strip("\n").split("\n") for c in log.read_text().split("----\n") if c.strip()]
    assert ["config", str(config)] in calls
    assert ["check", "--config", str(config), "--format", "shell", "--policy", NASTY] in calls
    assert not list(Path.cwd().glob("PWNED")) and not list(tmp_path.rglob("PWNED"))


def test_a_sipwatch_that_is_not_executable_is_a_setup_problem(
    agent: Path, fake: FakeSipwatch, env: dict[str, str]
) -> None:
    fake.path.chmod(0o644)
    for action in ("validate-all", "start"):
        done = run_agent(agent, action, env=env)
        assert done.returncode == 5, (action, done.stderr)  # OCF_ERR_INSTALLED
        assert "sipwatch" in exit_reason(done), done.stderr
    assert "Traceback" not in done.stderr


def test_a_config_that_turns_bad_under_a_running_resource(
    agent: Path, cluster: FileCluster, env: dict[str, str], tmp_path: Path, closed_udp_port: int
) -> None:
    """The real sipwatch: the config is fine at start, then an operator saves a broken one.
    Monitor must say so (a local error: nothing published, no failover), not fail the node."""
    config = tmp_path / "real.toml"
    good = (
        f'[[probes]]\nname = "pbx"\nkind = "sip_options"\n'
        f'uri = "sip:127.0.0.1:{closed_udp_port}"\ntimeout_s = 0.5\n'
    )
    config.write_text(good)
    real = {**env, "OCF_RESKEY_sipwatch": str(Path(sys.executable).parent / "sipwatch")}
    real["OCF_RESKEY_config"] = str(config)
    assert run_agent(agent, "start", env=real).returncode == 0
    assert run_agent(agent, "monitor", env=real).returncode == 0  # red, published
    assert cluster.node_attribute("n1", HEALTH) == "red"
    config.write_text("[[probes]\nkind = 'sip_options'\n")  # a broken save
    done = run_agent(agent, "monitor", env=real)
    assert done.returncode == 190, done.stderr  # degraded: loud, never a failover
    assert "config" in exit_reason(done), done.stderr
    assert cluster.node_attribute("n1", HEALTH) == "red"  # the last verdict stands
    config.write_text(good)
    assert run_agent(agent, "monitor", env=real).returncode == 0
    assert run_agent(agent, "stop", env=real).returncode == 0

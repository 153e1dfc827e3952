"""The container images, built and run the way CI can: podman and buildah, chroot isolation.

No container engine, no registry. deploy/build-base-image makes a Debian 12 base with
mmdebstrap and `podman import` (a cache, kept between runs and keyed by its recipe); the test
builds the Dockerfile and deploy/kamailio/Containerfile on it, then runs commands inside the
images with `buildah run --isolation chroot`, which shares the host's network namespace, so
the peers are on the loopback:

    sipwatch image   --version, id, the shipped probe catalog, compose's config file,
                     `sipwatch probe` against the PBX image (200 -> 0, 503 + Retry-After -> 1,
                     closed port -> 3), the HEALTHCHECK command against a loopback /livez,
                     `sipwatch check` (green, then red on a 503), the shipped default policy
    PBX image        Kamailio from deploy/kamailio, started on a free loopback port

Everything the test creates (both images, every working container) is removed by ID at the
end; only the base image stays, as the cache. Skips (loudly) only when not root: mmdebstrap's
root mode and podman's storage need it. Missing tools fail with the apt packages to install.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sipwatch import __version__
from testbed import free_port

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[2]
APT_PACKAGES = "podman buildah mmdebstrap"
#: Build-time trust for pip behind a TLS-intercepting proxy (a build secret, not in a layer).
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_TIMEOUT_S = 900
RUN_TIMEOUT_S = 60
#: A generous bound that still catches a compiler or a second Python sneaking in.
MAX_IMAGE_BYTES = 230_000_000


def _cmd(
    argv: list[str],
    *,
    timeout: float = RUN_TIMEOUT_S,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"timed out after {timeout:.0f} s: {' '.join(argv)}", pytrace=False)
    if check and done.returncode != 0:
        pytest.fail(
            f"exit {done.returncode}: {' '.join(argv)}\n{(done.stdout + done.stderr)[-3000:]}",
            pytrace=False,
        )
    return done


@pytest.fixture(scope="module")
def tools() -> None:
    if os.geteuid() != 0:
        pytest.skip(
            "CONTAINER IMAGE TESTS NOT RUN: they need root (mmdebstrap root mode, podman "
            "storage in /var/lib/containers); run `make image-test` as root, as CI does"
        )
    missing = [t for t in ("podman", "buildah", "mmdebstrap") if shutil.which(t) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not installed: apt-get install --no-install-recommends "
            f"{APT_PACKAGES}",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def base_image(tools: None) -> str:
    started = time.monotonic()
    script = ROOT / "deploy" / "build-base-image"
    done = _cmd(["bash", str(script)], timeout=BUILD_TIMEOUT_S + 60)
    name = done.stdout.strip().splitlines()[-1]
    print(f"base image {name} ready in {time.monotonic() - started:.1f} s")
    return name


def _build(context: Path, containerfile: Path, base: str, tmp: Path) -> str:
    """Build an image, return its ID. --layers=false: no intermediate images to leave behind,
    and no reuse of layers from images that someone else tagged."""
    iidfile = tmp / f"iid-{uuid.uuid4().hex}"
    argv = [
        "nice", "-n", "10",
        "podman", "build", "--isolation", "chroot", "--pull=never", "--format", "docker",
        "--layers=false", "--build-arg", f"BASE={base}", "--iidfile", str(iidfile),
        "-f", str(containerfile),
    ]  # fmt: skip
    if CA_BUNDLE.is_file():
        argv += ["--secret", f"id=build-ca,src={CA_BUNDLE}"]
    started = time.monotonic()
    _cmd([*argv, str(context)], timeout=BUILD_TIMEOUT_S)
    print(f"built {containerfile.relative_to(ROOT)} in {time.monotonic() - started:.1f} s")
    return iidfile.read_text().strip()


def _remove_image(image_id: str) -> None:
    # No --force: an image still in use means a container leaked, and that is an error.
    _cmd(["podman", "rmi", image_id], timeout=120)


@pytest.fixture(scope="module")
def sipwatch_image(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    image_id = _build(ROOT, ROOT / "Dockerfile", base_image, tmp_path_factory.mktemp("img"))
    try:
        yield image_id
    finally:
        _remove_image(image_id)


@pytest.fixture(scope="module")
def pbx_image(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    context = ROOT / "deploy" / "kamailio"
    image_id = _build(
        context, context / "Containerfile", base_image, tmp_path_factory.mktemp("img")
    )
    try:
        yield image_id
    finally:
        _remove_image(image_id)


class Box:
    """A buildah working container of an image; commands run in it with chroot isolation."""

    def __init__(self, image_id: str, tmp: Path) -> None:
        cidfile = tmp / f"cid-{uuid.uuid4().hex}"
        _cmd(["buildah", "from", "--pull=never", "--quiet", "--cidfile", str(cidfile), image_id])
        self.id = cidfile.read_text().strip()

    def argv(
        self, *args: str, env: dict[str, str] | None = None, volumes: tuple[str, ...] = ()
    ) -> list[str]:
        argv = ["buildah", "run", "--isolation", "chroot"]
        for key, value in (env or {}).items():
            argv += ["--env", f"{key}={value}"]
        for volume in volumes:
            argv += ["--volume", volume]
        return [*argv, self.id, "--", *args]

    def run(
        self, *args: str, timeout: float = RUN_TIMEOUT_S, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        return _cmd(self.argv(*args, **kw), timeout=timeout, check=False)

    def remove(self) -> None:
        _cmd(["buildah", "rm", self.id])


@pytest.fixture(scope="module")
def sw(sipwatch_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    box = Box(sipwatch_image, tmp_path_factory.mktemp("box"))
    try:
        yield box
    finally:
        box.remove()


@pytest.fixture(scope="module")
def pbx(pbx_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Box, int]]:
    """Kamailio from the PBX image on a free loopback port (UDP and TCP)."""
    box = Box(pbx_image, tmp_path_factory.mktemp("box"))
    port = free_port("both")
    log = tmp_path_factory.mktemp("pbx") / "kamailio.log"
    argv = box.argv(
        "kamailio", "-DD", "-E", "-Y", "/run/kamailio", "-f", "/etc/kamailio/kamailio.cfg",
        "-A", 'SIP_LISTEN="127.0.0.1"', "-A", f"SIP_PORT={port}",
    )  # fmt: skip
    proc: subprocess.Popen[bytes] | None = None
    try:
        with log.open("wb") as out:
            # A session of its own: buildah, its chroot helper and every Kamailio process
            # share one process group, which the teardown stops whole.
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        _wait_listening(port, proc, log)
        yield box, port
    finally:
        if proc is not None:
            _stop_group(proc)
        box.remove()


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"PBX exited {proc.returncode}:\n{log.read_text()[-3000:]}", pytrace=False)
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5),
        ):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"PBX not listening after 30 s:\n{log.read_text()[-3000:]}", pytrace=False)
        time.sleep(0.2)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole process group, SIGKILL after 15 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def _inspect(image_id: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(_cmd(["podman", "image", "inspect", image_id]).stdout)
    return data[0]


def test_image_config(sipwatch_image: str) -> None:
    info = _inspect(sipwatch_image)
    config = info["Config"]
    assert config["User"] == "sipwatch:sipwatch"
    assert config["Entrypoint"] == ["sipwatch"]
    assert config["Cmd"] == ["run", "--config", "/etc/sipwatch/sipwatch.toml"]
    assert "9160/tcp" in config["ExposedPorts"]
    assert config["StopSignal"] == "SIGTERM"
    # The HEALTHCHECK survives only in the docker format: a build without --format docker
    # would silently drop it.
    assert info["Healthcheck"]["Test"][0] == "CMD"
    assert "healthcheck.py" in info["Healthcheck"]["Test"][-1]
    assert info["Size"] < MAX_IMAGE_BYTES, f"image grew to {info['Size'] / 1e6:.0f} MB"
    print(f"sipwatch image: {info['Size'] / 1e6:.0f} MB")


def test_version_and_user(sw: Box) -> None:
    done = sw.run("sipwatch", "--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"sipwatch {__version__}")
    done = sw.run("id", "-u")
    assert done.stdout.strip() == "9160", "the image must run as the unprivileged sipwatch"


def test_slim(sw: Box) -> None:
    """No compiler, no sources, no pip, no apt lists: what the Dockerfile promises."""
    script = (
        "for f in /usr/bin/gcc /usr/bin/cc /src /opt/sipwatch/bin/pip; do "
        "  [ -e $f ] && echo present: $f; done; "
        "ls /var/lib/apt/lists | grep -v -e '^lock$' -e '^partial$' -e '^auxfiles$' || true"
    )
    done = sw.run("sh", "-c", script)
    assert (done.returncode, done.stdout.strip()) == (0, "")


def test_shipped_catalog_and_compose_config(sw: Box) -> None:
    """The probe sets installed as data files are found by name, and compose.yaml's config
    file validates against the image's own schema."""
    done = sw.run("sipwatch", "config", "kamailio-lab")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("kamailio-lab: ok")
    volume = f"{ROOT / 'deploy' / 'compose'}:/etc/sipwatch:ro"
    done = sw.run("sipwatch", "config", "/etc/sipwatch/sipwatch.toml", volumes=(volume,))
    assert done.returncode == 0, done.stderr
    assert "pbx-udp, pbx-tcp" in done.stdout


def test_probe_pbx(sw: Box, pbx: tuple[Box, int]) -> None:
    pbx_box, port = pbx
    done = sw.run("sipwatch", "probe", f"sip:127.0.0.1:{port}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("ok") and "200 OK" in done.stdout

    done = sw.run("sipwatch", "probe", "--json", f"sip:127.0.0.1:{port};transport=tcp")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert (result["outcome"], result["status_code"]) == ("ok", 200)

    ctl = ["kamcmd", "-s", "unix:/run/kamailio/kamailio_ctl"]
    for args in (
        ["htable.seti", "fault", "OPTIONS.code", "503"],
        ["htable.sets", "fault", "OPTIONS.retry_after", "30"],
    ):
        assert pbx_box.run(*ctl, *args).returncode == 0
    try:
        done = sw.run("sipwatch", "probe", f"sip:127.0.0.1:{port}")
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stdout.startswith("draining") and "503" in done.stdout
    finally:
        assert pbx_box.run(*ctl, "htable.flush", "fault").returncode == 0


def test_pbx_healthcheck(pbx_image: str, pbx: tuple[Box, int]) -> None:
    """The PBX image's own HEALTHCHECK command, against its running Kamailio."""
    test = _inspect(pbx_image)["Healthcheck"]["Test"]
    assert test[0] == "CMD"
    done = pbx[0].run(*test[1:])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "uptime" in done.stdout


def test_probe_closed_port(sw: Box) -> None:
    port = free_port("udp")
    done = sw.run("sipwatch", "probe", "--timeout", "1", f"sip:127.0.0.1:{port}")
    assert done.returncode == 3, done.stdout + done.stderr


class _Livez(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path == "/livez" else 503
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def livez_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Livez)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck(sipwatch_image: str, sw: Box, livez_server: int) -> None:
    """The image's own HEALTHCHECK command: 0 on 200, 1 on 503 or nothing listening."""
    test = _inspect(sipwatch_image)["Healthcheck"]["Test"]
    assert test[0] == "CMD"
    command = test[1:]
    base = f"http://127.0.0.1:{livez_server}"
    closed = f"http://127.0.0.1:{free_port('tcp')}/livez"
    for url, expected in ((f"{base}/livez", 0), (f"{base}/sick", 1), (closed, 1)):
        done = sw.run(*command, env={"SIPWATCH_LIVEZ_URL": url})
        assert done.returncode == expected, (url, done.stderr)


def test_check(sw: Box, pbx: tuple[Box, int], tmp_path: Path) -> None:
    """`sipwatch check` in the image, at its default config path, with the shipped default
    policy (found in the venv's share/): green against the PBX, red on a 503."""
    pbx_box, port = pbx
    config = tmp_path / "sipwatch.toml"
    config.write_text(
        '[[probes]]\nname = "pbx"\nkind = "sip_options"\n'
        f'uri = "sip:127.0.0.1:{port}"\ntimeout_s = 2.0\n'
    )
    # The image runs as uid 9160, which pytest's private temporary directory (0700) shuts out.
    tmp_path.chmod(0o755)
    config.chmod(0o644)
    etc = (f"{tmp_path}:/etc/sipwatch:ro",)
    done = sw.run("sipwatch", "check", "--json", volumes=etc)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert (report["verdict"], report["source"]) == ("green", "probed")
    assert report["policy"] == "/opt/sipwatch/share/sipwatch/policies/default.toml"

    ctl = ["kamcmd", "-s", "unix:/run/kamailio/kamailio_ctl"]
    assert pbx_box.run(*ctl, "htable.seti", "fault", "OPTIONS.code", "503").returncode == 0
    try:
        done = sw.run("sipwatch", "check", volumes=etc)
        assert done.returncode == 1, done.stdout + done.stderr
        assert done.stdout.startswith("RED")
    finally:
        assert pbx_box.run(*ctl, "htable.flush", "fault").returncode == 0


def _daemon_pid(pgid: int) -> int | None:
    """The `sipwatch run` process among buildah's (same PID namespace: chroot isolation)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        group = int(stat[stat.rindex(")") + 2 :].split()[2])
        ours = group == pgid and b"buildah" not in argv[0] and b"run" in argv
        if ours and any(arg.endswith(b"/sipwatch") for arg in argv):
            return int(entry.name)
    return None


def test_daemon_as_the_image_runs_it(
    sipwatch_image: str, sw: Box, pbx: tuple[Box, int], tmp_path: Path
) -> None:
    """ENTRYPOINT + CMD as the image declares them, config at the default path: the
    HEALTHCHECK passes against the real /livez, and SIGTERM (the STOPSIGNAL) exits 0."""
    _, port = pbx
    http_port = free_port("tcp")
    config = tmp_path / "sipwatch.toml"
    config.write_text(
        f'[daemon]\nhttp_host = "127.0.0.1"\nhttp_port = {http_port}\n'
        '[[probes]]\nname = "pbx"\nkind = "sip_options"\n'
        f'uri = "sip:127.0.0.1:{port}"\ntimeout_s = 1.0\ninterval_s = 2.0\n'
    )
    tmp_path.chmod(0o755)
    config.chmod(0o644)
    info = _inspect(sipwatch_image)
    command = [*info["Config"]["Entrypoint"], *info["Config"]["Cmd"]]
    health = info["Healthcheck"]["Test"][1:]
    livez = {"SIPWATCH_LIVEZ_URL": f"http://127.0.0.1:{http_port}/livez"}
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        argv = sw.argv(*command, env=livez, volumes=(f"{tmp_path}:/etc/sipwatch:ro",))
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while sw.run(*health, env=livez).returncode != 0:
            assert proc.poll() is None, f"daemon exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"/livez never healthy:\n{log.read_text()}"
            time.sleep(0.5)
        pid = _daemon_pid(proc.pid)
        assert pid is not None, "no `sipwatch run` process under buildah run"
        os.kill(pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            _stop_group(proc)

"""The lab's power controller: the BMC/PDU of the namespace nodes (testbed.lab, mode "fencing").

Owns: a small line protocol over TCP (one command per connection), its shared-secret
authentication, and the record of every command it carried out. It runs outside the nodes
(the Lab's own process, in the root PID namespace), with its listening socket on an address
of its own on the lab network (`swlab-pdu`, 10.250.0.70: a management port on the switch),
so a node reaches it the way a fence agent reaches a BMC, over the network, and a node's
failure cannot take it down. What "off" and "on" do to a node is its `Outlets` (the seam):
for the lab, `Lab` itself (off: SIGKILL to the node's init by PID and its cable pulled; on:
the lab's bring-up of one node); for the protocol tests, plain child processes.
Must not know: Pacemaker, fence-agents' conventions (testbed/fence/fence_swlab speaks those).

Protocol (ASCII lines ending in "\\n", one exchange per connection):

    server: SWPDU 1 NONCE                 NONCE: 32 hex digits, fresh per connection
    client: MAC COMMAND                   MAC = hex HMAC-SHA256(secret, NONCE + " " + COMMAND)
            COMMAND: "off NODE" | "on NODE" | "status NODE" | "list"
    server: OK WORDS... | ERR REASON      then closes

    off    -> "OK off": the node's every process has ended and its link is down (synchronous)
    on     -> "OK on": power applied; the node boots in the background, as a server does
              after its BMC's "power on" (an off node only; an on node is left alone)
    status -> "OK on" | "OK off"
    list   -> "OK n1=on n2=off n3=on"

The secret never travels: only the MAC over a nonce the server chose, so a captured exchange
cannot be replayed. The secret is never logged. A request line must arrive within
REQUEST_TIMEOUT_S; a longer or malformed one gets "ERR ..." and the connection is closed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = ["PROTOCOL", "Outlets", "PowerController", "PowerEvent", "sign"]

PROTOCOL = "SWPDU 1"
REQUEST_TIMEOUT_S = 5.0
MAX_LINE = 512


class Outlets(Protocol):
    """What the controller switches: one outlet per node."""

    def outlet_names(self) -> Sequence[str]: ...

    def outlet_on(self, name: str) -> bool:
        """Whether node `name` has power (its init is alive)."""
        ...

    def outlet_off(self, name: str) -> None:
        """Cut the power: returns once every process of the node has ended."""
        ...

    def outlet_boot(self, name: str) -> None:
        """Power on and boot node `name` (may take seconds; the controller calls it in a
        thread of its own and has already answered "OK on")."""
        ...


def sign(secret: bytes, nonce: str, command: str) -> str:
    return hmac.new(secret, f"{nonce} {command}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class PowerEvent:
    at: float  # wall clock (time.time())
    mono: float  # time.monotonic(), for measurements in the same process
    command: str
    node: str
    result: str  # "ok", "denied" or the error
    seconds: float  # how long the command took


@dataclass
class PowerController:
    """Listens on `sock` (bound, not yet listening: the caller made it in the namespace it
    belongs to); `start` serves in a thread, `stop` closes it and waits."""

    sock: socket.socket
    secret: bytes
    outlets: Outlets
    log_path: Path | None = None
    events: list[PowerEvent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)  # one power op at a time
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _booting: set[str] = field(default_factory=set)  # powered on, still booting

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.sock.listen(16)
        self.sock.settimeout(0.2)  # the accept loop looks at _stop this often
        t = threading.Thread(target=self._serve, name="power-controller", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        for t in list(self._threads):
            t.join(timeout=30)

    def events_for(self, node: str, command: str | None = None) -> list[PowerEvent]:
        return [e for e in self.events if e.node == node and command in (None, e.command)]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            t.start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(REQUEST_TIMEOUT_S)
            nonce = secrets.token_hex(16)
            try:
                conn.sendall(f"{PROTOCOL} {nonce}\n".encode())
                line = _read_line(conn)
                reply = self._answer(nonce, line)
                conn.sendall(f"{reply}\n".encode())
            except (OSError, ValueError) as exc:
                with contextlib.suppress(OSError):
                    conn.sendall(f"ERR {_one_line(str(exc))}\n".encode())

    def _answer(self, nonce: str, line: str) -> str:
        mac, _, command = line.partition(" ")
        words = command.split()
        started = time.monotonic()
        node = words[1] if len(words) == 2 else ""
        if not words:
            return "ERR empty request"
        if not hmac.compare_digest(mac, sign(self.secret, nonce, command)):
            self._record(words[0], node, "denied", started)
            return "ERR authentication failed"
        verb = words[0]
        names = list(self.outlets.outlet_names())
        if verb == "list" and len(words) == 1:
            states = [f"{n}={_word(self._powered(n))}" for n in names]
            return "OK " + " ".join(states)
        if verb not in ("on", "off", "status") or len(words) != 2:
            return f"ERR unknown command {_one_line(command)[:60]!r}"
        if node not in names:
            return f"ERR unknown node {node[:40]!r}"
        try:
            if verb == "status":  # not behind a boot in progress: a booting node is on
                return f"OK {_word(self._powered(node))}"
            with self._lock:
                if verb == "off":
                    if self.outlets.outlet_on(node):
                        self.outlets.outlet_off(node)
                    self._record("off", node, "ok", started)
                    return "OK off"
                if not self._powered(node):
                    self._boot(node, started)
                else:
                    self._record("on", node, "ok (already on)", started)
                return "OK on"
        except Exception as exc:  # the outlet failed: the client must hear it, not hang
            self._record(verb, node, f"error: {exc}", started)
            return f"ERR {verb} {node}: {_one_line(str(exc))[:200]}"

    def _powered(self, node: str) -> bool:
        return node in self._booting or self.outlets.outlet_on(node)

    def _boot(self, node: str, started: float) -> None:
        def boot() -> None:
            with self._lock:
                try:
                    self.outlets.outlet_boot(node)
                    result = "ok"
                except Exception as exc:  # recorded; the node stays off
                    result = f"error: {exc}"
                finally:
                    self._booting.discard(node)
            self._record("boot", node, result, started)

        self._booting.add(node)
        self._record("on", node, "ok", started)
        t = threading.Thread(target=boot, name=f"power-boot-{node}", daemon=True)
        t.start()
        self._threads.append(t)

    def _record(self, command: str, node: str, result: str, started: float) -> None:
        now = time.monotonic()
        event = PowerEvent(time.time(), now, command, node, result, now - started)
        self.events.append(event)
        if self.log_path is not None:
            with self.log_path.open("a") as f:
                f.write(json.dumps(asdict(event)) + "\n")


def _word(on: bool) -> str:
    return "on" if on else "off"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _read_line(conn: socket.socket) -> str:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(MAX_LINE)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_LINE:
            raise ValueError("request line too long")
    try:
        return data.split(b"\n", 1)[0].decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError("request is not ASCII") from None

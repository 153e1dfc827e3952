"""A phone on TCP through the VIP, measured across a failover (issue 12 §4, TCP).

Owns: one kept TCP connection to the PBX (the lab's VIP), a REGISTER with digest on every new
connection, then an OPTIONS over it every `period_s` (a phone's keep-alive, far more often);
when the connection breaks — reset, closed by the far end, or a request unanswered within
`answer_timeout_s` — how it broke and when, then a new connection (tried every 0.2 s) and a
new REGISTER, as a phone does. A TCP connection cannot follow the VIP: the node that takes
the VIP over has no such connection, so the phone's next segment is answered with a reset
(or, where the old node still holds the VIP, nothing answers). What that costs is
`TcpPhone.after(moment)`: when the phone noticed, how, when it was registered again.
Must not know: sipwatch (the independent side of the lab).

    phone = TcpPhone(proxy=("10.250.0.100", 5060), local_ip="10.250.0.50", user="monitor",
                     password="lab-secret", netns=Netns("swlab-cl"))
    phone.start()            # once connected and registered
    t = time.monotonic(); ...
    phone.stop(); phone.after(t)
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field

from testbed import rawsip
from testbed.netns import Netns, enter
from testbed.process import TestbedError

__all__ = ["TcpPhone"]

RECONNECT_EVERY_S = 0.2


def _token() -> str:
    return os.urandom(6).hex()


@dataclass
class TcpPhone:
    proxy: tuple[str, int]
    local_ip: str
    user: str
    password: str
    netns: Netns | None = None
    period_s: float = 0.15
    answer_timeout_s: float = 1.0
    max_run_s: float = 300.0  # the phone stops by itself after this
    events: list[tuple[float, str, str]] = field(default_factory=list)  # (time, what, detail)
    answers: list[float] = field(default_factory=list)  # OPTIONS answered 200
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._main, name="tcp-phone", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s) or self._error is not None:
            self.stop()
            raise TestbedError(f"the TCP phone did not register: {self._error or self.events}")

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise TestbedError("the TCP phone did not stop")

    def after(self, moment: float) -> dict[str, object]:
        """What a fault at `moment` cost the phone: the first break after it (how, seconds
        after the fault), the first REGISTER answered 200 on a new connection, the gap
        between the last OPTIONS answered before and the first after, connections made."""
        breaks = [(t, what, d) for t, what, d in self.events if t > moment and what == "broken"]
        registered = [t for t, what, _ in self.events if t > moment and what == "registered"]
        before = [t for t in self.answers if t <= moment]
        later = [t for t in self.answers if t > moment]
        return {
            "noticed_s": round(breaks[0][0] - moment, 3) if breaks else None,
            "how": breaks[0][2] if breaks else None,
            "registered_again_s": round(registered[0] - moment, 3) if registered else None,
            "gap_s": round(later[0] - (before[-1] if before else moment), 3) if later else None,
            "connections": sum(what == "connected" for _, what, _ in self.events),
            "connect_failures": sum(
                what == "connect_failed" for t, what, _ in self.events if t > moment
            ),
        }

    # -- the thread -----------------------------------------------------------------------------
    def _note(self, what: str, detail: str = "") -> None:
        self.events.append((time.monotonic(), what, detail))

    def _main(self) -> None:
        try:
            if self.netns is not None:
                enter(self.netns)
            deadline = time.monotonic() + self.max_run_s
            while not self._stop.is_set() and time.monotonic() < deadline:
                sock = self._connect()
                if sock is None:
                    self._stop.wait(RECONNECT_EVERY_S)
                    continue
                with sock:
                    how = self._session(sock, deadline)
                if how:
                    self._note("broken", how)
        except BaseException as exc:  # reported by start()
            self._error = exc
        finally:
            self._ready.set()

    def _connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((self.local_ip, 0))
            sock.settimeout(1.0)
            sock.connect(self.proxy)
        except OSError as exc:
            sock.close()
            self._note("connect_failed", type(exc).__name__)
            return None
        self._note("connected")
        return sock

    def _session(self, sock: socket.socket, deadline: float) -> str:
        """REGISTER, then OPTIONS until the connection breaks or the phone stops: how it
        broke ("" when stopped)."""
        local = sock.getsockname()[:2]
        buf = bytearray()
        call_id, tag = f"{_token()}@tcp-phone", _token()
        host, port = self.proxy
        ruri = f"sip:{host}:{port};transport=tcp"
        contact = f"Contact: <sip:{self.user}@{local[0]}:{local[1]};transport=tcp>"
        extra = [contact, "Expires: 300"]
        cseq = 1
        try:
            answer = self._ask(sock, buf, "REGISTER", ruri, local, call_id, tag, cseq, extra)
            challenge = rawsip.header(answer, "WWW-Authenticate")
            if rawsip.status_code(answer) == 401 and challenge:
                cseq += 1
                auth = rawsip.digest_authorization(
                    challenge, method="REGISTER", uri=ruri, username=self.user,
                    password=self.password,
                )  # fmt: skip
                extra = [*extra, f"Authorization: {auth}"]
                answer = self._ask(sock, buf, "REGISTER", ruri, local, call_id, tag, cseq, extra)
            if rawsip.status_code(answer) != 200:
                return f"REGISTER answered {rawsip.status_code(answer)}"
            self._note("registered")
            self._ready.set()
            options_call = f"{_token()}@tcp-phone"
            n = 0
            while not self._stop.is_set() and time.monotonic() < deadline:
                n += 1
                answer = self._ask(sock, buf, "OPTIONS", ruri, local, options_call, tag, n, [])
                if rawsip.status_code(answer) == 200:
                    self.answers.append(time.monotonic())
                self._stop.wait(self.period_s)
            return ""
        except ConnectionResetError:
            return "reset"
        except TimeoutError:
            return "no answer"
        except ConnectionError as exc:
            return "closed" if isinstance(exc, _Closed) else type(exc).__name__
        except OSError as exc:
            return type(exc).__name__

    def _ask(
        self,
        sock: socket.socket,
        buf: bytearray,
        method: str,
        ruri: str,
        local: tuple[str, int],
        call_id: str,
        tag: str,
        cseq: int,
        headers: list[str],
    ) -> bytes:
        request = rawsip.build_request(
            method=method, ruri=ruri, transport="tcp", local=local, call_id=call_id,
            cseq=cseq, from_uri=f"sip:{self.user}@{self.proxy[0]}", from_tag=tag,
            to_uri=f"sip:{self.user}@{self.proxy[0]}", headers=headers,
        )  # fmt: skip
        sock.sendall(request)
        end = time.monotonic() + self.answer_timeout_s
        while True:
            message = _take_message(buf)
            if message is not None:
                status = rawsip.status_code(message)
                if status is not None and status >= 200:
                    return message
                continue
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
            data = sock.recv(65535)
            if not data:
                raise _Closed
            buf += data


class _Closed(ConnectionError):
    """The far end closed the connection (FIN)."""


def _take_message(buf: bytearray) -> bytes | None:
    """One whole SIP message off the front of a TCP stream buffer (Content-Length framing),
    None until one is complete; keep-alive CRLFs skipped."""
    while buf[:2] == b"\r\n":
        del buf[:2]
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end])
    match = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
    length = int(match.group(1)) if match else 0
    total = end + 4 + length
    if len(buf) < total:
        return None
    message = bytes(buf[:total])
    del buf[:total]
    return message

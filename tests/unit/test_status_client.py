"""The bounded /status client against real sockets on loopback that misbehave: slow, trickling,
huge, garbage. Every failure is a DaemonStatusError within the bounds, never a hang."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from sipwatch.errors import DaemonStatusError
from sipwatch.status_client import get_status

Handler = Callable[[socket.socket], None]


class Server:
    """A TCP server on 127.0.0.1 that runs `handler` on each connection, in a thread."""

    def __init__(self, handler: Handler) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handler = handler
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)  # the request
                    self.handler(conn)
                except OSError:
                    pass  # the client gave up: what these tests want

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], Server]]:
    servers: list[Server] = []

    def start(handler: Handler) -> Server:
        servers.append(Server(handler))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def answer(body: bytes, *, status: str = "200 OK", length: int | None = None) -> Handler:
    size = len(body) if length is None else length
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    return lambda conn: conn.sendall(head.encode() + body)


def timed(port: int, **kw: float) -> tuple[float, str]:
    started = time.monotonic()
    with pytest.raises(DaemonStatusError) as caught:
        get_status("127.0.0.1", port, **kw)  # type: ignore[arg-type]
    return time.monotonic() - started, str(caught.value)


def test_a_good_answer(serve: Callable[[Handler], Server]) -> None:
    server = serve(answer(b'{"verdict": "green", "probes": {}}'))
    assert get_status("127.0.0.1", server.port) == {"verdict": "green", "probes": {}}


def test_an_answer_without_content_length_ends_at_close(serve: Callable[[Handler], Server]) -> None:
    server = serve(lambda conn: conn.sendall(b'HTTP/1.0 200 OK\r\n\r\n{"a": 1}'))
    assert get_status("127.0.0.1", server.port) == {"a": 1}


def test_no_daemon() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    elapsed, message = timed(port)
    assert elapsed < 0.5 and "no daemon on 127.0.0.1:" in message


@pytest.mark.parametrize("host", ["\u00fc" * 100, "a\x00b"])
def test_a_host_that_cannot_be_reached(host: str) -> None:
    with pytest.raises(DaemonStatusError, match="no daemon on"):
        get_status(host, 9)


def test_a_server_that_never_answers(serve: Callable[[Handler], Server]) -> None:
    server = serve(lambda conn: time.sleep(1))
    elapsed, message = timed(server.port, read_timeout_s=0.3)
    assert 0.25 < elapsed < 1.0, elapsed
    assert "no full answer within 0.3 s" in message


def test_a_trickling_server_is_cut_at_the_read_deadline(
    serve: Callable[[Handler], Server],
) -> None:
    """One byte every 50 ms: each read is quick, the whole answer is not. A per-read
    timeout would wait for ever; the deadline covers the sum of the reads."""

    def trickle(conn: socket.socket) -> None:
        for byte in b"HTTP/1.0 200 OK\r\n\r\n" + b" " * 10_000:
            conn.sendall(bytes([byte]))
            time.sleep(0.05)

    server = serve(trickle)
    elapsed, message = timed(server.port, read_timeout_s=0.5)
    assert 0.45 < elapsed < 1.2, elapsed
    assert "no full answer within 0.5 s" in message


def test_ten_megabytes_are_refused_without_reading_them_all(
    serve: Callable[[Handler], Server],
) -> None:
    big = b"[" + b"1," * (5 << 20) + b"1]"  # 10 MiB of valid JSON
    server = serve(lambda conn: conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + big))
    elapsed, message = timed(server.port, read_timeout_s=5.0)
    assert "body larger than 4194304 B" in message and elapsed < 5.0
    server = serve(answer(big))  # announced: refused on the headers alone
    _, message = timed(server.port)
    assert f"body of {len(big)} B, more than 4194304" in message


def test_endless_headers_are_refused(serve: Callable[[Handler], Server]) -> None:
    server = serve(lambda conn: conn.sendall(b"HTTP/1.0 200 OK\r\n" + b"X: y\r\n" * 20_000))
    assert "headers longer than" in timed(server.port)[1]


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (answer(b"{}", status="503 Service Unavailable"), "HTTP 503"),
        (lambda conn: conn.sendall(b"SIP/2.0 200 OK\r\n\r\n{}"), "not an HTTP answer"),
        (
            lambda conn: conn.sendall(b"HTTP/1.0 200 OK\r\nContent-"),
            "before the end of the headers",
        ),
        (lambda conn: None, "before the end of the headers"),  # closed at once
        (answer(b'{"a": 1}', length=100), "body cut short (8 of 100 B)"),
        (
            lambda conn: conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: \xef\xbc\x95\r\n\r\n"),
            "bad Content-Length",
        ),
        (
            lambda conn: conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "unexpected Transfer-Encoding",
        ),
        (answer(b"<html>not json</html>"), "/status is not JSON"),
        (answer(b"\xff\xfe garbage"), "/status is not JSON"),
        (answer(b"[" * 100_000 + b"]" * 100_000), "/status is not JSON"),  # too deep
        (answer(b'["a list"]'), "JSON but not an object: list"),
    ],
    ids=[
        "503",
        "not http",
        "cut headers",
        "closed",
        "short body",
        "unicode length",
        "chunked",
        "html",
        "bytes",
        "deep nesting",
        "list",
    ],
)
def test_bad_answers(serve: Callable[[Handler], Server], handler: Handler, message: str) -> None:
    server = serve(handler)
    assert message in timed(server.port)[1]


def test_the_answer_is_json_as_the_daemon_sends_it(serve: Callable[[Handler], Server]) -> None:
    body = json.dumps({"verdict": "red", "detail": "é ✓"}).encode()
    server = serve(answer(body))
    assert get_status("127.0.0.1", server.port)["detail"] == "é ✓"

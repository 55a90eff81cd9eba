"""The build VM's egress proxy: its destination policy, and forwarding, tunnelling and close()
through a real proxy. Every connection here stays on loopback; other addresses only ever meet
the policy function."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import ipaddress
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from imgpipe.builders import egress
from imgpipe.builders.egress import EgressProxy, host_addresses, refusal_reason

BIG = bytes(range(256)) * (3 * 4096)  # 3 MiB: more than any single socket buffer


def allow_loopback(host: str, port: int) -> str | None:
    return None if host == "127.0.0.1" else refusal_reason(host, port)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "::1",
        "169.254.169.254",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "fe80::1",
        "224.0.0.1",
    ],
)
def test_policy_refuses_this_host_link_local_and_special_addresses(host):
    assert refusal_reason(host, 80)


def test_policy_refuses_this_hosts_own_addresses():
    own = [a for a in host_addresses() if not (a.is_loopback or a.is_link_local)]
    if not own:
        pytest.skip("this host has no address besides loopback and link-local")
    assert "this host's own" in str(refusal_reason(str(own[0]), 443))


@pytest.mark.parametrize("host", ["10.1.2.3", "192.168.1.10", "203.0.113.5", "2001:db8::5"])
def test_policy_allows_private_mirrors_and_public_addresses(host):
    assert ipaddress.ip_address(host) not in host_addresses()
    assert refusal_reason(host, 80) is None


class Origin(http.server.BaseHTTPRequestHandler):
    """A loopback web server: /big (Content-Length), /chunked, and POST echo."""

    protocol_version = "HTTP/1.1"
    seen: list[http.client.HTTPMessage] = []

    def do_GET(self):
        Origin.seen.append(self.headers)
        self.send_response(200)
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(BIG)))
        self.end_headers()
        self.wfile.write(BIG)

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[::-1])

    def log_message(self, format, *args):
        pass


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)


def serve(server: socketserver.TCPServer) -> Iterator[int]:
    server.daemon_threads = True  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def origin_port():
    yield from serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Origin))


@pytest.fixture
def echo_port():
    yield from serve(socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo))


def via(proxy: EgressProxy) -> contextlib.closing[http.client.HTTPConnection]:
    return contextlib.closing(http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5))


def fetch(proxy: EgressProxy, url: str) -> tuple[int, bytes]:
    with via(proxy) as conn:
        conn.request("GET", url)
        response = conn.getresponse()
        return response.status, response.read()


def test_loopback_destination_is_refused_with_403_and_reported(origin_port):
    reports: list[str] = []
    Origin.seen.clear()
    with EgressProxy(reports.append) as proxy:
        status, body = fetch(proxy, f"http://127.0.0.1:{origin_port}/big")
    assert status == 403
    assert b"loopback" in body and body.count(b"\n") == 1
    assert proxy.refused == reports == [f"127.0.0.1:{origin_port}: 127.0.0.1 is a loopback address"]
    assert Origin.seen == []


def test_get_streams_through_the_proxy_over_one_keep_alive_connection(origin_port):
    Origin.seen.clear()
    with EgressProxy(policy=allow_loopback) as proxy, via(proxy) as conn:
        headers = {"Proxy-Authorization": "Basic c2VjcmV0", "Proxy-Connection": "keep-alive"}
        conn.request("GET", f"http://127.0.0.1:{origin_port}/big", headers=headers)
        response = conn.getresponse()
        assert (response.status, response.getheader("Content-Length")) == (200, str(len(BIG)))
        assert response.read() == BIG
        conn.request("GET", f"http://127.0.0.1:{origin_port}/chunked")  # the same connection
        assert conn.getresponse().read() == b"hello chunked world"
        conn.request("POST", f"http://127.0.0.1:{origin_port}/echo", body=b"abc")
        response = conn.getresponse()
        assert (response.status, response.read()) == (201, b"cba")
    assert proxy.refused == []
    assert Origin.seen[0]["Host"] == f"127.0.0.1:{origin_port}"
    assert "Proxy-Authorization" not in Origin.seen[0] and "Proxy-Connection" not in Origin.seen[0]


def test_unresolvable_name_and_failed_connect_answer_502(monkeypatch):
    def no_such_name(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]  # bound, never listening: connect is refused
        with EgressProxy(policy=allow_loopback) as proxy:
            status, body = fetch(proxy, f"http://127.0.0.1:{closed_port}/")
            assert (status, b"cannot connect" in body) == (502, True)
            monkeypatch.setattr(egress, "resolve", no_such_name)
            status, body = fetch(proxy, "http://mirror.example/debian/")
            assert (status, b"does not resolve" in body) == (502, True)
    assert proxy.refused == []


def connect(proxy: EgressProxy, port: int, early: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode() + early)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 200 "), head
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n and (part := sock.recv(n - len(data))):
        data += part
    return data


def test_connect_tunnel_relays_both_ways(echo_port):
    with EgressProxy(policy=allow_loopback) as proxy, connect(proxy, echo_port, early=b"hello") as sock:
        assert recv_exactly(sock, 5) == b"hello"  # bytes sent along with CONNECT are not lost
        threading.Thread(target=sock.sendall, args=(BIG,), daemon=True).start()
        assert recv_exactly(sock, len(BIG)) == BIG


def test_connect_to_loopback_is_refused(echo_port):
    with EgressProxy() as proxy, socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(f"CONNECT localhost:{echo_port} HTTP/1.1\r\n\r\n".encode())
        assert recv_exactly(sock, 1000).startswith(b"HTTP/1.1 403 ")
    assert proxy.refused == [f"localhost:{echo_port}: 127.0.0.1 is a loopback address"]


def test_close_ends_an_idle_tunnel_and_the_listener_quickly(echo_port):
    proxy = EgressProxy(policy=allow_loopback).start()
    with connect(proxy, echo_port) as sock:
        started = time.monotonic()
        proxy.close()
        assert time.monotonic() - started < 2
        assert sock.recv(1) == b""  # the tunnel is cut, not left dangling
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()

"""The build VM's only way out: an HTTP forward proxy on the host's loopback.

The VM runs untrusted roles as root on a restricted slirp network, so it reaches nothing by
itself; apt and friends use this proxy (over an SSH remote forward) instead. The proxy refuses
destinations on this host and link-local ones (the cloud metadata service), so a role cannot
reach the host's loopback services or a CI runner's credentials through it."""

from __future__ import annotations

import contextlib
import functools
import http.client
import ipaddress
import json
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

Policy = Callable[[str, int], str | None]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
# Hop-by-hop headers describe one connection and are not forwarded (RFC 9110 7.6.1); the proxy
# sets Host and Content-Length itself.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate"}
_HOP_BY_HOP |= {"te", "trailer", "transfer-encoding", "upgrade", "expect", "host", "content-length"}
_CHUNK = 65536


@functools.cache
def host_addresses() -> frozenset[IPAddress]:
    """This host's own addresses, read once: a service bound to 0.0.0.0 answers on each of them."""
    try:
        out = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, timeout=5, check=True)
        infos = [a for link in json.loads(out.stdout) for a in link.get("addr_info", [])]
        return frozenset(ipaddress.ip_address(a["local"].split("%")[0]) for a in infos if "local" in a)
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError, AttributeError):
        with contextlib.suppress(OSError, ValueError):
            return frozenset(map(ipaddress.ip_address, socket.gethostbyname_ex(socket.gethostname())[2]))
        return frozenset()


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order (raises OSError)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_refusal(address: str) -> str | None:
    """Why the proxy must not connect to one address literal, or None."""
    ip: IPAddress = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # A v4 address wrapped in v6 reaches the v4 destination: judge that one.
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    for kind, hit in (
        ("loopback", ip.is_loopback),
        ("link-local (cloud metadata service)", ip.is_link_local),
        ("unspecified", ip.is_unspecified or ip in _THIS_NETWORK),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("one of this host's own", ip in host_addresses()),
    ):
        if hit:
            return f"{address} is a {kind} address"
    return None


def refusal_reason(host: str, port: int) -> str | None:
    """Why the build VM may not reach host:port, or None. A name is refused when any address it
    resolves to is refused; private ranges stay allowed (teams run package mirrors there)."""
    try:
        addresses = resolve(host, port)
    except OSError as exc:
        return f"does not resolve ({exc})"
    return next(filter(None, map(address_refusal, addresses)), None) if addresses else "no address"


class EgressProxy:
    """HTTP/1.1 forward proxy (CONNECT and absolute-URI requests) on 127.0.0.1:`port`.

    `policy(address, port)` is asked about every address a destination resolves to, and the
    proxy then connects to one of exactly those addresses (no second lookup, so no DNS
    rebinding). Refusals are appended to `refused` and passed to `on_refused` (called from a
    proxy thread). Nothing is ever printed."""

    def __init__(
        self,
        on_refused: Callable[[str], None] | None = None,
        *,
        policy: Policy = refusal_reason,
        idle_timeout: float = 120.0,
        connect_timeout: float = 15.0,
    ) -> None:
        self.on_refused = on_refused
        self.policy = policy
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.port = 0
        self.refused: list[str] = []
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> EgressProxy:
        host_addresses.cache_clear()  # read this host's addresses afresh for each build
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="egress-proxy", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop listening and cut every open connection and tunnel; returns within about 1 s."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            sockets = list(self._sockets)
        for sock in sockets:  # shutdown wakes the threads blocked on them; they close their own
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=1)

    def __enter__(self) -> EgressProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _track(self, sock: socket.socket) -> bool:
        with self._lock:
            if not self._closed:
                self._sockets.add(sock)
            return not self._closed

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)

    def _refuse(self, text: str) -> None:
        with self._lock:
            self.refused.append(text)
        if self.on_refused is not None:
            self.on_refused(text)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    request_queue_size = 64  # parallel downloads (pip, several apt sources) connect in bursts
    proxy: EgressProxy

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that vanished mid-request is routine here; core code never prints."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: apt pipelines requests over one connection
    rbufsize = 0  # unbuffered, so bytes a client sends right after CONNECT reach the tunnel
    server: _Server

    def setup(self) -> None:
        self.proxy = self.server.proxy
        self.timeout = self.proxy.idle_timeout
        super().setup()

    def handle(self) -> None:
        if self.proxy._track(self.connection):
            with self._tracked(self.connection):
                super().handle()

    def log_message(self, format: str, *args: object) -> None:
        """Silenced: core code never prints; refusals reach the caller through `on_refused`."""

    @contextlib.contextmanager
    def _tracked(self, sock: socket.socket | None) -> Iterator[socket.socket | None]:
        try:
            yield sock
        finally:
            if sock is not None:
                self.proxy._untrack(sock)
                if sock is not self.connection:  # socketserver closes the client's own socket
                    sock.close()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's answers to malformed requests, as one line of text like the proxy's own."""
        self._fail(code, message or HTTPStatus(code).phrase)

    def _fail(self, code: int, text: str) -> None:
        body = f"{text}\n".encode()
        self.send_response_only(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"" if self.command == "HEAD" else body)

    def _open(self, host: str, port: int) -> socket.socket | None:
        """A connection to host:port that the policy allows, or None after answering the error."""
        try:
            addresses = resolve(host, port)
        except OSError as exc:
            return self._fail(502, f"{host}:{port}: does not resolve ({exc})")
        if reason := next(filter(None, (self.proxy.policy(a, port) for a in addresses)), None):
            self._fail(403, f"{host}:{port}: {reason}")
            self.proxy._refuse(f"{host}:{port}: {reason}")
            return None
        error: OSError = OSError("no address")
        for address in addresses:  # exactly the checked addresses: no second lookup to rebind
            try:
                sock = socket.create_connection((address, port), timeout=self.proxy.connect_timeout)
            except OSError as exc:
                error = exc
                continue
            if not self.proxy._track(sock):  # close() came while connecting
                sock.close()
                return None
            sock.settimeout(self.proxy.idle_timeout)
            return sock
        return self._fail(502, f"{host}:{port}: cannot connect ({error})")

    def do_CONNECT(self) -> None:
        """A TLS tunnel: relay bytes both ways until both sides finish or it idles out."""
        self.close_connection = True
        host, port = _host_port(f"//{self.path}", None)
        if not host or not port:
            return self._fail(400, f"{self.path}: CONNECT needs host:port")
        with self._tracked(self._open(host, port)) as upstream:
            if upstream is not None:
                self.send_response_only(200, "Connection Established")
                self.end_headers()
                self._relay(self.connection, upstream)

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        """One thread per direction: a single-threaded relay blocked sending one way can
        deadlock against a peer that is itself blocked sending the other way."""
        last = [time.monotonic()]

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while not self.proxy._closed:
                    try:
                        data = src.recv(_CHUNK)
                    except TimeoutError:  # quiet this way; the tunnel idles out only if both are
                        if time.monotonic() - last[0] < self.proxy.idle_timeout:
                            continue
                        raise
                    if not data:  # half-close: pass the EOF on, the other way may go on
                        return dst.shutdown(socket.SHUT_WR)
                    dst.sendall(data)
                    last[0] = time.monotonic()
            except OSError:
                pass
            for sock in (src, dst):  # an error or idle timeout ends both ways
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        other = threading.Thread(target=pump, args=(b, a), name="egress-tunnel", daemon=True)
        other.start()
        pump(a, b)
        other.join()

    def _forward_http(self) -> None:
        """A plain-http request. Every http response passes through here, so a later host-side
        package cache can answer a GET before `_open` and store the chunks `_body` yields."""
        url = urlsplit(self.path)
        host, port = _host_port(self.path, 80)
        length = self.headers.get("Content-Length", "0")
        if url.scheme != "http" or not host or not port:
            return self._fail(400, f"{self.path}: not an absolute http:// URL (https uses CONNECT)")
        if "Transfer-Encoding" in self.headers or not length.isdigit():
            return self._fail(411, "a request body needs a Content-Length")
        with self._tracked(self._open(host, port)) as upstream:
            if upstream is None:
                return None
            conn = http.client.HTTPConnection(host, port)
            conn.sock = upstream  # already connected to a checked address
            target = (url.path or "/") + (f"?{url.query}" if url.query else "")
            headers = [("Host", url.netloc.rpartition("@")[2]), *_end_to_end(self.headers)]
            headers += [("Content-Length", length)] if "Content-Length" in self.headers else []
            try:
                conn.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
                for name, value in [*headers, ("Connection", "close")]:
                    conn.putheader(name, value)
                conn.endheaders()
                remaining = int(length)
                while remaining > 0:
                    if not (data := self.rfile.read(min(_CHUNK, remaining))):
                        raise ConnectionError("the client left mid-body")
                    conn.send(data)
                    remaining -= len(data)
                response = conn.getresponse()
            except (OSError, ValueError, http.client.HTTPException) as exc:
                return self._fail(502, f"{host}:{port}: {str(exc) or type(exc).__name__}")
            with response:
                self._reply(response)

    def _reply(self, response: http.client.HTTPResponse) -> None:
        no_body = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        chunked = not no_body and response.chunked and self.request_version == "HTTP/1.1"
        self.send_response_only(response.status, response.reason or None)
        for name, value in _end_to_end(response.msg):
            self.send_header(name, value)
        if no_body and "Content-Length" in response.msg:  # a HEAD answer tells the GET's length
            self.send_header("Content-Length", response.msg["Content-Length"])
        elif not no_body and response.length is not None:
            self.send_header("Content-Length", str(response.length))
        elif chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif not no_body:
            self.close_connection = True  # the body ends when the connection does
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        for data in () if no_body else _body(response):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        self.wfile.write(b"0\r\n\r\n" if chunked else b"")
        if response.length:  # the origin hung up early: only a close tells the client
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _forward_http


def _host_port(url: str, default_port: int | None) -> tuple[str | None, int | None]:
    parts = urlsplit(url)
    try:
        return parts.hostname, parts.port or default_port
    except ValueError:  # a port that is not a number in 0..65535
        return None, None


def _end_to_end(headers: http.client.HTTPMessage) -> list[tuple[str, str]]:
    named = {token.strip().lower() for v in headers.get_all("Connection", []) for token in v.split(",")}
    return [(k, v) for k, v in headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() not in named]


def _body(response: http.client.HTTPResponse) -> Iterator[bytes]:
    """The response body as it arrives, never all of it in memory."""
    while data := response.read1(_CHUNK):
        yield data

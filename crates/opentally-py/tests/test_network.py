"""The SDK on a restricted network: an HTTPS collector reached through a CONNECT proxy named by
`HTTPS_PROXY`, trusted through `OPENTALLY_CA_BUNDLE`; `NO_PROXY` goes around the proxy; an
untrusted certificate fails silently. The collector is a real `opentally serve` behind a TLS
terminator, as it runs behind nginx."""

import json
import socket
import ssl
import threading

import pytest
import trustme

from conftest import Collector, run_python

SEND = """
import json, opentally
opentally.init("netapp", version="1.0", write_key={key!r}, endpoint={url!r}, notice=False)
opentally.track("fit", n=1)
ok = opentally.flush(3.0)
s = opentally.status()
print(json.dumps({{"ok": ok, "counters": s.counters}}))
"""


def pipe(a, b):
    """Copies bytes both ways until either side closes."""

    def one(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    back = threading.Thread(target=one, args=(b, a), daemon=True)
    back.start()
    one(a, b)
    back.join(10)
    a.close()
    b.close()


class Listener:
    """A loopback listener that hands each connection to `handle` on a thread of its own; its
    loop ends when it is closed."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.seen = []
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.guarded, args=(conn,), daemon=True).start()

    def guarded(self, conn):
        try:
            self.handle(conn)
        except OSError:
            conn.close()

    def close(self):
        self.sock.close()


class TlsTerminator(Listener):
    """TLS on the outside, the collector's plain HTTP inside, as nginx would be."""

    def __init__(self, ca, backend_port):
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(self.context)
        self.backend_port = backend_port
        super().__init__()

    def handle(self, conn):
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            # The client did not trust the certificate: it hung up in the handshake.
            self.seen.append("handshake refused")
            conn.close()
            return
        self.seen.append("handshake ok")
        pipe(tls, socket.create_connection(("127.0.0.1", self.backend_port), timeout=10))


class ConnectProxy(Listener):
    """An HTTP proxy that only tunnels (`CONNECT host:port`), recording each target."""

    def handle(self, conn):
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                conn.close()
                return
            head += chunk
        method, target = head.split(b"\r\n")[0].decode().split(" ")[:2]
        if method != "CONNECT":
            conn.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            conn.close()
            return
        self.seen.append(target)
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=10)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pipe(conn, upstream)


@pytest.fixture
def network(tmp_path):
    c = Collector(tmp_path / "data")
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    tls = TlsTerminator(ca, c.port)
    proxy = ConnectProxy()
    yield c, tls, proxy, bundle
    proxy.close()
    tls.close()
    c.stop()


def send(tmp_path, c, tls, **env):
    home = tmp_path / "home"
    for d in ("state", "config", "work"):
        (home / d).mkdir(parents=True, exist_ok=True)
    p = run_python(home, SEND.format(key=c.key, url="https://127.0.0.1:%d" % tls.port), **env)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


def test_https_proxy_carries_the_batch_to_a_collector_trusted_through_a_ca_bundle(tmp_path, network):
    c, tls, proxy, bundle = network
    out, stderr = send(tmp_path, c, tls, HTTPS_PROXY="http://127.0.0.1:%d" % proxy.port,
                       OPENTALLY_CA_BUNDLE=str(bundle))
    assert out["ok"] and out["counters"]["sent"] == 1, out
    assert proxy.seen == ["127.0.0.1:%d" % tls.port]
    assert tls.seen == ["handshake ok"]
    assert [e["event"] for e in c.events(wait_for=1)] == ["fit"]
    assert stderr == ""


def test_no_proxy_goes_around_the_proxy(tmp_path, network):
    c, tls, proxy, bundle = network
    out, _ = send(tmp_path, c, tls, HTTPS_PROXY="http://127.0.0.1:%d" % proxy.port, NO_PROXY="localhost,127.0.0.1",
                  OPENTALLY_CA_BUNDLE=str(bundle))
    assert out["ok"] and out["counters"]["sent"] == 1, out
    assert proxy.seen == []
    assert tls.seen == ["handshake ok"]


def test_an_untrusted_certificate_fails_silently_and_the_batch_waits_in_the_spool(tmp_path, network):
    c, tls, proxy, _ = network
    out, stderr = send(tmp_path, c, tls, HTTPS_PROXY="http://127.0.0.1:%d" % proxy.port)
    assert out["counters"]["sent"] == 0 and out["counters"]["retried"] >= 1 and out["counters"]["spooled"] == 1
    assert "handshake refused" in tls.seen
    assert stderr == "", "a failure is never printed outside inspect mode"
    assert c.events() == []


def test_a_proxy_that_cannot_be_used_is_never_gone_around(tmp_path, network):
    """SOCKS is not built in and `ftp://` is no HTTP proxy: nothing goes out, directly or
    otherwise, nothing is printed, and the batch waits in the spool; `opentally forget` says why
    instead of crashing."""
    import subprocess

    from conftest import BIN, child_env

    c, tls, proxy, bundle = network
    # A first delivery records the collector, for `forget` below.
    out, _ = send(tmp_path, c, tls, HTTPS_PROXY="http://127.0.0.1:%d" % proxy.port, OPENTALLY_CA_BUNDLE=str(bundle))
    assert out["counters"]["sent"] == 1
    seen = list(tls.seen)
    for value in ("socks5h://127.0.0.1:9", "ftp://127.0.0.1:1"):
        out, stderr = send(tmp_path, c, tls, ALL_PROXY=value, OPENTALLY_CA_BUNDLE=str(bundle))
        assert out["counters"]["sent"] == 0 and out["counters"]["spooled"] >= 1, out
        assert stderr == ""
    assert tls.seen == seen, "nothing reached the collector around the proxy"
    assert len(c.events(wait_for=1)) == 1
    forget = subprocess.run([BIN, "forget", "--app", "netapp"], capture_output=True, text=True, timeout=60,
                            env=child_env(tmp_path / "home", ALL_PROXY="socks5h://127.0.0.1:9",
                                          OPENTALLY_CA_BUNDLE=str(bundle)))
    assert forget.returncode == 2, (forget.returncode, forget.stderr)  # could not run: not a crash (101)
    assert "cannot be used" in forget.stderr and "panicked" not in forget.stderr

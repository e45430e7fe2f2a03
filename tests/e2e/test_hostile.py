"""Hostile clients against the real binary: queries built to crash or exhaust the collector,
slowloris sockets, unreadable query strings, a data dir others could read. The server stays up,
answers others, and keeps its memory and descriptors within bounds."""

import json
import os
import resource
import signal
import socket
import stat
import subprocess
import time
import urllib.request

import pytest

from conftest import BIN, Server, call, opentally


@pytest.fixture
def shop(data_dir):
    return json.loads(opentally("project", "create", "shop", "--json", data=data_dir))


def sql(server, token, statement):
    return call(server.url + "/api/v1/projects/shop/sql", token, json.dumps({"sql": statement}).encode(),
                "application/json")


def healthy(server):
    with urllib.request.urlopen(server.url + "/healthz", timeout=5) as r:
        return r.status == 200


def test_deep_queries_are_refused_and_the_collector_stays_up(data_dir, shop):
    """Regression: `SELECT 1+1+…+1` with 1,000 terms overflowed a runtime thread's stack and
    aborted the whole process; so did a funnel of 120 steps with a `where`."""
    server = Server(data_dir).start()
    try:
        token = shop["admin_token"]
        status, body = sql(server, token, "SELECT " + "+".join(["1"] * 1000))
        assert (status, body["code"]) == (400, "bad_query"), body
        assert "deep" in body["message"], body
        # Nested in parentheses and subqueries too.
        status, body = sql(server, token, "SELECT " + "(" * 500 + "1" + ")" * 500)
        assert (status, body["code"]) == (400, "bad_query"), body
        status, body = sql(server, token, "SELECT * FROM " + "(SELECT * FROM " * 100 + "events" + ") t" * 100)
        assert (status, body["code"]) == (400, "bad_query"), body
        steps = ",".join(f"e{i}" for i in range(120))
        status, body = call(server.url + f"/api/v1/projects/shop/insights/funnel?steps={steps}&where=os.name%3Dlinux",
                            token)
        assert (status, body["code"]) == (400, "bad_query"), body
        assert "at most 20 steps" in body["message"], body
        # Plans that grow without nesting deep: CTEs that each read the one before twice (a
        # 1 KB statement planned 2^22 scans and took the process down), long chains of CTEs,
        # unions of thousands of selects, joins of hundreds of tables.
        doubling = ["a0 AS (SELECT 1 x)"] + [f"a{i} AS (SELECT x FROM a{i - 1} UNION ALL SELECT x FROM a{i - 1})"
                                            for i in range(1, 22)]
        chain = ["a0 AS (SELECT 1 x)"] + [f"a{i} AS (SELECT x + 1 x FROM a{i - 1})" for i in range(1, 600)]
        for statement in [
            "WITH " + ",".join(doubling) + " SELECT count(*) FROM a21",
            "WITH " + ",".join(chain) + " SELECT x FROM a599",
            " UNION ALL ".join(["SELECT 1"] * 2000),
            "SELECT 1 FROM " + ",".join(f"(SELECT 1) t{i}" for i in range(500)),
        ]:
            status, body = sql(server, token, statement)
            assert (status, body["code"]) == (400, "bad_query"), (statement[:80], body)
            assert "too large" in body["message"], body
        # A few CTEs read a few times plan as before.
        status, body = sql(server, token, "WITH a AS (SELECT 1 x), b AS (SELECT x FROM a UNION ALL SELECT x FROM a) "
                                          "SELECT count(*) AS n FROM b, a")
        assert (status, body["rows"]) == (200, [[2]]), body
        # The longest funnel, with a filter, plans within the caps.
        steps = ",".join(f"e{i}" for i in range(20))
        status, body = call(server.url + f"/api/v1/projects/shop/insights/funnel?steps={steps}&where=os.name%3Dlinux",
                            token)
        assert status == 200, body
        # A deep statement just under the limits still answers.
        status, body = sql(server, token, "SELECT " + "+".join(["1"] * 60) + " AS n")
        assert (status, body["rows"]) == (200, [[60]]), body
        assert server.proc.poll() is None, "the collector died"
        assert healthy(server)
    finally:
        server.stop()
    cli = subprocess.run([BIN, "sql", "--project", "shop", "SELECT " + "+".join(["1"] * 1000),
                          "--data", str(data_dir)], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 2 and "deep" in cli.stderr, (cli.returncode, cli.stderr)


def test_the_query_memory_limit_holds_and_results_are_cut(data_dir, shop):
    """Regression: with query_memory_mb=64, `repeat('x', 300000000)` answered at 1.5 GB of RSS
    and `generate_series(1, 30000000)` was collected whole before the row cut."""
    server = Server(data_dir)
    os.environ["OPENTALLY_QUERY_MEMORY_MB"] = "64"
    try:
        server.start()
    finally:
        del os.environ["OPENTALLY_QUERY_MEMORY_MB"]
    try:
        token = shop["admin_token"]
        before = server.peak_rss_kb()
        status, body = sql(server, token, "SELECT length(repeat('x', 300000000)) AS n")
        assert (status, body["code"]) == (422, "query_memory"), body
        status, body = sql(server, token, "SELECT length(lpad('x', 300000000)) AS n")
        assert (status, body["code"]) == (422, "query_memory"), body
        status, body = sql(server, token, "SELECT value FROM generate_series(1, 30000000)")
        assert status == 200, body
        assert len(body["rows"]) == 10_000 and body["truncated"] is True
        # A large constant is repeated for every row of a batch: refused before it is made.
        status, body = sql(server, token, "SELECT repeat('y', 1000000) AS s FROM generate_series(1, 5000)")
        assert (status, body["code"]) == (422, "query_memory"), body
        # Per-row values that together pass the limit.
        status, body = sql(server, token,
                           "SELECT repeat('y', 100000 + value) AS s FROM generate_series(1, 5000)")
        assert (status, body["code"]) == (422, "query_memory"), body
        # Growing operations beside the named functions: array_resize, the `||` operator
        # (evaluated where no function check sees it, until it became one), concat's arguments.
        status, body = sql(server, token, "SELECT cardinality(array_resize([1], 300000000, 0)) AS n")
        assert (status, body["code"]) == (422, "query_memory"), body
        levels = ["a0 AS (SELECT repeat('x', 1000) s)"] + [
            f"a{i} AS (SELECT {'||'.join(['s'] * 40)} s FROM a{i - 1})" for i in range(1, 5)]
        status, body = sql(server, token, "WITH " + ",".join(levels) + " SELECT length(s) FROM a4")
        assert (status, body["code"]) == (422, "query_memory"), body
        status, body = sql(server, token, "WITH a AS (SELECT repeat(CAST(value AS VARCHAR), 4000000) s "
                                          "FROM generate_series(1, 1)) SELECT length(concat(" + ",".join(["s"] * 100)
                                          + ")) FROM a")
        assert (status, body["code"]) == (422, "query_memory"), body
        # `||` still means what it means.
        status, body = sql(server, token, "SELECT 'a' || 'b' AS s, NULL || 'b' AS n, 1 || 2 AS d")
        assert (status, body["rows"]) == (200, [["ab", None, "12"]]), body
        # Rows sharing one large buffer: turned into values a row at a time, cut at the byte cap.
        status, body = sql(server, token, "WITH a AS (SELECT arrow_cast(repeat(CAST(value AS VARCHAR), 200000), "
                                          "'Utf8View') s FROM generate_series(1, 1)) "
                                          "SELECT a.s, a.s AS t, a.s AS u FROM a CROSS JOIN generate_series(1, 8192)")
        assert status == 200, body
        assert body["truncated"] is True and 0 < len(body["rows"]) < 100, len(body["rows"])
        # A statement longer than its literals may take once repeated for a batch's rows.
        status, body = sql(server, token, "SELECT '" + "z" * 20000 + "' AS s")
        assert (status, body["code"]) == (400, "bad_query"), body
        peak = server.peak_rss_kb()
        print(f"hostile queries: peak RSS {before / 1024:.0f} MiB before, {peak / 1024:.0f} MiB after")
        assert peak - before < 400 * 1024, f"peak RSS grew by {(peak - before) / 1024:.0f} MiB"
        assert healthy(server)
    finally:
        server.stop()


def test_unreadable_query_strings_get_an_answer(data_dir, shop):
    """Regression: `?event=%aé` panicked in the hand-written decoder, so the client got no
    answer; a huge funnel window overflowed to a 500; `by=a-b` broke the generated SQL."""
    server = Server(data_dir).start()
    try:
        token = shop["admin_token"]
        base = server.url + "/api/v1/projects/shop/insights"
        status, body = call(base + "/trend?event=%a%C3%A9", token)
        assert status == 200, body
        status, body = call(base + "/funnel?steps=a,b&window=99999999999999999999d", token)
        assert (status, body["code"]) == (400, "bad_query"), body
        status, body = call(base + "/funnel?steps=a,b&window=18446744073709551615d", token)
        assert (status, body["code"]) == (400, "bad_query"), body
        status, body = call(base + "/trend?by=a-b", token)
        assert status == 200, body
        # A raw UTF-8 byte after a `%` in the request line, as a hostile client sends it.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"GET /api/v1/projects/shop/insights/trend?event=%a\xc3\xa9 HTTP/1.1\r\nHost: x\r\n"
                      b"Authorization: Bearer " + token.encode() + b"\r\nConnection: close\r\n\r\n")
            reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 "), reply
        assert server.proc.poll() is None
    finally:
        server.stop()


def held_sockets(port, n, partial=b"POST /v1/batch HTTP/1.1\r\nHost: x\r\n"):
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(partial)
        out.append(s)
    return out


def closed_by_peer(s, wait):
    s.settimeout(wait)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_slowloris_sockets_are_closed_and_others_are_served(data_dir, shop):
    """Regression: partial-header sockets stayed open for good; 140 of them starved `/healthz`
    at 128 descriptors; SIGTERM waited for them."""
    server = Server(data_dir)
    env = {"OPENTALLY_HEADER_TIMEOUT_SECS": "8", "OPENTALLY_SHUTDOWN_GRACE_SECS": "2"}

    def low_fd_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    log = open(os.path.join(data_dir, "serve-slowloris.log"), "w")
    server.proc = subprocess.Popen(
        [BIN, "serve", "--data", str(data_dir), "--listen", f"127.0.0.1:{server.port}"],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=low_fd_limit, env={**os.environ, **env})
    deadline = time.monotonic() + 20
    while True:
        try:
            if healthy(server):
                break
        except OSError:
            assert time.monotonic() < deadline, "not ready"
            time.sleep(0.05)
    sockets = []
    try:
        # A socket that never finishes its headers is closed after the header timeout.
        sockets = held_sockets(server.port, 5)
        started = time.monotonic()
        assert all(closed_by_peer(s, 15) for s in sockets), "a partial-header socket stayed open"
        print(f"slowloris: 5 partial-header sockets closed after {time.monotonic() - started:.1f} s")
        for s in sockets:
            s.close()
        # More held sockets than the descriptor limit leaves room for (256 - 128 reserved):
        # a new client is served at once, well within the header timeout, the oldest idle
        # socket making room for it.
        sockets = held_sockets(server.port, 300)
        for _ in range(20):
            started = time.monotonic()
            with urllib.request.urlopen(server.url + "/healthz", timeout=4) as r:
                assert r.status == 200
        print(f"slowloris: /healthz beside 300 held sockets, last in {(time.monotonic() - started) * 1000:.0f} ms")
        # A held socket does not hold up a shutdown past its grace.
        stopping = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=15)
        took = time.monotonic() - stopping
        print(f"slowloris: SIGTERM with held sockets took {took:.1f} s")
        # Idle sockets are closed at once: the stop does not wait out the 2 s grace for them.
        assert took < 2.0, took
        assert server.proc.returncode == 0, server.proc.returncode
    finally:
        for s in sockets:
            s.close()
        server.stop()


def test_slow_bodies_and_busy_slots_do_not_lock_out_clients(data_dir, shop):
    """Regression: bodies trickled in before any key was checked held their connections as
    busy, so 40 of them locked out every client at a cap of 20; and with 19 of 20 slots busy
    the accept loop closed each new client to make room for the next."""
    server = Server(data_dir)
    env = {"OPENTALLY_MAX_CONNECTIONS": "20", "OPENTALLY_REQUEST_TIMEOUT_SECS": "60"}
    os.environ.update(env)
    try:
        server.start()
    finally:
        for k in env:
            del os.environ[k]
    key = shop["write_key"]
    sockets = []
    try:
        # No key in a header: the body must be read to find one.
        sockets = held_sockets(server.port, 40, b"POST /v1/batch HTTP/1.1\r\nHost: x\r\n"
                                                b"Content-Type: application/json\r\nContent-Length: 400000\r\n\r\n{")
        for _ in range(5):
            with urllib.request.urlopen(server.url + "/healthz", timeout=5) as r:
                assert r.status == 200
        for s in sockets:
            s.close()
        # A valid key, then a body that never comes: these clients keep their slots.
        sockets = held_sockets(server.port, 19, b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nX-Write-Key: "
                               + key.encode() + b"\r\nContent-Type: application/json\r\n"
                               b"Content-Length: 400000\r\n\r\n{")
        time.sleep(1.5)
        for _ in range(20):
            with urllib.request.urlopen(server.url + "/healthz", timeout=5) as r:
                assert r.status == 200
        # And the SQL route reads no body before its token is checked.
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"POST /api/v1/projects/shop/sql HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n")
            s.settimeout(5)
            reply = s.recv(4096)
        assert reply.startswith(b"HTTP/1.1 401"), reply
        assert server.proc.poll() is None
    finally:
        for s in sockets:
            s.close()
        server.stop()


def test_a_bad_key_is_refused_before_the_body_is_read(server):
    """The key in a header is checked before a byte of the body is read: a client that
    announces 400 kB and sends none is answered 401 at once."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nX-Write-Key: otw_wrong\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 400000\r\n\r\n")
        s.settimeout(5)
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 401"), reply


def test_the_data_dir_is_readable_by_its_owner_alone(tmp_path):
    """Regression: the data dir, the project database with the install-hash secret, the log
    and the parts were world-readable."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    key = json.loads(opentally("project", "create", "p", "--json", data=data))["write_key"]
    server = Server(data).start()
    try:
        body = json.dumps({"batch": [{"type": "track", "event": "e", "anonymousId": "a", "messageId": "m1"}]})
        req = urllib.request.Request(server.url + "/v1/batch", data=body.encode(),
                                     headers={"Content-Type": "application/json", "X-Write-Key": key})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200
    finally:
        server.stop()
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    open_to_others = []
    for root, dirs, files in os.walk(data):
        for name in dirs + files:
            path = os.path.join(root, name)
            if name.startswith("serve-"):
                continue  # the test's own log of the server's output
            if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                open_to_others.append((path, oct(os.stat(path).st_mode)))
    assert not open_to_others, open_to_others
    files = [n for _, _, fs in os.walk(data) for n in fs]
    assert "meta.sqlite3" in files and any(n.endswith(".parquet") for n in files), files

"""The insights API and the query commands on a running server: events are queryable within a
second of their ack, the admin token guards every route, bad queries get JSON errors."""

import json
import re
import subprocess
import time
import urllib.request
import uuid

import pytest

from conftest import BIN, Server, call, opentally


@pytest.fixture
def admin(data_dir):
    out = json.loads(opentally("project", "create", "shop", "--json", data=data_dir))
    other = json.loads(opentally("project", "create", "other", "--json", data=data_dir))
    return out, other


def send(server, key, events):
    body = json.dumps({"batch": events}).encode()
    req = urllib.request.Request(server.url + "/v1/batch", data=body,
                                 headers={"Content-Type": "application/json", "X-Write-Key": key})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200


def track(event, install, version, outcome="ok", error=None, ms=10.0):
    props = {"duration_ms": ms, "outcome": outcome}
    if error:
        props["error_type"] = error
    return {"type": "track", "event": event, "anonymousId": install, "messageId": str(uuid.uuid4()),
            "properties": props, "context": {"app": {"name": "shop", "version": version},
                                             "session": f"s-{install}"}}


def test_events_are_queryable_within_a_second_and_only_by_their_project(data_dir, admin):
    shop, other = admin
    server = Server(data_dir).start()
    try:
        base = server.url + "/api/v1/projects/shop"
        latencies = []
        for i in range(5):
            send(server, shop["write_key"], [track("checkout", f"i{i}", "1.0")])
            acked = time.monotonic()
            while True:
                status, body = call(base + "/insights/trend?event=checkout", shop["admin_token"])
                assert status == 200, body
                rows = body["tables"]["trend"]["rows"]
                if rows and rows[-1][1] == i + 1:
                    break
                assert time.monotonic() - acked < 5, "not visible after 5 s"
                time.sleep(0.02)
            latencies.append(time.monotonic() - acked)
        print(f"ack to queryable: {', '.join(f'{s * 1000:.0f} ms' for s in latencies)}")
        assert max(latencies) < 1.0, latencies

        send(server, shop["write_key"], [
            track("checkout", "i0", "1.1", "error", "CardDeclined", 30.0),
            track("checkout", "i1", "1.1", "error", "CardDeclined", 50.0),
        ])
        time.sleep(0.6)
        status, body = call(base + "/insights/errors?by=app.version", shop["admin_token"])
        assert status == 200, body
        assert body["tables"]["error_rate"]["columns"] == ["event", "app_version", "calls", "errors", "error_rate"]
        assert body["tables"]["error_rate"]["rows"] == [["checkout", "1.1", 2, 2, 1.0], ["checkout", "1.0", 5, 0, 0.0]]
        assert body["tables"]["top_errors"]["rows"] == [["checkout", "CardDeclined", 2, 2]]
        assert body["distinct"] == "exact" and body["query_ms"] > 0

        status, body = call(base + "/sql", shop["admin_token"],
                            json.dumps({"sql": "SELECT count(*) AS n FROM events"}).encode(), "application/json")
        assert (status, body["rows"]) == (200, [[7]])
        # The other project's token sees its own, empty, events table and nothing of shop's.
        status, body = call(server.url + "/api/v1/projects/other/sql", other["admin_token"],
                            b"SELECT count(*) AS n FROM events")
        assert (status, body["rows"]) == (200, [[0]])

        for url, token, data, code, status_expected in [
            (base + "/insights/trend", None, None, "missing_admin_token", 401),
            (base + "/insights/trend", other["admin_token"], None, "invalid_admin_token", 403),
            (base + "/insights/trend", shop["write_key"], None, "invalid_admin_token", 403),
            (base + "/insights/nope", shop["admin_token"], None, "bad_query", 400),
            (base + "/insights/trend?by=a%27b", shop["admin_token"], None, "bad_query", 400),
            (base + "/sql", shop["admin_token"], b"DELETE FROM events", "bad_query", 400),
            (base + "/sql", shop["admin_token"], b"SELECT * FROM nowhere", "bad_query", 400),
            (base + "/sql", None, b"SELECT 1", "missing_admin_token", 401),
        ]:
            status, body = call(url, token, data)
            assert (status, body["code"]) == (status_expected, code), (url, data, body)
            assert body["ok"] is False and body["message"]
    finally:
        server.stop()

    # The commands read the same store, after the server stopped and sealed it.
    out = json.loads(opentally("query", "errors", "--project", "shop", "--by", "app.version", "--json",
                               data=data_dir))
    assert out["tables"]["error_rate"]["rows"][0] == ["checkout", "1.1", 2, 2, 1.0]
    csv = opentally("query", "trend", "--project", "shop", "--interval", "month", "--csv", data=data_dir)
    month = time.strftime("%Y-%m-01", time.gmtime())
    assert csv.splitlines() == ["period,events,installs", f"{month},7,5"]
    text = opentally("sql", "--project", "shop", "SELECT event, count(*) AS n FROM events GROUP BY event",
                     data=data_dir)
    assert text.splitlines()[0].split() == ["event", "n"]
    assert text.splitlines()[2].split() == ["checkout", "7"]
    bad = subprocess.run(
        [BIN, "sql", "--project", "nobody", "SELECT 1", "--data", str(data_dir)],
        capture_output=True, text=True)
    assert bad.returncode == 2 and "no project named `nobody`" in bad.stderr


def test_the_readme_first_command_starts_a_living_demo_project(tmp_path):
    """`opentally serve --demo` (smaller history here): the banner's admin token and curl lines
    work at once, and the generated history answers insights."""
    data = tmp_path / "data"
    data.mkdir()
    server = Server(data, "--demo", "--demo-events", "5000").start()
    try:
        banner = ""
        for log in data.glob("serve-*.log"):
            banner = log.read_text()
        key = re.search(r"write key:\s+(otw_\w+)", banner).group(1)
        token = re.search(r"admin token:\s+(ota_\w+)", banner).group(1)
        status, body = call(server.url + "/api/v1/projects/demo/insights/versions?interval=month", token)
        assert status == 200, body
        versions = {row[1] for row in body["tables"]["versions"]["rows"]}
        assert versions == {"1.0.0", "1.1.0", "1.2.0", "2.0.0"}, versions
        status, body = call(server.url + "/api/v1/projects/demo/insights/errors?by=app.version", token)
        worst = body["tables"]["error_rate"]["rows"][0]
        assert worst[:2] == ["estimate", "1.2.0"], "errors cluster in 1.2.0"
        send(server, key, [track("fit", "demo-install", "2.0.0")])
    finally:
        server.stop()
    # A restart keeps the history and shows fresh secrets.
    again = Server(data, "--demo", "--demo-events", "5000").start()
    again.stop()
    out = json.loads(opentally("sql", "--project", "demo", "--json",
                               "SELECT count(*) FILTER (WHERE install IS NOT NULL) AS n FROM events", data=data))
    assert 4000 < out["rows"][0][0] < 6500, out

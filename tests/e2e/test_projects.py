"""Operators' project commands on the real binary: revoking an admin token, deleting a project
with its data, with and without a collector running on the data dir."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid

from conftest import BIN, Server, call, dump, opentally


def send(server, key, n, event="e", ids=None):
    ids = ids or [str(uuid.uuid4()) for _ in range(n)]
    batch = [{"type": "track", "event": event, "anonymousId": f"i{i % 3}", "messageId": ids[i]}
             for i in range(n)]
    req = urllib.request.Request(server.url + "/v1/batch", data=json.dumps({"batch": batch}).encode(),
                                 headers={"Content-Type": "application/json", "X-Write-Key": key})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def wait_for(check, what, seconds=15):
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def create(data, name):
    return json.loads(opentally("project", "create", name, "--json", data=data))


def test_a_rotated_admin_token_stops_working(data_dir):
    shop = create(data_dir, "shop")
    server = Server(data_dir).start()
    try:
        url = server.url + "/api/v1/projects/shop/insights/trend"
        assert call(url, shop["admin_token"])[0] == 200
        new = json.loads(opentally("project", "rotate-token", "shop", "--json", data=data_dir))["admin_token"]
        assert new != shop["admin_token"]
        wait_for(lambda: call(url, shop["admin_token"])[0] == 403, "the old token still works")
        assert call(url, new)[0] == 200
        # A second collector on the same data dir refuses to start.
        second = subprocess.run([BIN, "serve", "--data", str(data_dir), "--listen", "127.0.0.1:0"],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 2 and "another `opentally serve` runs" in second.stderr, second.stderr
    finally:
        server.stop()
    text = opentally("project", "rotate-token", "shop", data=data_dir)
    assert text.startswith("new admin token for shop: ota_"), text
    bad = subprocess.run([BIN, "project", "rotate-token", "nobody", "--data", str(data_dir)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "no project named" in bad.stderr


def test_deleting_a_project_without_a_collector_removes_its_events_at_once(data_dir):
    # shop is the newest project: its id is the one a careless successor would get again.
    other = create(data_dir, "other")
    shop = create(data_dir, "shop")
    server = Server(data_dir).start()
    ids = [f"shop-{i}" for i in range(30)]
    try:
        assert send(server, shop["write_key"], 30, ids=ids) == 200
        assert send(server, other["write_key"], 7) == 200
    finally:
        server.stop()
    assert len(dump(data_dir, "shop")) == 30
    # Without a terminal, only --yes confirms.
    refused = subprocess.run([BIN, "project", "delete", "shop", "--data", str(data_dir)],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "--yes" in refused.stderr, refused.stderr
    assert len(dump(data_dir, "shop")) == 30, "nothing deleted unconfirmed"
    out = opentally("project", "delete", "shop", "--yes", data=data_dir)
    assert out.strip() == "deleted project shop and its 30 stored events", out
    assert dump(data_dir, "shop") == []
    assert len(dump(data_dir, "other")) == 7, "the other project keeps its events"
    names = [p["name"] for p in json.loads(opentally("project", "list", "--json", data=data_dir))]
    assert names == ["other"]
    # The name is free again, and the new project starts empty, across a restart.
    again = create(data_dir, "shop")
    server = Server(data_dir).start()
    try:
        assert send(server, shop["write_key"], 1) == 401, "the old write key is gone"
        # The old project's message ids are no duplicates of the new one's: ids are not reused.
        assert send(server, again["write_key"], 2, ids=ids[:2]) == 200
    finally:
        server.stop()
    assert len(dump(data_dir, "shop")) == 2
    parts = [f for f in os.listdir(data_dir / "store" / "parts" / "shop")]
    assert len(parts) >= 1


def test_deleting_a_project_under_a_running_collector_leaves_no_record_and_survives_a_crash(data_dir):
    shop, other = create(data_dir, "shop"), create(data_dir, "other")
    env = {"OPENTALLY_REQUEST_TIMEOUT_SECS": "1"}
    os.environ.update(env)
    try:
        server = Server(data_dir).start()
    finally:
        for k in env:
            del os.environ[k]
    try:
        assert send(server, shop["write_key"], 20, ids=[f"shop-gone-{i}" for i in range(20)]) == 200
        assert send(server, other["write_key"], 5) == 200
        out = opentally("project", "delete", "shop", "--yes", data=data_dir)
        assert out.startswith("deleted project shop: its keys no longer work"), out
        wait_for(lambda: send(server, shop["write_key"], 1) == 401, "the write key still works")
        # Until the collector has removed the events, the name cannot be taken again.
        pending = subprocess.run([BIN, "project", "create", "shop", "--data", str(data_dir)],
                                 capture_output=True, text=True)
        if pending.returncode == 0:
            raise AssertionError("a project of a deleted name was created before its data was removed")
        wait_for(lambda: subprocess.run([BIN, "project", "create", "shop", "--json", "--data", str(data_dir)],
                                        capture_output=True).returncode == 0,
                 "the deletion did not finish", seconds=30)
        # The log segment that held the old project's records is closed and, once sealed,
        # removed: its message ids leave the disk within a seal (10 s), not when it fills.
        def log_holds_shop():
            return any(b"shop-gone-" in p.read_bytes() for p in (data_dir / "log").iterdir())
        wait_for(log_holds_shop, "the records were never in the log", seconds=1)
        wait_for(lambda: not log_holds_shop(), "the deleted project's records stayed in the log", seconds=40)
        assert len(dump(data_dir, "other")) == 5
        server.kill9()
    finally:
        server.stop()
    server = Server(data_dir).start()
    server.stop()
    assert dump(data_dir, "shop") == [], "the log's records of the deleted project came back"
    assert len(dump(data_dir, "other")) == 5

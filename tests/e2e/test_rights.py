"""Erasure on the real binary: durable before its answer, whatever stage the store is at when the
collector is killed."""

import json
import time
import urllib.request

import pytest

from conftest import Server, dump


def send(server, key, batch):
    req = urllib.request.Request(server.url + "/v1/batch", data=json.dumps({"batch": batch}).encode())
    req.add_header("Content-Type", "application/json")
    req.add_header("X-Write-Key", key)
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200


def erase(server, key, install):
    req = urllib.request.Request(server.url + "/v1/privacy/erase",
                                 data=json.dumps({"installId": install}).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("X-Write-Key", key)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


IDS = {"erased": "00000000-0000-4000-8000-0000000000e1", "kept": "00000000-0000-4000-8000-0000000000e2"}


def track(i, install):
    return {"type": "track", "event": "fit", "messageId": f"{install}-{i}", "anonymousId": IDS[install]}


@pytest.mark.parametrize("sealed", [False, True], ids=["in-the-log", "in-parts"])
def test_an_erasure_answered_200_survives_kill9(data_dir, project, monkeypatch, sealed):
    """Events of two installs; one is erased and the collector killed -9 at once. After the restart
    none of its events is stored, the other install's all are, and the log holds none of them."""
    monkeypatch.setenv("OPENTALLY_STORE_SEAL_SECS", "1" if sealed else "3600")
    server = Server(data_dir).start()
    try:
        send(server, project, [track(i, "erased") for i in range(50)] + [track(i, "kept") for i in range(20)])
        deadline = time.monotonic() + 10
        while len(dump(data_dir)) < 70 and time.monotonic() < deadline:
            time.sleep(0.1)
        if sealed:
            manifest = data_dir / "store" / "MANIFEST.json"
            while time.monotonic() < deadline and not (manifest.exists() and json.loads(manifest.read_text())["parts"]):
                time.sleep(0.1)
            assert json.loads(manifest.read_text())["parts"], "the events were sealed into parts"
        assert erase(server, project, IDS["erased"]) == 200
        server.kill9()
        server.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(e["messageId"].startswith("erased-") for e in dump(data_dir)):
            time.sleep(0.1)
        ids = sorted(e["messageId"] for e in dump(data_dir))
        assert ids == sorted(f"kept-{i}" for i in range(20))

        def log_holds(text):
            return any(text.encode() in f.read_bytes() for f in (data_dir / "log").iterdir())

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and log_holds("erased-0"):
            time.sleep(0.1)
        assert not log_holds("erased-0"), "the log segments holding the erased events are deleted"
    finally:
        server.stop()


def test_each_client_has_its_own_privacy_allowance(data_dir, project, monkeypatch):
    """One client over its allowance is told when to come back; another (a second loopback
    address) is not held back by it."""
    import http.client

    monkeypatch.setenv("OPENTALLY_PRIVACY_REQUESTS_PER_MINUTE", "2")
    s = Server(data_dir).start()
    try:
        def export_from(source):
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30, source_address=(source, 0))
            try:
                conn.request("GET", "/v1/privacy/export",
                             headers={"X-Write-Key": project, "OpenTally-Install-Id": IDS["kept"]})
                r = conn.getresponse()
                r.read()
                return r.status, r.getheader("Retry-After")
            finally:
                conn.close()

        assert [export_from("127.0.0.1")[0] for _ in range(2)] == [200, 200]
        status, retry = export_from("127.0.0.1")
        assert status == 429 and 1 <= int(retry) <= 30, (status, retry)
        assert export_from("127.0.0.2")[0] == 200
    finally:
        s.stop()

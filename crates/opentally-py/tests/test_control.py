"""The maintainer's remote controls end to end: `opentally project set-collection` on a real
collector, obeyed by real SDK processes."""

import hashlib
import json
import re
import subprocess
import urllib.request

import pytest

from conftest import BIN, Collector, child_env, run_python

SEND = """
import json, opentally
opentally.init("ctlapp", version={version!r}, write_key={key!r}, endpoint={url!r}, notice=False)
for round in range(2):
    for i in range(3):
        opentally.track("fit", n=i)
    opentally.flush(3.0)
s = opentally.status()
print(json.dumps({{"id": s.install_id, "counters": s.counters, "control": s.control,
                  "spool_files": s.data["spool_files"]}}))
"""


def send(home, c, version, url=None):
    p = run_python(home, SEND.format(version=version, key=c.key, url=url or c.url))
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def batch_requests(c):
    """`POST /v1/batch` requests the collector answered 200, from its own metrics."""
    with urllib.request.urlopen(c.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(r'opentally_http_requests_total\{route="batch",status="200"\} (\d+)', text)
    return int(m.group(1)) if m else 0


def set_collection(c, *args):
    p = subprocess.run([BIN, "project", "set-collection", "py", *args, "--data", str(c.data)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout


def home_dir(tmp_path, name):
    h = tmp_path / name
    for d in ("state", "config", "work"):
        (h / d).mkdir(parents=True)
    return h


@pytest.fixture
def fresh(tmp_path):
    c = Collector(tmp_path / "data")
    yield c
    c.stop()


def test_a_kill_switch_stops_an_sdk_after_its_next_batch_and_binds_the_next_process(tmp_path, fresh):
    c = fresh
    out = set_collection(c, "--version", "<2", "--off")
    assert "<2" in out and "off" in out
    old = home_dir(tmp_path, "old")
    # Offline first: the batch waits in the spool.
    offline = send(old, c, "1.0", url="http://127.0.0.1:9")
    assert offline["spool_files"] >= 1

    # The collector notices the rule within a second; the first batch after it learns the stop.
    first = send(old, c, "1.0")
    assert first["control"]["collect"] is False and first["control"]["appVersion"] == "1.0"
    assert first["counters"]["sent"] == 3, first  # the batch that asked, refused by the collector
    assert first["counters"]["withheld"] >= 1, first  # what the spool held
    assert first["spool_files"] == 0
    requests = batch_requests(c)
    assert requests == 1

    # The next process of that version sends nothing at all, and `status` shows why.
    second = send(old, c, "1.0")
    assert second["counters"]["sent"] == 0 and second["control"]["collect"] is False
    assert batch_requests(c) == requests
    status = subprocess.run([BIN, "status", "--app", "ctlapp"], env=child_env(old), capture_output=True,
                            text=True, timeout=30).stdout
    assert "control:     collection stopped for version 1.0" in status

    # A version outside the range is collected; nothing of the stopped one was stored.
    send(home_dir(tmp_path, "new"), c, "2.0")
    events = c.events(wait_for=6)
    assert len(events) == 6 and {e["context"]["app"]["version"] for e in events} == {"2.0"}


def sample_point(install_id):
    """The definition every SDK and the collector share (opentally_protocol::control)."""
    d = hashlib.sha256(b"opentally-sample:" + install_id.encode()).digest()
    return (int.from_bytes(d[:8], "big") >> 11) / 2**53


def test_a_sample_keeps_the_installs_it_names(tmp_path, fresh):
    c = fresh
    set_collection(c, "--sample", "0.5")
    runs = [send(home_dir(tmp_path, "h%d" % i), c, "1.0") for i in range(16)]
    kept = [r for r in runs if sample_point(r["id"]) < 0.5]
    for r in runs:
        assert r["control"] == {"appVersion": "1.0", "collect": True, "sample": 0.5,
                                "receivedAt": r["control"]["receivedAt"]}
        # Sampled out: the first batch asks (and is dropped by the collector), the rest is not sent.
        assert r["counters"]["sent"] == (6 if r in kept else 3), r
    assert 0 < len(kept) < len(runs), "16 installs on one side of a 50 %% sample"
    assert len(c.events(wait_for=6 * len(kept))) == 6 * len(kept)

"""A user's rights end to end: a real collector, real SDK processes, and `opentally forget` and
`export` from the Rust binary and the Python console script."""

import datetime
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from conftest import BIN, Collector, child_env, run_python

SEND = """
import opentally
opentally.init("rightsapp", version="1.0", write_key={key!r}, endpoint={url!r}, notice=False)
for i in range({n}):
    opentally.track("fit", n=i)
assert opentally.flush(10.0)
print(opentally.status().install_id)
"""


def privacy(c, path, install, method="GET"):
    """An erase or export request as any client could make it; returns (status, body)."""
    if method == "POST":
        req = urllib.request.Request(c.url + path, data=json.dumps({"installId": install}).encode(), method="POST")
        req.add_header("Content-Type", "application/json")
    else:
        req = urllib.request.Request(c.url + path)
        req.add_header("OpenTally-Install-Id", install)
    req.add_header("X-Write-Key", c.key)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def event_total(c):
    """Events in the project by the trend insight, the figure a maintainer reads."""
    since = (datetime.date.today() - datetime.timedelta(days=1)).isoformat()
    req = urllib.request.Request(c.url + "/api/v1/projects/py/insights/trend?since=" + since)
    req.add_header("Authorization", "Bearer " + c.token)
    with urllib.request.urlopen(req, timeout=30) as r:
        return sum(row[1] for row in json.loads(r.read())["tables"]["trend"]["rows"])


def until(done, timeout=10.0):
    """Waits (bounded) for `done()`; the caller asserts afterwards."""
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)


def home_dir(tmp_path, name):
    h = tmp_path / name
    for d in ("state", "config", "work"):
        (h / d).mkdir(parents=True)
    return h


def cli(home, *args, python=False):
    cmd = [sys.executable, "-m", "opentally._cli", *args] if python else [BIN, *args]
    return subprocess.run(cmd, env=child_env(home), capture_output=True, text=True, timeout=60)


@pytest.fixture
def fresh(tmp_path):
    c = Collector(tmp_path / "data")
    yield c
    c.stop()


@pytest.mark.parametrize("python", [False, True], ids=["rust-binary", "python-console-script"])
def test_forget_erases_every_event_of_the_install_and_replaces_its_id(tmp_path, fresh, python):
    c = fresh
    mine, theirs = home_dir(tmp_path, "mine"), home_dir(tmp_path, "theirs")
    p = run_python(mine, SEND.format(key=c.key, url=c.url, n=7))
    assert p.returncode == 0, p.stderr
    old = p.stdout.strip()
    p = run_python(theirs, SEND.format(key=c.key, url=c.url, n=4))
    assert p.returncode == 0, p.stderr
    assert len(c.events(wait_for=11)) == 11
    until(lambda: event_total(c) == 11)
    assert event_total(c) == 11

    status = json.loads(cli(mine, "status", "--app", "rightsapp", "--json").stdout)
    assert status["install_id"] == old
    assert status["collector"] == c.url, "the SDK recorded the collector it delivered to"
    saved = mine / "state" / "opentally" / "rightsapp" / "collector.json"
    assert saved.stat().st_mode & 0o777 == 0o600, "where the id is sent is the user's alone"
    exported = json.loads(cli(mine, "export", "--app", "rightsapp", python=python).stdout)
    assert len(exported["events"]) == 7
    assert {e["properties"]["n"] for e in exported["events"]} == set(range(7))

    out = cli(mine, "forget", "--app", "rightsapp", python=python)
    assert out.returncode == 0, out.stderr
    assert old in out.stdout

    # Exactly that install's events are gone: from the store, the insights and the export. The
    # collector's loader applies the erasure within a round.
    until(lambda: event_total(c) == 4)
    assert event_total(c) == 4
    assert sorted(e["properties"]["n"] for e in c.events()) == [0, 1, 2, 3]
    assert privacy(c, "/v1/privacy/export", old) == (200, {"ok": True, "events": []})
    # The new id is unrelated to the old one, and starts with nothing.
    new = json.loads(cli(mine, "status", "--app", "rightsapp", "--json").stdout)["install_id"]
    assert new and new != old
    assert privacy(c, "/v1/privacy/export", new)[1]["events"] == []
    # An unknown id gets the answer a known one got.
    assert privacy(c, "/v1/privacy/erase", old, "POST") == privacy(c, "/v1/privacy/erase", "00000000-0000-4000-8000-0000000000ff", "POST")
    # The next process sends under the new id.
    p = run_python(mine, SEND.format(key=c.key, url=c.url, n=2))
    assert p.stdout.strip() == new
    until(lambda: event_total(c) == 6)
    assert len(privacy(c, "/v1/privacy/export", new)[1]["events"]) == 2


def test_forget_without_a_collector_or_a_reachable_one_changes_nothing(tmp_path, fresh):
    c = fresh
    mine = home_dir(tmp_path, "mine")
    out = cli(mine, "forget", "--app", "rightsapp")
    assert out.returncode != 0
    assert "no collector is recorded" in out.stderr
    p = run_python(mine, SEND.format(key=c.key, url=c.url, n=1))
    old = p.stdout.strip()
    c.stop()
    out = cli(mine, "forget", "--app", "rightsapp")
    assert out.returncode != 0
    assert "could not be reached" in out.stderr
    status = json.loads(cli(mine, "status", "--app", "rightsapp", "--json").stdout)
    assert status["install_id"] == old, "an erasure the collector did not confirm keeps the id"


def test_python_forget_and_export_in_process(tmp_path, fresh):
    c = fresh
    mine = home_dir(tmp_path, "mine")
    code = SEND.format(key=c.key, url=c.url, n=3) + """
import time
deadline = time.monotonic() + 10
while len(opentally.export()["events"]) < 3 and time.monotonic() < deadline:
    time.sleep(0.5)
print(len(opentally.export()["events"]))
print(opentally.forget())
opentally.track("after_forget")
print(opentally.status().mode)
"""
    p = run_python(mine, code)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    old = lines[0]
    assert lines[1] == "3"
    assert old in lines[2]
    assert lines[-1] == "off", "telemetry stays off for the rest of the process"
    assert privacy(c, "/v1/privacy/export", old) == (200, {"ok": True, "events": []})


def test_python_opt_out_with_forget_refuses_then_erases(tmp_path, fresh):
    c = fresh
    mine = home_dir(tmp_path, "mine")
    code = SEND.format(key=c.key, url=c.url, n=2) + """
import time
deadline = time.monotonic() + 10
while len(opentally.export()["events"]) < 2 and time.monotonic() < deadline:
    time.sleep(0.5)
print(opentally.opt_out(forget=True))
print([s["verdict"] for s in opentally.status().sources if s["source"] == "user_config"][0])
"""
    p = run_python(mine, code)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    old = lines[0]
    assert old in lines[1], lines
    assert lines[-1] == "off", "the refusal is saved in the user's config file"
    assert privacy(c, "/v1/privacy/export", old) == (200, {"ok": True, "events": []})

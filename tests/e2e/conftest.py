"""Fixtures for end-to-end tests: the real `opentally` binary on loopback, in a fresh data dir."""

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

BIN = os.environ.get("OPENTALLY_BIN", "opentally")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def opentally(*args, data, check=True):
    """Runs an `opentally` command against `data`; returns its stdout."""
    proc = subprocess.run([BIN, *args, "--data", str(data)], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"opentally {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


def call(url, token=None, data=None, content_type="text/plain", timeout=60):
    """A request to the API with an admin token; returns the status and the JSON body."""
    req = urllib.request.Request(url, data=data)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class Server:
    """`opentally serve` in a subprocess, on a free loopback port."""

    def __init__(self, data, *extra):
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra = extra
        self.proc = None

    def start(self):
        log = open(os.path.join(self.data, f"serve-{self.port}-{time.monotonic_ns()}.log"), "w")
        self.proc = subprocess.Popen(
            [BIN, "serve", "--data", str(self.data), "--listen", f"127.0.0.1:{self.port}", *self.extra],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("opentally serve did not become ready in 20 s")

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)

    def peak_rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise AssertionError("no VmHWM")


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def project(data_dir):
    """An open-mode project: any event accepted. Returns its write key."""
    out = opentally("project", "create", "e2e", "--json", data=data_dir)
    return json.loads(out)["write_key"]


@pytest.fixture
def server(data_dir, project):
    s = Server(data_dir).start()
    yield s
    s.stop()


def dump(data_dir, project="e2e"):
    out = opentally("dump", "--project", project, data=data_dir)
    return [json.loads(line) for line in out.splitlines()]

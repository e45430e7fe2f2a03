"""Fixtures for the Python package's tests: a real `opentally serve` on loopback, a raw byte
counter for "nothing was sent", and fresh processes with private home folders."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

BIN = os.environ.get("OPENTALLY_BIN", "opentally-rust-binary-not-set")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Collector:
    """`opentally serve` with one open-mode project."""

    def __init__(self, data):
        self.data = data
        out = subprocess.run([BIN, "project", "create", "py", "--json", "--data", str(data)],
                             check=True, capture_output=True, text=True).stdout
        self.key = json.loads(out)["write_key"]
        self.token = json.loads(out)["admin_token"]
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = subprocess.Popen([BIN, "serve", "--data", str(data), "--listen", "127.0.0.1:%d" % self.port],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("opentally serve did not start")

    def events(self, wait_for=0, timeout=5.0, app=None):
        """Every stored event (of `app`, if given); waits up to `timeout` for at least `wait_for`
        of them."""
        deadline = time.monotonic() + timeout
        while True:
            out = subprocess.run([BIN, "dump", "--data", str(self.data)], check=True, capture_output=True, text=True).stdout
            events = [json.loads(line) for line in out.splitlines()]
            if app is not None:
                events = [e for e in events if e["context"]["app"]["name"] == app]
            if len(events) >= wait_for or time.monotonic() > deadline:
                return events
            time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)


@pytest.fixture(scope="session")
def collector(tmp_path_factory):
    c = Collector(tmp_path_factory.mktemp("collector"))
    yield c
    c.stop()


class ByteCounter:
    """Accepts connections on loopback and counts every byte received; answers nothing."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.bytes = 0
        self.connections = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(0.5)
            try:
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    self.bytes += len(chunk)
            except OSError:
                pass
            conn.close()

    def close(self):
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def counter():
    c = ByteCounter()
    yield c
    c.close()


@pytest.fixture
def home(tmp_path):
    """Private HOME, state, config and working folders for a child process."""
    for d in ("state", "config", "work"):
        (tmp_path / d).mkdir()
    return tmp_path


def child_env(home, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENTALLY_", "DO_NOT_TRACK", "CI"))}
    env.update(HOME=str(home), XDG_STATE_HOME=str(home / "state"), XDG_CONFIG_HOME=str(home / "config"))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_python(home, code, timeout=30, **env):
    """Runs `code` in a fresh interpreter with a private home; returns the completed process."""
    return subprocess.run([sys.executable, "-c", code], env=child_env(home, **env), cwd=str(home / "work"),
                          capture_output=True, text=True, timeout=timeout)

"""Processes: fork, multiprocessing, exit against a black hole, the console script."""

import os
import socket
import subprocess
import sys
import time

from conftest import BIN, child_env, run_python


def test_a_forked_child_and_pool_workers_deliver_their_events_once(home, collector):
    code = """
import os, multiprocessing, opentally
opentally.init("forky", write_key={key!r}, endpoint={url!r}, notice=False)

@opentally.log_usage("work")
def work(x):
    return x * x

opentally.track("parent_before_fork")
work(10)
work(11)  # collected in the parent's buffer, not yet handed to Rust, when the fork happens
pid = os.fork()
if pid == 0:
    opentally.track("child")
    os._exit(0 if opentally.flush(5.0) else 3)
_, status = os.waitpid(pid, 0)
assert os.WEXITSTATUS(status) == 0
with multiprocessing.get_context("fork").Pool(2) as pool:
    assert pool.map(work, range(4)) == [0, 1, 4, 9]
    pool.close()
    pool.join()
opentally.track("parent_after")
print("done")
""".format(key=collector.key, url=collector.url)
    p = run_python(home, code)
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    events = collector.events(wait_for=9, app="forky")
    names = sorted(e["event"] for e in events)
    assert names == ["child", "parent_after", "parent_before_fork"] + ["work"] * 6, names
    assert len({e["messageId"] for e in events}) == len(events)


def test_exit_is_bounded_with_a_black_hole_collector(home):
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # accepts (the kernel does) and never answers
    url = "http://127.0.0.1:%d" % hole.getsockname()[1]
    code = """
import sys, opentally
opentally.init("hole", endpoint={url!r}, notice=False)
for i in range(50):
    opentally.track("e", i=i)
print("main done", flush=True)
""".format(url=url)
    proc = subprocess.Popen([sys.executable, "-c", code], env=child_env(home), cwd=str(home / "work"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "main done\n"
    t0 = time.monotonic()
    proc.wait(timeout=30)
    waited = time.monotonic() - t0
    hole.close()
    assert proc.returncode == 0
    assert proc.stderr.read() == ""
    assert waited <= 1.1, "the interpreter took %.2f s to exit" % waited


def test_the_console_script_prints_what_the_rust_binary_prints(home):
    script = os.path.join(os.path.dirname(sys.executable), "opentally")
    env = child_env(home, DO_NOT_TRACK="1")
    for args in (["status", "--app", "nml"], ["opt-out", "--app", "nml"], ["status", "--app", "nml"]):
        py = subprocess.run([script, *args], env=env, capture_output=True, text=True)
        rs = subprocess.run([BIN, *args], env=env, capture_output=True, text=True)
        assert (py.returncode, py.stdout) == (rs.returncode, rs.stdout), args
    assert "decided by DO_NOT_TRACK" in py.stdout


def test_import_is_cheap_and_starts_nothing(home):
    p = run_python(home, "import threading, opentally; print(threading.active_count(), opentally.status())")
    assert p.stdout == "1 None\n", p.stdout


def test_notebook_and_python_environment_are_detected(home, collector):
    code = """
import sys, types, opentally
sys.modules["ipykernel"] = types.ModuleType("ipykernel")  # as inside a Jupyter kernel
opentally.init("nb", write_key={key!r}, endpoint={url!r}, notice=False)
opentally.track("cell_run")
""".format(key=collector.key, url=collector.url)
    p = run_python(home, code)
    assert (p.returncode, p.stderr) == (0, "")
    (event,) = collector.events(wait_for=1, app="nb")
    assert event["context"]["environment"]["notebook"] == "jupyter"
    runtime = event["context"]["runtime"]
    assert (runtime["name"], runtime["implementation"]) == ("python", sys.implementation.name)
    assert runtime["virtualenv"] is (sys.prefix != sys.base_prefix)

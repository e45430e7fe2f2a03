"""The consent table every OpenTally SDK runs (tests/consent-cases.json), each row in a fresh
interpreter: its mode and deciding source; when off, not one byte sent and no state file; when
local, no connection; when on, bytes leave.

The system policy file sits at a fixed path (/etc/opentally/policy.toml on Linux) that a test must
not write, so the rows that need one run in the Rust and Node suites only; they are listed as
skipped here, by name.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import child_env

TABLE = json.loads(open(os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "consent-cases.json")).read())

SCRIPT = """
import json, opentally
opentally.init({app!r}, write_key="otw_x", endpoint={url!r}, default={default!r}, notice=False,
               disable_env={disable_env!r}, enable_env={enable_env!r}, off_in_ci={off_in_ci!r})
{before}
for _ in range(5):
    opentally.track("fit", method="cbpe")
opentally.flush(0.5)
s = opentally.status()
print(json.dumps({{"mode": s.mode, "decided_by": s.decided_by}}))
"""

CALLS = {None: "", "disable": "opentally.disable()", "enable": "opentally.enable()",
         "opt_out": "opentally.opt_out()", "opt_in": "opentally.opt_in()"}


def test_the_table_is_whole():
    assert len(TABLE["cases"]) >= 30
    assert len({c["name"] for c in TABLE["cases"]}) == len(TABLE["cases"])


@pytest.mark.parametrize("case", TABLE["cases"], ids=[c["name"] for c in TABLE["cases"]])
def test_a_row_of_the_shared_consent_table(home, counter, case):
    if "policy" in case["files"]:
        pytest.skip("needs the system policy file (/etc/opentally/policy.toml): run by the Rust and Node suites")
    cwd = home / "work" / "sub" / "dir"
    cwd.mkdir(parents=True)
    for kind, text in case["files"].items():
        path = {"user_config": home / "config" / "opentally" / "config.toml",
                "dotenv": cwd / ".env",
                "parent_dotenv": home / "work" / ".env"}[kind]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    config = case["config"]
    # The code's say at init is, in Python, a call right after `init`.
    before = {True: "opentally.enable()", False: "opentally.disable()", None: ""}[config.get("enabled")]
    before += "\n" + CALLS[case["after_init"]]
    code = SCRIPT.format(
        app=TABLE["app"], url=counter.url, before=before,
        default="off" if config.get("default") == "opt-in" else "on",
        disable_env=config.get("disable_env", []), enable_env=config.get("enable_env", []),
        off_in_ci=bool(config.get("off_in_ci")))
    env = child_env(home)
    env.update(case["env"])
    p = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(cwd), capture_output=True, text=True,
                       timeout=30)
    assert (p.returncode, p.stderr) == (0, ""), p
    got = json.loads(p.stdout)
    assert got == case["expect"]
    if got["mode"] == "off":
        assert (counter.bytes, counter.connections) == (0, 0)
        assert list((home / "state").iterdir()) == []
    elif got["mode"] == "local":
        assert counter.connections == 0
    else:
        # The counter reads on its own thread: give it a moment to see what the child sent.
        deadline = time.monotonic() + 5
        while counter.bytes == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counter.bytes > 0

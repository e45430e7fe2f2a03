"""Every way a user may refuse sends zero bytes and writes no state, in a real process."""

import pytest

from conftest import run_python

SCRIPT = """
import opentally
opentally.init("nml", write_key="otw_x", endpoint={url!r}, disable_env="NML_DISABLE_USAGE_LOGGING",
               enable_env="NML_TELEMETRY_ENABLED", default={default!r}, notice=False)
{before}
@opentally.log_usage("fit")
def fit():
    return 1
with opentally.span("export"):
    fit()
opentally.track("cli_run", command="run")
print("done")
"""

CASES = [
    ("DO_NOT_TRACK", {"DO_NOT_TRACK": "1"}, "", "on", None),
    ("OPENTALLY_TELEMETRY=off", {"OPENTALLY_TELEMETRY": "off"}, "", "on", None),
    ("app variable, presence (NannyML style)", {"NML_DISABLE_USAGE_LOGGING": "1"}, "", "on", None),
    ("app variable, value (Flower style)", {"NML_TELEMETRY_ENABLED": "0"}, "", "on", None),
    (".env file", {}, "", "on", "DO_NOT_TRACK=1\n"),
    (".env file with the app's variable", {}, "", "on", "NML_DISABLE_USAGE_LOGGING=true\n"),
    ("opentally.disable() in code", {}, "opentally.disable()", "on", None),
    ("opentally.opt_out() in code", {}, "opentally.opt_out()", "on", None),
    ("author's default off (opt-in)", {}, "", "off", None),
    ("suppressed scope around everything", {}, "opentally.suppressed().__enter__()", "on", None),
]


@pytest.mark.parametrize("name,env,before,default,dotenv", CASES, ids=[c[0] for c in CASES])
def test_a_refusal_sends_zero_bytes_and_writes_no_state(home, counter, name, env, before, default, dotenv):
    if dotenv:
        (home / "work" / ".env").write_text(dotenv)
    p = run_python(home, SCRIPT.format(url=counter.url, before=before, default=default), **env)
    assert (p.returncode, p.stdout, p.stderr) == (0, "done\n", "")
    assert counter.bytes == 0 and counter.connections == 0
    assert list((home / "state").iterdir()) == []


def test_user_config_written_by_the_console_script_is_honoured(home, counter):
    import os
    import subprocess
    import sys

    script = os.path.join(os.path.dirname(sys.executable), "opentally")
    from conftest import child_env

    out = subprocess.run([script, "opt-out", "--app", "nml"], env=child_env(home), capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("telemetry refused for nml"), out
    p = run_python(home, SCRIPT.format(url=counter.url, before="", default="on"))
    assert (p.returncode, p.stderr) == (0, "")
    assert counter.bytes == 0


def test_without_a_refusal_bytes_do_leave(home, counter):
    """The control: the same script with nothing refusing does send."""
    p = run_python(home, SCRIPT.format(url=counter.url, before="", default="on"), OPENTALLY_TELEMETRY="on")
    assert p.returncode == 0
    assert counter.bytes > 0

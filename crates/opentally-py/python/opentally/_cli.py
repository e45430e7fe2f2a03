"""The `opentally` console script for end users: status, opt-out, opt-in, forget, export. The text
comes from the same Rust code as the `opentally` binary."""

import argparse
import sys

from . import _opentally as _ext


def main(argv=None):
    parser = argparse.ArgumentParser(prog="opentally", description="Privacy-first usage telemetry: see and set your choices.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in [
        ("status", "Show whether telemetry is on for an app, which source decided, and your install id."),
        ("opt-out", "Refuse telemetry for one app (--app) or for every app using OpenTally."),
        ("opt-in", "Consent to telemetry for one app (--app) or for every app; any refusal elsewhere still wins."),
        ("forget", "Erase everything an app's collector stores under your install id, then replace the id."),
        ("export", "Print everything an app's collector stores under your install id, as JSON."),
    ]:
        p = commands.add_parser(name, help=text, description=text)
        if name in ("forget", "export"):
            p.add_argument("--app", required=True, help="the app (as its author named it, e.g. nannyml)")
        else:
            p.add_argument("--app", help="the app (as its author named it, e.g. nannyml); without it, every app")
        if name == "status":
            p.add_argument("--json", action="store_true", help="print as JSON")
        if name == "opt-out":
            p.add_argument("--forget", action="store_true", help="also erase what the app already sent (needs --app)")
    args = parser.parse_args(argv)
    if getattr(args, "forget", False) and not args.app:
        parser.error("--forget needs --app: erasure is asked of one app's collector")
    try:
        out = _ext.user_command(args.command, app=args.app, json=getattr(args, "json", False))
        if getattr(args, "forget", False):
            print(out)
            out = _ext.user_command("forget", app=args.app)
    except OSError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

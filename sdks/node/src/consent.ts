/**
 * Consent: every source a user, an administrator or an author might use to say yes or no, read
 * once, and combined so that **any refusal wins**. If nothing refuses, the first explicit consent
 * decides, and failing that the author's default.
 *
 * The same sources, read the same way, as the Rust SDK (and so the Python package and the
 * `opentally status` command): one user's `opentally opt-out` reaches every app on the machine.
 */

import * as fs from "node:fs";
import * as path from "node:path";

import { parseToml, stringifyToml, type TomlTable, type TomlValue } from "./toml.js";

/** Where a say on telemetry came from, in the order the sources are read and reported. */
export type Source =
  | "system_policy"
  | "code"
  | "do_not_track"
  | "opentally_telemetry"
  | "app_variable"
  | "dot_env"
  | "user_config"
  | "default";

/** What one source said: a refusal (`off`), a refusal to upload (`local`), a consent, or nothing. */
export type Verdict = "off" | "local" | "on" | "silent";

/** What telemetry does in this process. */
export type Mode = "off" | "local" | "on";

/** One source's say, with what it was (a variable's value, a file's path). */
export interface SourceReport {
  source: Source;
  verdict: Verdict;
  detail: string;
}

/** The outcome: the mode, the source that decided it, and what every source said. */
export interface Decision {
  mode: Mode;
  decidedBy: Source;
  sources: SourceReport[];
}

/** How sources are named to people (`opentally status` prints the same words). */
export const SOURCE_NAMES: Record<Source, string> = {
  system_policy: "system policy",
  code: "code",
  do_not_track: "DO_NOT_TRACK",
  opentally_telemetry: "OPENTALLY_TELEMETRY",
  app_variable: "app variable",
  dot_env: ".env file",
  user_config: "user config",
  default: "default",
};

type Vars = Record<string, string | undefined>;

/** Everything a decision is made from. */
export interface Inputs {
  app: string;
  /** Environment variables of the process. */
  env: Vars;
  /** Where `.env` is looked for (then its parents); none: no `.env` is read. */
  cwd: string | undefined;
  policyFile: string;
  configFile: string;
  /** The code's say: `disable()` (false), `enable()` (true), or none. */
  code: boolean | undefined;
  /** Presence-style variables: set to anything, telemetry is off. */
  disableVars: readonly string[];
  /** Value-style variables: a false value refuses, a true value consents. */
  enableVars: readonly string[];
  /** The author's default: on until refused (`opt-out`) or off until accepted (`opt-in`). */
  default: "opt-out" | "opt-in";
  /** The author turns telemetry off in CI by default. */
  offInCi: boolean;
  inCi: boolean;
}

const lower = (v: string): string => v.replace(/[A-Z]+/g, (c) => c.toLowerCase());
// Rust's `str::trim` removes Unicode white space, as JavaScript's does.
const norm = (v: string): string => lower(v.trim());

export function falsy(v: string): boolean {
  switch (norm(v)) {
    case "0":
    case "false":
    case "no":
    case "off":
    case "disable":
    case "disabled":
      return true;
    default:
      return false;
  }
}

export function truthy(v: string): boolean {
  switch (norm(v)) {
    case "1":
    case "true":
    case "yes":
    case "on":
    case "enable":
    case "enabled":
      return true;
    default:
      return false;
  }
}

function report(source: Source, verdict: Verdict, detail: string): SourceReport {
  return { source, verdict, detail };
}

function get(vars: Vars, name: string): string | undefined {
  return Object.prototype.hasOwnProperty.call(vars, name) ? vars[name] : undefined;
}

/** `DO_NOT_TRACK`: any value but empty, `0` or `false` refuses. */
function doNotTrack(vars: Vars, source: Source): SourceReport {
  const v = get(vars, "DO_NOT_TRACK");
  if (v === undefined) return report(source, "silent", "DO_NOT_TRACK not set");
  if (v.trim() !== "" && !falsy(v)) return report(source, "off", `DO_NOT_TRACK=${v}`);
  return report(source, "silent", `DO_NOT_TRACK=${v} (not a refusal)`);
}

function opentallyTelemetry(vars: Vars, source: Source): SourceReport {
  const v = get(vars, "OPENTALLY_TELEMETRY");
  if (v === undefined) return report(source, "silent", "OPENTALLY_TELEMETRY not set");
  const x = norm(v);
  let verdict: Verdict;
  if (x === "local") verdict = "local";
  else if (falsy(x)) verdict = "off";
  else if (truthy(x)) verdict = "on";
  else return report(source, "silent", `OPENTALLY_TELEMETRY=${v} (not off, local or on)`);
  return report(source, verdict, `OPENTALLY_TELEMETRY=${v}`);
}

function appVariables(vars: Vars, inputs: Inputs, source: Source): SourceReport {
  for (const name of inputs.disableVars) {
    const v = get(vars, name);
    if (v !== undefined) return report(source, "off", `${name}=${v} (set: off)`);
  }
  let consent: string | undefined;
  for (const name of inputs.enableVars) {
    const v = get(vars, name);
    if (v === undefined) continue;
    if (falsy(v)) return report(source, "off", `${name}=${v}`);
    if (truthy(v)) consent ??= `${name}=${v}`;
  }
  if (consent !== undefined) return report(source, "on", consent);
  if (inputs.disableVars.length === 0 && inputs.enableVars.length === 0) {
    return report(source, "silent", "the app declares no variables");
  }
  return report(source, "silent", `${[...inputs.disableVars, ...inputs.enableVars].join(", ")} not set`);
}

/** Reads `KEY=VALUE` lines: `export` prefixes, quotes and `#` comments as dotenv tools write them. */
export function parseDotenv(text: string): Record<string, string> {
  const vars: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const raw of text.split("\n")) {
    let line = (raw.endsWith("\r") ? raw.slice(0, -1) : raw).trim();
    if (line === "" || line.startsWith("#")) continue;
    if (line.startsWith("export ")) line = line.slice("export ".length);
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const k = line.slice(0, eq).trim();
    let v = line.slice(eq + 1).trim();
    const dq = v.startsWith('"') ? v.indexOf('"', 1) : -1;
    const sq = v.startsWith("'") ? v.indexOf("'", 1) : -1;
    if (dq > 0) v = v.slice(1, dq);
    else if (sq > 0) v = v.slice(1, sq);
    else v = v.split(" #")[0]!.trim();
    vars[k] = v;
  }
  return vars;
}

/** The nearest `.env` at or above `cwd`. */
function findDotenv(cwd: string): string | undefined {
  let dir = path.resolve(cwd);
  for (;;) {
    const candidate = path.join(dir, ".env");
    try {
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // Not here: look in the parent.
    }
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

function dotenv(inputs: Inputs): SourceReport {
  const file = inputs.cwd === undefined ? undefined : findDotenv(inputs.cwd);
  if (file === undefined) return report("dot_env", "silent", "no .env file");
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return report("dot_env", "silent", `${file} unreadable`);
  }
  const vars = parseDotenv(text);
  // The strongest say in the file: a refusal, then local, then a consent.
  const candidates = [
    doNotTrack(vars, "dot_env"),
    opentallyTelemetry(vars, "dot_env"),
    appVariables(vars, inputs, "dot_env"),
  ];
  for (const wanted of ["off", "local", "on"] as const) {
    const r = candidates.find((c) => c.verdict === wanted);
    if (r) return report("dot_env", wanted, `${file}: ${r.detail}`);
  }
  return report("dot_env", "silent", `${file}: says nothing about telemetry`);
}

const RANK: Record<Verdict, number> = { off: 0, local: 1, on: 2, silent: 3 };

function readSetting(v: TomlValue | undefined): Verdict | undefined {
  if (typeof v !== "string") return undefined;
  if (/^local$/i.test(v)) return "local";
  if (falsy(v)) return "off";
  if (truthy(v)) return "on";
  // A value nobody understands was still meant to say something: read it as a refusal.
  return "off";
}

function child(t: TomlValue | undefined, key: string): TomlValue | undefined {
  if (typeof t !== "object" || t === null || Array.isArray(t)) return undefined;
  return Object.prototype.hasOwnProperty.call(t, key) ? t[key] : undefined;
}

/**
 * Reads `telemetry = "off"|"local"|"on"` globally and under `[apps.NAME]`; the app's own entry and
 * the global one are both honoured, a refusal in either wins.
 */
function telemetryFile(file: string, app: string, source: Source): SourceReport {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return report(source, "silent", `${file} not present`);
  }
  let table: TomlTable;
  try {
    table = parseToml(text);
  } catch {
    // An unreadable file was meant to say something; the safe reading is a refusal.
    return report(source, "off", `${file} is not valid TOML: read as off`);
  }
  const global = readSetting(child(table, "telemetry"));
  const perApp = readSetting(child(child(child(table, "apps"), app), "telemetry"));
  const said = [perApp, global].filter((v): v is Verdict => v !== undefined);
  if (said.length === 0) return report(source, "silent", `${file}: nothing for this app`);
  const combined = said.reduce((a, b) => (RANK[b] < RANK[a] ? b : a));
  const scope =
    perApp !== undefined && global !== undefined
      ? `global and [apps.${app}]`
      : perApp !== undefined
        ? `[apps.${app}]`
        : "global";
  return report(source, combined, `${file} (${scope})`);
}

/** Reads every source and decides. */
export function decide(inputs: Inputs): Decision {
  const code =
    inputs.code === false
      ? report("code", "off", "disabled in code")
      : inputs.code === true
        ? report("code", "on", "enabled in code")
        : report("code", "silent", "no call");
  const dflt =
    inputs.default === "opt-in"
      ? report("default", "off", "opt-in: off until accepted")
      : inputs.offInCi && inputs.inCi
        ? report("default", "off", "opt-out, but off in CI (CI detected)")
        : report("default", "on", "opt-out: on until refused");
  const sources = [
    telemetryFile(inputs.policyFile, inputs.app, "system_policy"),
    code,
    doNotTrack(inputs.env, "do_not_track"),
    opentallyTelemetry(inputs.env, "opentally_telemetry"),
    appVariables(inputs.env, inputs, "app_variable"),
    dotenv(inputs),
    telemetryFile(inputs.configFile, inputs.app, "user_config"),
    dflt,
  ];
  const explicit = sources.slice(0, -1);
  for (const wanted of ["off", "local", "on"] as const) {
    const r = explicit.find((s) => s.verdict === wanted);
    if (r) return { mode: wanted, decidedBy: r.source, sources };
  }
  return { mode: dflt.verdict === "on" ? "on" : "off", decidedBy: "default", sources };
}

/**
 * Writes `telemetry = value` for one app (or globally) into the user's config file, keeping the
 * rest of the file's settings; the same file and format as `opentally opt-out`.
 */
export function writeUserSetting(configFile: string, app: string | undefined, value: Mode): void {
  let table: TomlTable = Object.create(null) as TomlTable;
  try {
    table = parseToml(fs.readFileSync(configFile, "utf8"));
  } catch {
    // Absent or unreadable: start over, as `opentally opt-out` does.
  }
  if (app === undefined) {
    table["telemetry"] = value;
  } else {
    let apps = table["apps"];
    if (apps === undefined) {
      apps = Object.create(null) as TomlTable;
      table["apps"] = apps;
    }
    if (typeof apps === "object" && !Array.isArray(apps)) {
      let entry = apps[app];
      if (entry === undefined) {
        entry = Object.create(null) as TomlTable;
        apps[app] = entry;
      }
      if (typeof entry === "object" && !Array.isArray(entry)) entry["telemetry"] = value;
    }
  }
  fs.mkdirSync(path.dirname(configFile), { recursive: true });
  const text = "# OpenTally telemetry settings, written by `opentally opt-out` / `opt-in`.\n" + stringifyToml(table);
  const tmp = configFile.replace(/\.toml$/, "") + ".toml.tmp";
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, configFile);
}

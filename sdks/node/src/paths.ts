/**
 * Where OpenTally keeps its files, per platform: the user's state (install id salt, spool,
 * first-run marker, local-mode log), the user's config (opt-outs), and the system policy. The
 * same places as the Rust SDK, so every OpenTally app and the `opentally` command share them.
 */

import * as path from "node:path";

export interface Paths {
  /** Per-user state; each app has a folder inside. */
  stateDir: string;
  /** The user's opt-out file, written by `opentally opt-out` and `optOut()`. */
  configFile: string;
  /** The administrator's policy for every user of the machine. */
  policyFile: string;
}

type Vars = Record<string, string | undefined>;

function isAbsolutePosix(p: string): boolean {
  return p.startsWith("/");
}

/** The platform's locations, from environment variables. */
export function pathsFromEnv(env: Vars, platform: NodeJS.Platform = process.platform): Paths {
  const home = env["HOME"] ?? env["USERPROFILE"];
  const underHome = (rel: string): string => (home === undefined ? path.join(".", rel) : path.join(home, rel));
  if (platform === "win32") {
    const local = env["LOCALAPPDATA"] ?? underHome("AppData/Local");
    const roaming = env["APPDATA"] ?? underHome("AppData/Roaming");
    const program = env["PROGRAMDATA"] ?? "C:/ProgramData";
    return {
      stateDir: path.join(local, "opentally"),
      configFile: path.join(roaming, "opentally", "config.toml"),
      policyFile: path.join(program, "opentally", "policy.toml"),
    };
  }
  if (platform === "darwin") {
    const support = underHome("Library/Application Support/opentally");
    return {
      stateDir: support,
      configFile: path.join(support, "config.toml"),
      policyFile: "/Library/Application Support/opentally/policy.toml",
    };
  }
  const xdg = (name: string, fallback: string): string => {
    const v = env[name];
    return v !== undefined && isAbsolutePosix(v) ? v : underHome(fallback);
  };
  return {
    stateDir: path.join(xdg("XDG_STATE_HOME", ".local/state"), "opentally"),
    configFile: path.join(xdg("XDG_CONFIG_HOME", ".config"), "opentally", "config.toml"),
    policyFile: "/etc/opentally/policy.toml",
  };
}

/** App names become folder names: keep them to a safe alphabet. */
export function sanitizeApp(app: string): string {
  let out = "";
  for (const c of app) out += /^[A-Za-z0-9._-]$/.test(c) ? c : "_";
  return out;
}

/** The state folder of one app. */
export function appState(paths: Paths, app: string): string {
  return path.join(paths.stateDir, sanitizeApp(app));
}

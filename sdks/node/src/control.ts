/**
 * The collector's remote control as this app remembers it: the last one a batch's answer carried
 * for this app version, kept in the app's state folder (`control.json`, the Rust SDK's format) so
 * that the next process obeys it before it sends anything. A stopped install asks again (with its
 * next batch, which the collector drops if collection is still stopped) once a day has passed.
 */

import * as fs from "node:fs";
import * as path from "node:path";
import { createHash, randomBytes } from "node:crypto";

/** What the collector asks of the installs of one app version. */
export interface Control {
  /** `false`: stop sending and clear the spool. */
  collect: boolean;
  /** Keep this fraction of installs (0 to 1), chosen by `sampledIn`. */
  sample?: number;
}

/** A control as remembered: what the collector said, for which app version, and when. */
export interface RemoteControl {
  appVersion: string | null;
  collect: boolean;
  sample?: number;
  /** Unix seconds. */
  receivedAt: number;
}

/** How long a remembered control holds before the install asks the collector again, in seconds. */
export const RECHECK_SECS = 24 * 3600;

const FILE = "control.json";

/**
 * The stable place of an install among all installs, in [0, 1): the first 53 bits of
 * SHA-256("opentally-sample:" + install id), as the collector and the Rust SDK compute it.
 */
export function samplePoint(installId: string): number {
  const digest = createHash("sha256").update("opentally-sample:").update(installId, "utf8").digest();
  return Number(digest.readBigUInt64BE(0) >> 11n) / 2 ** 53;
}

/** Whether an install is in a sample that keeps `rate` of all installs. */
export function sampledIn(installId: string, rate: number): boolean {
  return samplePoint(installId) < rate;
}

/** Whether the install with this id may send under `control`. */
export function admits(control: Control, installId: string): boolean {
  return control.collect && (control.sample === undefined || sampledIn(installId, control.sample));
}

/**
 * Reads a delivery's answer as the Rust SDK does: the collector's own (`"ok": true`, a control
 * whose `collect` is a boolean and whose sample is a fraction) is `answered`, with its control;
 * anything else teaches nothing.
 */
export function readReply(answer: string): { kind: "delivered"; answered: boolean; control?: Control } {
  const unread = { kind: "delivered" as const, answered: false };
  let v: { ok?: unknown; control?: unknown };
  try {
    v = JSON.parse(answer) as { ok?: unknown; control?: unknown };
  } catch {
    return unread;
  }
  if (typeof v !== "object" || v === null || v.ok !== true) return unread;
  if (v.control === undefined || v.control === null) return { kind: "delivered", answered: true };
  if (typeof v.control !== "object" || Array.isArray(v.control)) return unread;
  const { collect, sample } = v.control as { collect?: unknown; sample?: unknown };
  if (collect !== undefined && typeof collect !== "boolean") return unread;
  const control: Control = { collect: collect !== false };
  if (sample !== undefined && sample !== null) {
    if (typeof sample !== "number" || !(sample >= 0 && sample <= 1)) return unread;
    control.sample = sample;
  }
  return { kind: "delivered", answered: true, control };
}

export function loadControl(appState: string): RemoteControl | undefined {
  try {
    const v = JSON.parse(fs.readFileSync(path.join(appState, FILE), "utf8")) as Partial<RemoteControl>;
    if (typeof v.collect !== "boolean" || typeof v.receivedAt !== "number") return undefined;
    const out: RemoteControl = {
      appVersion: typeof v.appVersion === "string" ? v.appVersion : null,
      collect: v.collect,
      receivedAt: v.receivedAt,
    };
    if (typeof v.sample === "number") out.sample = v.sample;
    return out;
  } catch {
    return undefined;
  }
}

/** Written to a fresh temporary file, readable by the user alone, then renamed over the old one. */
export function saveControl(appState: string, c: RemoteControl): void {
  try {
    fs.mkdirSync(appState, { recursive: true });
    const tmp = path.join(appState, `${FILE}.${randomBytes(4).toString("hex")}.tmp`);
    fs.writeFileSync(tmp, JSON.stringify(c), { mode: 0o600, flag: "wx" });
    fs.renameSync(tmp, path.join(appState, FILE));
  } catch {
    // Not remembered: this process still obeys it.
  }
}

export function removeControl(appState: string): void {
  try {
    fs.unlinkSync(path.join(appState, FILE));
  } catch {
    // Gone already.
  }
}

/** Whether a remembered control still binds an app of `version`: its version, less than a day ago. */
export function binds(c: RemoteControl, version: string | null, nowSecs: number): boolean {
  return c.appVersion === version && Math.max(0, nowSecs - c.receivedAt) < RECHECK_SECS;
}

/**
 * The install id: stable for one app on one machine, unrelated across apps, and impossible to link
 * back to the machine without its machine id (which never leaves it). Derived exactly as the Rust
 * SDK derives it, so `opentally status --app A` shows the id a Node app sends.
 *
 * id = first 128 bits of HMAC-SHA256(key = OS machine id, message = "opentally/" + app + "/" +
 * salt), written as a UUID. The salt is empty until the user asks to be forgotten. Without a
 * machine id, or in a container (whose image may bake one machine id into every copy), the id is
 * random and kept in the state folder; if that cannot be written, it lives as long as the process
 * and the event says so (`ephemeral`).
 */

import { createHmac, randomFillSync, randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

export interface InstallId {
  id: string;
  ephemeral: boolean;
}

function readTrimmed(file: string): string | undefined {
  try {
    const s = fs.readFileSync(file, "utf8").trim();
    return s === "" ? undefined : s;
  } catch {
    return undefined;
  }
}

let machineIdCache: string | null | undefined;

function machineId(): string | undefined {
  if (machineIdCache === undefined) {
    machineIdCache = null;
    for (const p of ["/etc/machine-id", "/var/lib/dbus/machine-id"]) {
      try {
        // The first file that can be read decides, even if it is empty (as in the Rust SDK).
        const s = fs.readFileSync(p, "utf8").trim();
        machineIdCache = s === "" ? null : s;
        break;
      } catch {
        continue;
      }
    }
  }
  return machineIdCache ?? undefined;
}

/** 16 bytes as a version 4 UUID (the version and variant bits set, as `uuid::Builder` does). */
export function asUuid(b: Uint8Array): string {
  const bytes = Buffer.from(b.subarray(0, 16));
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  const h = bytes.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A random UUID v4. */
export function randomUuid(): string {
  return randomUUID();
}

const v7 = Buffer.alloc(16);
/** Random bytes drawn from the OS in blocks: one call per 409 ids rather than one per id. */
const pool = Buffer.alloc(4096);
let poolAt = pool.length;

/** A UUID v7: the time in milliseconds, then random bits; message ids sort by time. */
export function uuidV7(nowMs: number): string {
  if (poolAt + 10 > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  pool.copy(v7, 6, poolAt, poolAt + 10);
  poolAt += 10;
  v7.writeUIntBE(nowMs, 0, 6);
  v7[6] = (v7[6]! & 0x0f) | 0x70;
  v7[8] = (v7[8]! & 0x3f) | 0x80;
  const h = v7.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The install id of `app`, reading (and only if `mayWrite`, writing) `appStateDir`. */
export function installId(app: string, appStateDir: string, container: boolean, mayWrite: boolean): InstallId {
  const salt = readTrimmed(path.join(appStateDir, "salt")) ?? "";
  const mid = container ? undefined : machineId();
  if (mid !== undefined) {
    const digest = createHmac("sha256", mid).update(`opentally/${app}/${salt}`).digest();
    return { id: asUuid(digest), ephemeral: false };
  }
  const stored = path.join(appStateDir, "install-id");
  const existing = readTrimmed(stored);
  if (existing !== undefined) return { id: existing, ephemeral: false };
  const id = randomUuid();
  let kept = false;
  if (mayWrite) {
    try {
      fs.mkdirSync(appStateDir, { recursive: true });
      fs.writeFileSync(stored, id);
      kept = true;
    } catch {
      kept = false;
    }
  }
  return { id, ephemeral: !kept };
}

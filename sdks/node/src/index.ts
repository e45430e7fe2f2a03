/**
 * OpenTally for Node.js: privacy-first usage telemetry that a CLI or library embeds.
 *
 * ```ts
 * import * as opentally from "opentally";
 * opentally.init({ app: "hello", version: "1.0.0", writeKey: "otw_…", endpoint: "https://telemetry.example.org" });
 * opentally.track("greet", { style: "formal" });
 * ```
 *
 * Promises, each under test: every way a user may refuse works and any refusal wins; when off,
 * nothing is recorded, no timer starts, no file is written and no socket opens; `track` never
 * blocks, throws or prints; telemetry never keeps the event loop alive, and what could not be sent
 * before the process exits waits in the spool for the next process.
 */

import { Client, suppression, suppressionUsed, type Counters, type Options, type Props, type Status } from "./client.js";

export { Client } from "./client.js";
export type { Counters, Options, Prop, Props, Status } from "./client.js";
export type { Decision, Mode, Source, SourceReport, Verdict } from "./consent.js";
export { SOURCE_NAMES } from "./consent.js";
export type { Control, RemoteControl } from "./control.js";
export { samplePoint } from "./control.js";
export type { Paths } from "./paths.js";
export type { Outcome, Transport } from "./transport.js";
export { VERSION } from "./version.js";

/**
 * The global client, shared by the ES module and the CommonJS copy of this package when both are
 * loaded in one process, so that `init` in one is seen by `track` in the other.
 */
const KEY = Symbol.for("opentally.client");
type Holder = { [KEY]?: Client };
const holder = globalThis as unknown as Holder;

/** Starts OpenTally for this process. The first call wins; returns false for later ones. */
export function init(options: Options): boolean {
  if (holder[KEY] !== undefined) return false;
  try {
    holder[KEY] = new Client(options);
    return true;
  } catch {
    // Telemetry never fails its host: a client that cannot start records nothing.
    return false;
  }
}

/** The global client, if `init` was called. */
export function client(): Client | undefined {
  return holder[KEY];
}

/**
 * Records an event with properties (strings, numbers, booleans; anything else is sent as its class
 * name only). Never blocks or throws; does nothing before `init`, when telemetry is off, or inside
 * `suppressed`.
 */
export function track(event: string, props?: Props): void {
  const c = holder[KEY];
  if (c === undefined || c.mode === 0) return;
  try {
    c.track(event, props);
  } catch {
    // Nothing a caller passes may fail the caller.
  }
}

/** Waits at most `timeoutMs` (default: the exit budget) for queued events to leave; the rest go to the spool. */
export function flush(timeoutMs?: number): Promise<boolean> {
  const c = holder[KEY];
  if (c === undefined) return Promise.resolve(true);
  return c.flush(timeoutMs).catch(() => false);
}

/** Turns telemetry off for this process (the code source). Queued events are forgotten. */
export function disable(): void {
  holder[KEY]?.setEnabled(false);
}

/** Consents from code for this process; a user's or administrator's refusal still wins. */
export function enable(): void {
  holder[KEY]?.setEnabled(true);
}

/** Saves the user's refusal for this app in their config file (what `opentally opt-out --app` writes). */
export function optOut(): void {
  holder[KEY]?.setUserChoice(false);
}

/** Saves the user's consent for this app in their config file. */
export function optIn(): void {
  holder[KEY]?.setUserChoice(true);
}

/** What OpenTally is doing in this process and why; undefined before `init`. */
export function status(): Status | undefined {
  return holder[KEY]?.status();
}

/**
 * Runs `fn` with nothing recorded: its own events and those of everything it awaits. Other work
 * running concurrently is still recorded. Returns what `fn` returns.
 */
export function suppressed<T>(fn: () => T): T {
  suppressionUsed.value = true;
  return suppression.run(true, fn);
}

/** The error's class name (`TypeError`, `AbortError`…), never its message. */
function errorType(err: unknown): string {
  if (err !== null && (typeof err === "object" || typeof err === "function")) {
    const name = (err as { constructor?: { name?: unknown } }).constructor?.name;
    if (typeof name === "string" && name !== "") return name;
    return "Object";
  }
  return typeof err;
}

/** A piece of work being timed; `ok()` or `error(err)` records it once. */
export class Span {
  private readonly started = performance.now();
  private done = false;
  constructor(
    readonly event: string,
    private readonly props: Props = {},
  ) {}

  /** Records success. */
  ok(): void {
    this.finish(undefined);
  }

  /** Records failure with the error's class name, never its message. */
  error(err: unknown): void {
    this.finish(errorType(err));
  }

  private finish(type: string | undefined): void {
    if (this.done) return;
    this.done = true;
    const c = holder[KEY];
    if (c === undefined || c.mode === 0) return;
    try {
      const props: Props = { ...this.props };
      props["duration_ms"] = performance.now() - this.started;
      props["outcome"] = type === undefined ? "ok" : "error";
      if (type !== undefined) props["error_type"] = type;
      c.enqueue(this.event, props);
    } catch {
      // Never fail the host.
    }
  }
}

/** Starts a {@link Span}: call `ok()` or `error(err)` when the work ends. */
export function span(event: string, props?: Props): Span {
  return new Span(event, props ? { ...props } : {});
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === "object" || typeof v === "function") && typeof (v as { then?: unknown }).then === "function";
}

/**
 * Runs `fn`, recording its duration, its outcome and, if it throws or rejects, the error's class
 * name; the error itself reaches the caller unchanged. Works for functions that return promises.
 */
export function timed<T>(event: string, fn: () => T, props?: Props): T {
  const s = span(event, props);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    s.error(err);
    throw err;
  }
  if (isThenable(result)) {
    return (result as unknown as PromiseLike<unknown>).then(
      (v) => {
        s.ok();
        return v;
      },
      (err: unknown) => {
        s.error(err);
        throw err;
      },
    ) as unknown as T;
  }
  s.ok();
  return result;
}

/** The counters of the global client (queued, sent, dropped, retried, spooled, rejected). */
export function counters(): Counters | undefined {
  return holder[KEY]?.status().counters;
}

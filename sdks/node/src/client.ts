/**
 * The client: consent decided once, a bounded queue that `track` only pushes to, and a sender
 * that runs on unref'd timers and sockets: it batches, compresses, sends, retries and spools, and
 * never keeps the host's event loop alive.
 *
 * What `track` does on the caller's stack: one comparison (the mode), one check of the suppressed
 * scope, a shallow copy of the properties, a push, and at most one unref'd timer. It never waits
 * on the network, the disk or anything else.
 *
 * Exit: telemetry never holds the process. Whatever is queued or in flight when the process exits
 * (the loop ran dry, or `process.exit()` was called) is written to the spool synchronously in an
 * `'exit'` listener, within the exit budget, and the next process sends it.
 */

import { AsyncLocalStorage } from "node:async_hooks";
import * as fs from "node:fs";
import * as path from "node:path";
import { gunzipSync, gzipSync, constants as zlibConstants } from "node:zlib";
import { randomBytes } from "node:crypto";

import { decide, writeUserSetting, type Decision, type Mode, type Source } from "./consent.js";
import { environment, hardware, inCi, inContainer, osInfo } from "./environment.js";
import { installId, randomUuid, uuidV7, type InstallId } from "./identity.js";
import { defaultNotice } from "./notice.js";
import { admits, binds, loadControl, RECHECK_SECS, removeControl, saveControl, type Control, type RemoteControl } from "./control.js";
import { appState, pathsFromEnv, type Paths } from "./paths.js";
import { HttpTransport, LocalFile, unrefTimer, type Transport } from "./transport.js";
import { VERSION } from "./version.js";

/** A property value. Anything else is sent as its class name only, never its contents. */
export type Prop = string | number | boolean | null | undefined;
export type Props = Record<string, unknown>;

type Vars = Record<string, string | undefined>;

/** How an app embeds OpenTally. */
export interface Options {
  /** The app's name: its consent entries, state folder and `context.app.name`. */
  app: string;
  /** The app's version, sent in `context.app.version`. */
  version?: string;
  /** The project's write key (public, send-only). `OPENTALLY_WRITE_KEY` overrides it. */
  writeKey?: string;
  /** The collector's base URL. `OPENTALLY_ENDPOINT` overrides it. */
  endpoint?: string;
  /** Variables whose mere presence turns telemetry off (NannyML's `NML_DISABLE_USAGE_LOGGING`). */
  disableEnv?: string | readonly string[];
  /** Variables whose false value turns telemetry off and true value consents (Flower's style). */
  enableEnv?: string | readonly string[];
  /** `"on"` (opt-out, the default): on until refused; `"off"` (opt-in): off until accepted. */
  default?: "on" | "off" | "opt-out" | "opt-in";
  /** With the opt-out default, stay off when running in CI. */
  offInCi?: boolean;
  /** The code's own say: `false` refuses, `true` consents (a user's refusal still wins). */
  enabled?: boolean;
  /** The first-run notice: OpenTally's (default), the author's text, or `false` for none. */
  notice?: string | false;
  /** The most time spent on telemetry at exit, in ms (default 1000; 0: nothing is kept). */
  flushTimeout?: number;
  /** Events held in memory at most; beyond, new events are dropped and counted (default 1000). */
  queueCapacity?: number;
  /** Events per batch (default 100). */
  batchSize?: number;
  /** Longest wait before a batch is sent, in ms (default 2000). */
  batchInterval?: number;
  /** Connect timeout of one attempt, in ms (default 2000). */
  connectTimeout?: number;
  /** Timeout of one whole attempt, in ms (default 5000). */
  requestTimeout?: number;
  /** Attempts per batch (default 4). */
  maxAttempts?: number;
  /** Bound of the app's spool on disk (default 1 MiB, oldest batches dropped first). */
  spoolMaxBytes?: number;
  /** Where the install's state lives (default: the platform's state folder). */
  stateDir?: string;
  /** The user's opt-out file (default: the platform's config folder). */
  configFile?: string;
  /** The administrator's policy file (default `/etc/opentally/policy.toml` or equivalent). */
  policyFile?: string;
  /** Reads these variables instead of `process.env` (tests). */
  env?: Vars;
  /** Looks for `.env` from here instead of the working directory (tests). */
  cwd?: string;
  /** Delivers through this transport instead of HTTP (tests, or a host's own channel). */
  transport?: Transport;
}

export interface Counters {
  queued: number;
  sent: number;
  dropped: number;
  retried: number;
  spooled: number;
  rejected: number;
  /** Not sent because the collector's remote control stopped or sampled out this install. */
  withheld: number;
}

/** What `status()` shows: every consent source, the decision, the id, the counters and files. */
export interface Status {
  app: string;
  decision: Decision;
  /** None while telemetry is off and no id exists yet (none is made up just to be shown). */
  installId: string | null;
  ephemeral: boolean;
  counters: Counters;
  spoolFiles: number;
  spoolBytes: number;
  paths: Paths;
  appState: string;
  /** The last remote control the collector sent for this app, as remembered here. */
  control: RemoteControl | null;
}

/** One tracked event, as small as it can be on the caller's stack. */
class QueuedEvent {
  constructor(
    readonly name: string,
    readonly props: Props | undefined,
    readonly at: number,
  ) {}
}
type Event = QueuedEvent;

const OFF = 0;
const LOCAL = 1;
const ON = 2;
const MODE_CODE: Record<Mode, number> = { off: OFF, local: LOCAL, on: ON };

/** Suppressed scopes: a store per async context, so concurrent work outside stays recorded. */
export const suppression = new AsyncLocalStorage<boolean>();
/** Whether any suppressed scope was ever entered: until then `track` skips the lookup. */
export const suppressionUsed = { value: false };

function asList(v: string | readonly string[] | undefined): string[] {
  if (v === undefined) return [];
  return typeof v === "string" ? [v] : [...v];
}

function nonNegative(v: number | undefined, fallback: number): number {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : fallback;
}

/** A property as it may be sent: scalars as they are, anything else by its class name only. */
function propValue(v: unknown): string | number | boolean | null | undefined {
  switch (typeof v) {
    case "string":
    case "boolean":
      return v;
    case "number":
      // JSON has no NaN or infinity; such a value is sent as null.
      return Number.isFinite(v) ? v : null;
    case "bigint":
      return Number.isSafeInteger(Number(v)) ? Number(v) : String(v);
    case "undefined":
      return undefined;
    case "object":
      if (v === null) return undefined;
      return (v.constructor as { name?: string } | undefined)?.name || "Object";
    case "function":
      return "Function";
    default:
      return typeof v;
  }
}

function propsJson(props: Props | undefined): string {
  if (props === undefined) return "{}";
  let out = "{";
  let first = true;
  for (const k in props) {
    const v = propValue(props[k]);
    if (v === undefined) continue;
    out += (first ? "" : ",") + JSON.stringify(k) + ":" + JSON.stringify(v);
    first = false;
  }
  return out + "}";
}

function gzip(bytes: string | Buffer): Buffer {
  return gzipSync(bytes, { level: zlibConstants.Z_BEST_SPEED });
}

/** Exponential backoff with jitter: 0.5 s, 1 s, 2 s… each ±50 %. */
export function backoffMs(attempt: number): number {
  return 500 * 2 ** Math.min(attempt, 6) * (0.5 + Math.random());
}

let spoolCounter = 0;

export class Client {
  readonly app: string;
  /** 0 off, 1 local, 2 on: the one value `track` reads. */
  mode: number;
  readonly flushTimeout: number;
  private decision: Decision;
  private readonly code: boolean | undefined;
  private codeNow: boolean | undefined;
  private readonly env: Vars;
  private readonly cwd: string | undefined;
  private readonly paths: Paths;
  private readonly appStateDir: string;
  private readonly spoolDir: string;
  private readonly container: boolean;
  private readonly options: Options;
  private readonly disableVars: string[];
  private readonly enableVars: string[];
  private readonly queueCapacity: number;
  private readonly batchSize: number;
  private readonly batchInterval: number;
  private readonly requestTimeout: number;
  private readonly maxAttempts: number;
  private readonly spoolMaxBytes: number;
  private readonly inspect: boolean;
  private transportCache: Transport | undefined;
  private readonly counters: Counters = { queued: 0, sent: 0, dropped: 0, retried: 0, spooled: 0, rejected: 0, withheld: 0 };
  private queue: Event[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** Whether the timer fires on the next turn of the event loop (not after the batch interval). */
  private timerSoon = false;
  private sentOnce = false;
  /** The send loop in progress, if any. */
  private running: Promise<void> | undefined;
  /** The JSON array of the batch being sent, for the exit to spool if the process leaves first. */
  private inFlight: string | undefined;
  private spoolChecked = false;
  /** Whether the last run of the send loop delivered every batch it took. */
  private lastOk = true;
  private install: InstallId | undefined;
  /**
   * While the collector's remote control stops this install: the time (ms) it is due to be asked
   * again, before which nothing is recorded; 0 otherwise.
   */
  private heldUntil = 0;
  /** The control remembered in the state folder, once read; `null` for none. */
  private remembered: RemoteControl | null | undefined;
  private contextJson: string | undefined;
  private readonly session = randomUuid();
  private readonly onExit = (): void => this.exitNow();

  constructor(options: Options) {
    this.options = options;
    this.app = String(options.app);
    this.env = options.env ?? process.env;
    this.cwd = options.cwd ?? safeCwd();
    const paths = pathsFromEnv(this.env);
    if (options.stateDir !== undefined) paths.stateDir = options.stateDir;
    if (options.configFile !== undefined) paths.configFile = options.configFile;
    if (options.policyFile !== undefined) paths.policyFile = options.policyFile;
    this.paths = paths;
    this.appStateDir = appState(paths, this.app);
    this.spoolDir = path.join(this.appStateDir, "spool");
    this.disableVars = asList(options.disableEnv);
    this.enableVars = asList(options.enableEnv);
    this.code = options.enabled;
    this.codeNow = options.enabled;
    this.flushTimeout = nonNegative(options.flushTimeout, 1000);
    this.queueCapacity = Math.max(1, Math.floor(nonNegative(options.queueCapacity, 1000)));
    this.batchSize = Math.max(1, Math.floor(nonNegative(options.batchSize, 100)));
    this.batchInterval = nonNegative(options.batchInterval, 2000);
    this.requestTimeout = nonNegative(options.requestTimeout, 5000);
    this.maxAttempts = Math.max(1, Math.floor(nonNegative(options.maxAttempts, 4)));
    this.spoolMaxBytes = nonNegative(options.spoolMaxBytes, 1024 * 1024);
    const log = this.env["OPENTALLY_LOG"];
    this.inspect = log !== undefined && log !== "" && log !== "0";
    this.container = inContainer(this.env);
    this.decision = this.decide(this.codeNow);
    this.mode = MODE_CODE[this.decision.mode];
    if (this.mode !== OFF) this.firstRunNotice();
    process.on("exit", this.onExit);
  }

  private decide(code: boolean | undefined): Decision {
    const dflt = this.options.default;
    return decide({
      app: this.app,
      env: this.env,
      cwd: this.cwd,
      policyFile: this.paths.policyFile,
      configFile: this.paths.configFile,
      code,
      disableVars: this.disableVars,
      enableVars: this.enableVars,
      default: dflt === "off" || dflt === "opt-in" ? "opt-in" : "opt-out",
      offInCi: this.options.offInCi === true,
      inCi: inCi(this.env),
    });
  }

  /** Records an event. Never throws, never waits; off, suppressed or full: nothing (a drop is counted). */
  track(event: string, props?: Props): void {
    if (this.mode === OFF) return;
    if (this.heldUntil !== 0 && this.held()) return;
    if (suppressionUsed.value && suppression.getStore() === true) return;
    // The properties object is kept as it is, not copied (copying would double the cost of this
    // call): its values are read when the batch is built, on the next turn of the event loop or
    // within the batch interval. Pass a fresh object, as `track("x", { a: 1 })` does.
    this.push(typeof event === "string" ? event : String(event), props == null ? undefined : props);
  }

  /** Queues a prepared event (spans build their own properties). */
  enqueue(name: string, props: Props | undefined): void {
    if (this.mode === OFF) return;
    if (this.heldUntil !== 0 && this.held()) return;
    if (suppressionUsed.value && suppression.getStore() === true) return;
    this.push(String(name), props);
  }

  private push(name: string, props: Props | undefined): void {
    const q = this.queue;
    if (q.length >= this.queueCapacity) {
      this.counters.dropped++;
      return;
    }
    q.push(new QueuedEvent(name, props, Date.now()));
    this.counters.queued++;
    if (this.timer === undefined) this.schedule(this.sentOnce && q.length < this.batchSize ? this.batchInterval : 0);
    else if (q.length >= this.batchSize && !this.timerSoon) this.schedule(0);
  }

  /**
   * Sends on the next turn of the event loop (the first batch of a process: a short-lived CLI
   * gets its events out while it still runs) or after the batch interval.
   */
  private schedule(delay: number): void {
    if (this.timer !== undefined) {
      // Already due at once, or asked for later than it is due: nothing to change.
      if (delay > 0 || this.timerSoon) return;
      clearTimeout(this.timer);
    }
    this.timerSoon = delay === 0;
    this.timer = unrefTimer(() => {
      this.timer = undefined;
      void this.pump(undefined);
    }, delay);
  }

  /** Runs the send loop unless it already runs; resolves when this run is over. */
  private pump(deadline: number | undefined): Promise<void> {
    if (this.running !== undefined) return this.running;
    this.sentOnce = true;
    const run = this.sendAll(deadline)
      .catch(() => undefined)
      .finally(() => {
        this.running = undefined;
        // Events that arrived while sending wait for the next interval.
        if (this.queue.length > 0 && this.timer === undefined && this.mode !== OFF) this.schedule(this.batchInterval);
      });
    this.running = run;
    return run;
  }

  private async sendAll(deadline: number | undefined): Promise<void> {
    this.lastOk = true;
    this.recallControl();
    while (this.queue.length > 0 && this.mode !== OFF && this.heldUntil === 0) {
      const events = this.queue.splice(0, this.batchSize);
      const array = this.messagesJson(events);
      this.inFlight = array;
      const delivered = await this.deliver(array, events.length, deadline);
      // If the process's exit took the batch it spooled it; otherwise it is still ours to keep.
      const stillOurs = this.inFlight === array;
      this.inFlight = undefined;
      if (!delivered) {
        this.lastOk = false;
        if (stillOurs) this.spoolWrite(array, events.length);
        // Resend it from here too once the collector answers again, not only from a later process.
        this.spoolChecked = false;
        return;
      }
    }
    // Batches a former process could not send go out once this one has sent its own.
    if (!this.spoolChecked && this.mode !== OFF) this.spoolChecked = await this.resendSpool(deadline);
  }

  /** Sends one batch of `n` messages with retries; false if it could not be delivered. */
  private async deliver(array: string, n: number, deadline: number | undefined): Promise<boolean> {
    const transport = this.transport();
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      let timeout = this.requestTimeout;
      if (deadline !== undefined) {
        const left = deadline - Date.now();
        if (left <= 0) return false;
        timeout = Math.min(left, timeout);
      }
      let outcome;
      try {
        outcome = await transport.send(batchBody(array), timeout);
      } catch {
        outcome = { kind: "retry" as const };
      }
      if (outcome.kind === "delivered") {
        this.counters.sent += n;
        if (outcome.answered === true) this.obey(outcome.control);
        return true;
      }
      if (outcome.kind === "rejected") {
        // Never retried: resending what the collector refused cannot succeed.
        this.counters.rejected += n;
        return true;
      }
      this.counters.retried++;
      if (attempt + 1 === this.maxAttempts) break;
      const wait = Math.min(outcome.afterMs ?? backoffMs(attempt), 30_000);
      if (deadline !== undefined && Date.now() + wait >= deadline) return false;
      await new Promise<void>((r) => unrefTimer(r, wait));
    }
    return false;
  }

  private transport(): Transport {
    if (this.transportCache === undefined) {
      if (this.mode === LOCAL) {
        this.transportCache = new LocalFile(path.join(this.appStateDir, "events.jsonl"));
      } else if (this.options.transport !== undefined) {
        this.transportCache = this.options.transport;
      } else {
        const endpoint = this.env["OPENTALLY_ENDPOINT"] ?? this.options.endpoint ?? "";
        const key = this.env["OPENTALLY_WRITE_KEY"] ?? this.options.writeKey ?? "";
        try {
          this.transportCache = new HttpTransport(endpoint, key, nonNegative(this.options.connectTimeout, 2000), this.env);
        } catch {
          // An endpoint that is not a URL: nothing can be sent; batches wait in the spool.
          this.transportCache = { send: () => Promise.resolve({ kind: "retry" }) };
        }
      }
    }
    return this.transportCache;
  }

  private installId(): InstallId {
    this.install ??= installId(this.app, this.appStateDir, this.container, true);
    return this.install;
  }

  private context(): string {
    if (this.contextJson === undefined) {
      const runtime = { name: "node", version: process.versions.node };
      const app: { name: string; version?: string } = { name: this.app };
      if (this.options.version !== undefined) app.version = String(this.options.version);
      const ctx: Record<string, unknown> = {
        library: { name: "opentally-node", version: VERSION },
        app,
        os: osInfo(),
        runtime,
        environment: environment(this.env),
        hardware: hardware(),
        session: this.session,
      };
      if (this.installId().ephemeral) ctx["ephemeral"] = true;
      this.contextJson = JSON.stringify(ctx);
    }
    return this.contextJson;
  }

  /** The JSON array of Segment `track` messages for these events. */
  private messagesJson(events: Event[]): string {
    const anonymousId = JSON.stringify(this.installId().id);
    const context = this.context();
    const parts: string[] = [];
    for (const e of events) {
      const m =
        `{"type":"track","event":${JSON.stringify(e.name)},"messageId":"${uuidV7(e.at)}",` +
        `"anonymousId":${anonymousId},"timestamp":"${new Date(e.at).toISOString()}",` +
        `"properties":${propsJson(e.props)},"context":${context}}`;
      if (this.inspect) {
        try {
          process.stderr.write(`opentally: ${m}\n`);
        } catch {
          // Inspect mode must not fail the host either.
        }
      }
      parts.push(m);
    }
    return `[${parts.join(",")}]`;
  }

  /** Writes a batch to the spool (the Rust SDK's format) and keeps the spool under its bound. */
  private spoolWrite(array: string, events: number): void {
    try {
      fs.mkdirSync(this.spoolDir, { recursive: true });
      const nanos = (BigInt(Date.now()) * 1_000_000n + BigInt(spoolCounter++ % 1_000_000)).toString().padStart(20, "0");
      const name = `${nanos}-${randomBytes(4).toString("hex")}.json.gz`;
      const tmp = path.join(this.spoolDir, `${name}.tmp`);
      fs.writeFileSync(tmp, gzip(array));
      fs.renameSync(tmp, path.join(this.spoolDir, name));
    } catch {
      return;
    }
    this.counters.spooled += events > 0 ? events : countMessages(array);
    trimSpool(this.spoolDir, this.spoolMaxBytes);
  }

  /** Whether a stop still holds; once it is due to be asked again, lets events through. */
  private held(): boolean {
    if (Date.now() < this.heldUntil) return true;
    this.heldUntil = 0;
    return false;
  }

  private appVersion(): string | null {
    return this.options.version === undefined ? null : String(this.options.version);
  }

  /** The control a former process remembered, obeyed before anything is sent (read once). */
  private recallControl(): void {
    if (this.remembered !== undefined) return;
    const r = loadControl(this.appStateDir);
    this.remembered = r ?? null;
    if (r !== undefined && binds(r, this.appVersion(), Date.now() / 1000) && !admits(r, this.installId().id)) {
      this.holdBack(r.receivedAt);
    }
  }

  /** Follows the control a delivery's answer carried (none: collect as usual) and remembers it. */
  private obey(control: Control | undefined): void {
    if (control === undefined) {
      if (this.remembered) removeControl(this.appStateDir);
      this.remembered = null;
      this.heldUntil = 0;
      return;
    }
    const fresh: RemoteControl = { appVersion: this.appVersion(), collect: control.collect, receivedAt: Math.floor(Date.now() / 1000) };
    if (control.sample !== undefined) fresh.sample = control.sample;
    const old = this.remembered;
    if (!old || old.appVersion !== fresh.appVersion || old.collect !== fresh.collect || old.sample !== fresh.sample || fresh.receivedAt - old.receivedAt >= RECHECK_SECS / 2) {
      saveControl(this.appStateDir, fresh);
      this.remembered = fresh;
    }
    if (admits(control, this.installId().id)) this.heldUntil = 0;
    else this.holdBack(this.remembered!.receivedAt);
  }

  /** Stops this install until the control is due to be asked again; drops the queue and the spool. */
  private holdBack(receivedAt: number): void {
    this.heldUntil = Math.max((receivedAt + RECHECK_SECS) * 1000, 1);
    let dropped = this.queue.length;
    this.queue = [];
    for (const [file] of spoolFiles(this.spoolDir)) {
      try {
        dropped += countMessages(gunzipSync(fs.readFileSync(file)).toString("utf8"));
      } catch {
        // Unreadable: removed all the same.
      }
      rmQuiet(file);
    }
    this.counters.withheld += dropped;
  }

  /** Sends spooled batches, oldest first; stops at the first that fails. True if the spool is empty. */
  private async resendSpool(deadline: number | undefined): Promise<boolean> {
    for (const [file] of spoolFiles(this.spoolDir)) {
      // The collector's control, learnt from the batch before, dropped the rest.
      if (this.heldUntil !== 0) return true;
      let array: string;
      try {
        array = gunzipSync(fs.readFileSync(file)).toString("utf8");
        JSON.parse(array);
      } catch {
        rmQuiet(file);
        continue;
      }
      if (!(await this.deliver(array, countMessages(array), deadline))) return false;
      rmQuiet(file);
    }
    return true;
  }

  /**
   * Waits at most `timeoutMs` for queued events to be delivered; what is left goes to the spool
   * (unless `timeoutMs` is 0). Keeps the process alive for that long at most: the host asked.
   */
  async flush(timeoutMs: number = this.flushTimeout): Promise<boolean> {
    const budget = nonNegative(timeoutMs, this.flushTimeout);
    if (this.mode === OFF) return true;
    if (this.queue.length === 0 && this.running === undefined && this.inFlight === undefined) return true;
    const deadline = Date.now() + budget;
    let hold: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      hold = setTimeout(() => resolve(false), budget);
    });
    const work = (async (): Promise<true> => {
      if (this.timer !== undefined) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
      // A run already under way has no deadline: wait for it, then send the rest within ours.
      while (this.queue.length > 0 || this.running !== undefined) {
        await this.pump(deadline);
        if (Date.now() >= deadline) break;
        if (!this.lastOk) break;
      }
      return true;
    })();
    const finished = await Promise.race([work, timedOut]);
    clearTimeout(hold);
    const done = finished && this.lastOk && this.queue.length === 0 && this.inFlight === undefined;
    if (done) return true;
    if (budget > 0) this.spoolLeftovers();
    return false;
  }

  /** What is queued and what is in flight, to the spool: at exit, or when a flush ran out of time. */
  private spoolLeftovers(): void {
    const leftover = this.queue;
    this.queue = [];
    if (leftover.length > 0) this.spoolWrite(this.messagesJson(leftover), leftover.length);
    const inFlight = this.inFlight;
    this.inFlight = undefined;
    if (inFlight !== undefined) this.spoolWrite(inFlight, 0);
  }

  /** The process is leaving: keep what could not be sent for the next one (synchronous). */
  private exitNow(): void {
    try {
      if (this.timer !== undefined) clearTimeout(this.timer);
      if (this.mode === OFF || this.flushTimeout <= 0) return;
      this.spoolLeftovers();
    } catch {
      // Telemetry never fails the host, least of all on its way out.
    }
  }

  /** Turns telemetry off (`false`) or consents (`true`) from code, for this process. */
  setEnabled(on: boolean): void {
    this.codeNow = on;
    this.apply(this.decide(on));
  }

  /** Saves the user's choice for this app in the user config file, then applies it. */
  setUserChoice(on: boolean): void {
    writeUserSetting(this.paths.configFile, this.app, on ? "on" : "off");
    this.apply(this.decide(this.codeNow));
  }

  /** Reads every consent source again. */
  reloadConsent(): void {
    this.apply(this.decide(this.codeNow));
  }

  private apply(decision: Decision): void {
    this.decision = decision;
    this.mode = MODE_CODE[decision.mode];
    this.transportCache = undefined;
    if (this.mode === OFF) {
      // Off means nothing leaves: forget what was queued.
      this.queue = [];
      if (this.timer !== undefined) clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  status(): Status {
    const [spoolFilesCount, spoolBytes] = spoolSize(this.spoolDir);
    // When telemetry is on, the id shown is the one events carry (settled now if need be). When it
    // is off, looking is not using: nothing is written, and an id invented only for this look is
    // not shown.
    let install: InstallId | undefined;
    if (this.mode === OFF) {
      install = this.install;
      if (install === undefined) {
        const id = installId(this.app, this.appStateDir, this.container, false);
        install = id.ephemeral ? undefined : id;
      }
    } else {
      install = this.installId();
    }
    return {
      app: this.app,
      decision: structuredClone(this.decision),
      installId: install?.id ?? null,
      ephemeral: install?.ephemeral ?? false,
      counters: { ...this.counters },
      spoolFiles: spoolFilesCount,
      spoolBytes,
      paths: { ...this.paths },
      appState: this.appStateDir,
      control: loadControl(this.appStateDir) ?? null,
    };
  }

  /** Stops listening for the process's exit (a client replaced in tests). */
  close(): void {
    process.removeListener("exit", this.onExit);
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private firstRunNotice(): void {
    const notice = this.options.notice;
    if (notice === false) return;
    const text = typeof notice === "string" ? notice : defaultNotice(this.app, this.disableVars);
    if (!process.stderr.isTTY) return;
    const marker = path.join(this.appStateDir, "notice-shown");
    try {
      if (fs.existsSync(marker)) return;
      fs.mkdirSync(this.appStateDir, { recursive: true });
      fs.writeFileSync(marker, "");
      process.stderr.write(text + "\n");
    } catch {
      // No notice rather than a failure.
    }
  }

  /** The source that decided, for messages. */
  decidedBy(): Source {
    return this.decision.decidedBy;
  }
}

function safeCwd(): string | undefined {
  try {
    return process.cwd();
  } catch {
    return undefined;
  }
}

/** The request body: the messages with a fresh `sentAt`, gzip-compressed. */
function batchBody(array: string): Buffer {
  return gzip(`{"sentAt":"${new Date().toISOString()}","batch":${array}}`);
}

function countMessages(array: string): number {
  try {
    const v: unknown = JSON.parse(array);
    return Array.isArray(v) ? v.length : 0;
  } catch {
    return 0;
  }
}

function rmQuiet(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch {
    // Already gone (another process sent it).
  }
}

function spoolFiles(dir: string): [string, number][] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const out: [string, number][] = [];
  for (const n of names.filter((n) => n.endsWith(".json.gz")).sort()) {
    const file = path.join(dir, n);
    try {
      out.push([file, fs.statSync(file).size]);
    } catch {
      // Sent and removed by another process meanwhile.
    }
  }
  return out;
}

function spoolSize(dir: string): [number, number] {
  const files = spoolFiles(dir);
  return [files.length, files.reduce((a, [, n]) => a + n, 0)];
}

function trimSpool(dir: string, max: number): void {
  const files = spoolFiles(dir);
  let total = files.reduce((a, [, n]) => a + n, 0);
  for (const [file, n] of files) {
    if (total <= max) break;
    try {
      fs.unlinkSync(file);
      total -= n;
    } catch {
      // Gone already.
    }
  }
}

/**
 * How a batch leaves the process: Segment-compatible HTTP (`POST {endpoint}/v1/batch`, gzip, Basic
 * auth with the write key), through a proxy when `HTTPS_PROXY`/`HTTP_PROXY` say so, and a local
 * file for `OPENTALLY_TELEMETRY=local`.
 *
 * Every socket and timer here is unref'd: a request in flight never keeps the host's event loop
 * alive, and every failure becomes an outcome, never an exception or a log line.
 */

import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import type * as net from "node:net";
import * as path from "node:path";
import * as tls from "node:tls";
import { gunzipSync } from "node:zlib";

import { readReply, type Control } from "./control.js";
import { VERSION } from "./version.js";

/** The largest answer to a batch read for its remote control; a collector's is a few hundred bytes. */
const MAX_ANSWER_BYTES = 64 * 1024;

/** The fate of one attempt. */
export type Outcome =
  /**
   * The collector has it. `answered`: the answer was the collector's own, read whole, so its
   * `control` (none: collect as usual) is to be followed; otherwise nothing is learnt from it.
   */
  | { kind: "delivered"; answered?: boolean; control?: Control }
  /** Try again later (network error, timeout, 408, 429, 5xx), after `afterMs` if the server said. */
  | { kind: "retry"; afterMs?: number }
  /** The collector refused it for good (400, 401, 413…): never retried. */
  | { kind: "rejected"; status: number };

/** A way to deliver a batch: `body` is the gzip-compressed JSON of a Segment batch. */
export interface Transport {
  send(body: Buffer, timeoutMs: number): Promise<Outcome>;
}

type Vars = Record<string, string | undefined>;

const RETRY: Outcome = { kind: "retry" };

function envVar(env: Vars, name: string): string | undefined {
  const v = env[name] ?? env[name.toLowerCase()];
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

function defaultPort(protocol: string): number {
  return protocol === "https:" ? 443 : 80;
}

/** Whether `NO_PROXY` exempts this host: `*`, exact names, domain suffixes, with optional ports. */
export function bypassesProxy(host: string, port: number, noProxy: string | undefined): boolean {
  if (noProxy === undefined) return false;
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  for (const raw of noProxy.split(/[,\s]+/)) {
    let entry = raw.trim().toLowerCase();
    if (entry === "") continue;
    if (entry === "*") return true;
    let entryPort: number | undefined;
    const m = /^(.*?):(\d+)$/.exec(entry);
    // `[::1]:8080` has a port; a bare `::1` has none.
    if (m && (!entry.includes("::") || entry.startsWith("["))) {
      entry = m[1]!;
      entryPort = Number(m[2]);
    }
    entry = entry.replace(/^\[|\]$/g, "").replace(/^\*?\./, ".");
    if (entryPort !== undefined && entryPort !== port) continue;
    if (h === entry.replace(/^\./, "") || (entry.startsWith(".") ? h.endsWith(entry) : h.endsWith("." + entry))) {
      return true;
    }
  }
  return false;
}

/**
 * The proxy for `target`, from the environment: none, a URL, or `"unusable"` when one is set
 * that this package cannot use (SOCKS, or not a URL). An unusable proxy is never gone around,
 * since the user set it for a reason: every send then fails, as the Rust SDK's do.
 */
export function proxyFor(target: URL, env: Vars): URL | "unusable" | undefined {
  const port = target.port === "" ? defaultPort(target.protocol) : Number(target.port);
  if (bypassesProxy(target.hostname, port, envVar(env, "NO_PROXY"))) return undefined;
  const raw =
    target.protocol === "https:"
      ? (envVar(env, "HTTPS_PROXY") ?? envVar(env, "ALL_PROXY"))
      : (envVar(env, "HTTP_PROXY") ?? envVar(env, "ALL_PROXY"));
  if (raw === undefined) return undefined;
  try {
    const u = new URL(raw.includes("://") ? raw : `http://${raw}`);
    return u.protocol === "http:" || u.protocol === "https:" ? u : "unusable";
  } catch {
    return "unusable";
  }
}

/**
 * The PEM file of roots to trust named by `OPENTALLY_CA_BUNDLE`, else `SSL_CERT_FILE`; none when
 * neither is set. A file that cannot be read trusts nothing, so the sends fail (and are counted)
 * rather than go out with roots the user did not choose.
 */
export function caBundle(env: Vars): Buffer | undefined {
  const file = envVar(env, "OPENTALLY_CA_BUNDLE") ?? envVar(env, "SSL_CERT_FILE");
  if (file === undefined) return undefined;
  try {
    return fs.readFileSync(file);
  } catch {
    return Buffer.alloc(0);
  }
}

function basic(user: string, pass: string): string {
  return "Basic " + Buffer.from(`${user}:${pass}`).toString("base64");
}

function retryAfterMs(v: string | string[] | undefined): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined || !/^\s*\d+\s*$/.test(s)) return undefined;
  return Number(s.trim()) * 1000;
}

function classify(status: number, retryAfter: string | string[] | undefined): Outcome {
  if (status >= 200 && status < 300) return { kind: "delivered" };
  if (status === 408 || status === 429 || (status >= 500 && status < 600)) {
    const afterMs = retryAfterMs(retryAfter);
    return afterMs === undefined ? { kind: "retry" } : { kind: "retry", afterMs };
  }
  return { kind: "rejected", status };
}

/** `setTimeout` that never keeps the event loop alive. */
export function unrefTimer(fn: () => void, ms: number): NodeJS.Timeout {
  const t = setTimeout(fn, ms);
  t.unref();
  return t;
}

export class HttpTransport implements Transport {
  /**
   * One connection kept between batches of a long-running host. Node unrefs an idle kept-alive
   * socket itself, and every socket in use is unref'd below, so the pool never holds the process.
   */
  private agents = {
    http: new http.Agent({ keepAlive: true, maxSockets: 1, timeout: 30_000 }),
    https: new https.Agent({ keepAlive: true, maxSockets: 1, timeout: 30_000 }),
  };
  private readonly url: URL;
  private readonly authorization: string;
  private readonly proxy: URL | "unusable" | undefined;
  /** The roots trusted for TLS instead of Node's own, as the Rust SDK reads them. */
  private readonly ca: Buffer | undefined;

  constructor(
    endpoint: string,
    writeKey: string,
    private readonly connectTimeoutMs: number,
    env: Vars,
  ) {
    this.url = new URL(endpoint.replace(/\/+$/, "") + "/v1/batch");
    this.authorization = basic(writeKey, "");
    this.proxy = proxyFor(this.url, env);
    this.ca = caBundle(env);
    if (this.ca !== undefined) {
      this.agents.https = new https.Agent({ keepAlive: true, maxSockets: 1, timeout: 30_000, ca: this.ca });
    }
  }

  send(body: Buffer, timeoutMs: number): Promise<Outcome> {
    if (this.proxy === "unusable") return Promise.resolve(RETRY);
    const proxy = this.proxy;
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      const sockets: net.Socket[] = [];
      let req: http.ClientRequest | undefined;
      // What an error or the overall timeout means: a retry, until a 2xx status has come; from
      // then on the batch is delivered whatever the rest of the answer does.
      let onTimeout: Outcome = RETRY;
      const onSocketError = (): void => finish(onTimeout, false);
      /** `clean`: the answer was read whole, so its connection may serve the next batch. */
      const finish = (o: Outcome, clean: boolean): void => {
        if (settled) return;
        settled = true;
        clearTimeout(overall);
        clearTimeout(connect);
        for (const s of sockets) s.removeListener("error", onSocketError);
        if (!clean) {
          req?.destroy();
          for (const s of sockets) s.destroy();
        }
        resolve(o);
      };
      // Both bounds cover DNS, the proxy, TCP and TLS as well as the answer.
      const overall = unrefTimer(() => finish(onTimeout, false), Math.max(0, timeoutMs));
      const connect = unrefTimer(() => finish(RETRY, false), Math.max(0, Math.min(this.connectTimeoutMs, timeoutMs)));
      const connected = (): void => clearTimeout(connect);
      const track = (s: net.Socket): void => {
        s.unref();
        sockets.push(s);
        s.on("error", onSocketError);
      };
      const headers: http.OutgoingHttpHeaders = {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "Content-Length": body.length,
        Authorization: this.authorization,
        "User-Agent": `opentally-node/${VERSION}`,
      };
      const onResponse = (res: http.IncomingMessage): void => {
        connected();
        const outcome = classify(res.statusCode ?? 0, res.headers["retry-after"]);
        res.on("error", () => finish(outcome, false));
        if (outcome.kind !== "delivered") {
          res.on("end", () => finish(outcome, true));
          res.resume();
          return;
        }
        // A delivery's answer may carry the collector's remote control. One too long to be a
        // collector's, or cut short, teaches nothing, and the batch is not sent again.
        onTimeout = outcome;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_ANSWER_BYTES) finish(outcome, false);
          else chunks.push(chunk);
        });
        res.on("end", () => finish(readReply(Buffer.concat(chunks).toString("utf8")), true));
        // Closed before its end: delivered, and nothing learnt (a no-op once it ended).
        res.on("close", () => finish(outcome, false));
      };
      try {
        if (proxy !== undefined && this.url.protocol === "https:") {
          this.tunnel(headers, body, track, connected, onResponse, finish, (r) => (req = r), () => finish(onTimeout, false));
          return;
        }
        const viaProxy = proxy;
        const target = viaProxy ?? this.url;
        const mod = target.protocol === "https:" ? https : http;
        if (viaProxy !== undefined && viaProxy.username !== "") {
          headers["Proxy-Authorization"] = basic(decodeURIComponent(viaProxy.username), decodeURIComponent(viaProxy.password));
        }
        req = mod.request({
          protocol: target.protocol,
          hostname: target.hostname.replace(/^\[|\]$/g, ""),
          port: target.port === "" ? defaultPort(target.protocol) : Number(target.port),
          // Through a plain HTTP proxy the request names the whole URL.
          path: viaProxy !== undefined ? this.url.href : this.url.pathname + this.url.search,
          method: "POST",
          headers,
          agent: target.protocol === "https:" ? this.agents.https : this.agents.http,
          servername: target.protocol === "https:" ? target.hostname : undefined,
        });
        req.on("socket", (s) => {
          track(s);
          // A reused connection is connected already.
          if (s.connecting) s.once(target.protocol === "https:" ? "secureConnect" : "connect", connected);
          else connected();
        });
        req.on("response", onResponse);
        // After a 2xx status an error (an answer cut short) is still a delivery.
        req.on("error", () => finish(onTimeout, false));
        req.end(body);
      } catch {
        finish(RETRY, false);
      }
    });
  }

  /** HTTPS through a proxy: `CONNECT host:port`, then TLS to the collector inside the tunnel. */
  private tunnel(
    headers: http.OutgoingHttpHeaders,
    body: Buffer,
    track: (s: net.Socket) => void,
    connected: () => void,
    onResponse: (res: http.IncomingMessage) => void,
    finish: (o: Outcome, clean: boolean) => void,
    setReq: (r: http.ClientRequest) => void,
    failed: () => void,
  ): void {
    const proxy = this.proxy as URL;
    const host = this.url.hostname.replace(/^\[|\]$/g, "");
    const port = this.url.port === "" ? 443 : Number(this.url.port);
    const authority = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
    const connectHeaders: http.OutgoingHttpHeaders = { Host: authority };
    if (proxy.username !== "") {
      connectHeaders["Proxy-Authorization"] = basic(decodeURIComponent(proxy.username), decodeURIComponent(proxy.password));
    }
    const mod = proxy.protocol === "https:" ? https : http;
    const connectReq = mod.request({
      hostname: proxy.hostname.replace(/^\[|\]$/g, ""),
      port: proxy.port === "" ? defaultPort(proxy.protocol) : Number(proxy.port),
      method: "CONNECT",
      path: authority,
      headers: connectHeaders,
      agent: false,
    });
    setReq(connectReq);
    connectReq.on("socket", track);
    connectReq.on("error", () => finish(RETRY, false));
    connectReq.on("response", (res) => {
      // A proxy that answers CONNECT with anything but a tunnel refused it: try again later.
      res.resume();
      finish(RETRY, false);
    });
    connectReq.on("connect", (res: http.IncomingMessage, socket: net.Socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        finish(RETRY, false);
        return;
      }
      track(socket);
      const secure = tls.connect(this.ca === undefined ? { socket, servername: host } : { socket, servername: host, ca: this.ca });
      track(secure);
      secure.once("secureConnect", connected);
      const req = https.request({
        hostname: host,
        port,
        path: this.url.pathname + this.url.search,
        method: "POST",
        headers,
        agent: false,
        createConnection: () => secure,
      });
      setReq(req);
      req.on("response", onResponse);
      req.on("error", failed);
      req.end(body);
    });
    connectReq.end();
  }
}

/**
 * `OPENTALLY_TELEMETRY=local`: each batch appended to a file in the app's state folder as JSON
 * lines (one message a line), never uploaded.
 */
export class LocalFile implements Transport {
  constructor(readonly file: string) {}

  send(body: Buffer): Promise<Outcome> {
    let batch: { batch?: unknown[] };
    try {
      batch = JSON.parse(gunzipSync(body).toString("utf8")) as { batch?: unknown[] };
    } catch {
      return Promise.resolve({ kind: "rejected", status: 0 });
    }
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      const lines = (batch.batch ?? []).map((m) => JSON.stringify(m) + "\n").join("");
      fs.appendFileSync(this.file, lines);
      return Promise.resolve({ kind: "delivered" });
    } catch {
      return Promise.resolve(RETRY);
    }
  }
}

// Shared test helpers: temporary homes, loopback collectors with scripted behaviour, the real
// `opentally` binary, and child processes that run a host script.
import { spawn, execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";

export const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), "..");
export const REPO = path.join(ROOT, "..", "..");
export const BIN = process.env.OPENTALLY_BIN;
export const NEEDS_BIN = BIN ? false : "OPENTALLY_BIN is not set: set it to an `opentally` binary to run this test";

/** A fresh folder standing in for a user's home: state, config, policy and a working folder. */
export class Home {
  constructor(name) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), `opentally-node-${name}-`));
    this.state = path.join(this.dir, "xdg-state", "opentally");
    this.configFile = path.join(this.dir, "xdg-config", "opentally", "config.toml");
    this.policyFile = path.join(this.dir, "etc", "opentally", "policy.toml");
    this.work = path.join(this.dir, "work");
    fs.mkdirSync(path.join(this.work, "sub", "dir"), { recursive: true });
  }
  /** The variables that point a process's OpenTally paths here. */
  env() {
    return {
      HOME: this.dir,
      XDG_STATE_HOME: path.join(this.dir, "xdg-state"),
      XDG_CONFIG_HOME: path.join(this.dir, "xdg-config"),
    };
  }
  /** Every file under the state folder. */
  stateFiles() {
    const out = [];
    const walk = (d) => {
      let entries;
      try {
        entries = fs.readdirSync(d, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else out.push(p);
      }
    };
    walk(this.state);
    return out;
  }
  /** The messages waiting in an app's spool, oldest first. */
  spooled(app) {
    const dir = path.join(this.state, app, "spool");
    let names = [];
    try {
      names = fs.readdirSync(dir).filter((n) => n.endsWith(".json.gz")).sort();
    } catch {
      return [];
    }
    return names.flatMap((n) => JSON.parse(gunzipSync(fs.readFileSync(path.join(dir, n))).toString()));
  }
  remove() {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export function write(file, text) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}

/** The environment of a child process: only what the test names (no CI, DO_NOT_TRACK… leaking in). */
export function cleanEnv(extra) {
  const keep = {};
  for (const k of ["PATH", "SYSTEMROOT", "TMPDIR", "TEMP", "TMP", "LANG"]) {
    if (process.env[k] !== undefined) keep[k] = process.env[k];
  }
  return { ...keep, ...extra };
}

/**
 * A collector on 127.0.0.1 that counts connections and bytes. `behaviour`: "accept" (answers 200
 * and keeps the decoded messages) or "blackhole" (accepts, never reads or answers).
 */
export async function sink(behaviour = "accept") {
  const state = { bytes: 0, connections: 0, messages: [], requests: [] };
  const sockets = new Set();
  const server = net.createServer((socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    if (behaviour === "blackhole") {
      socket.pause();
      return;
    }
    let buf = Buffer.alloc(0);
    socket.on("data", (d) => {
      state.bytes += d.length;
      buf = Buffer.concat([buf, d]);
      const head = buf.indexOf("\r\n\r\n");
      if (head < 0) return;
      const headers = buf.subarray(0, head).toString();
      const len = Number(/content-length:\s*(\d+)/i.exec(headers)?.[1] ?? 0);
      if (buf.length < head + 4 + len) return;
      const body = buf.subarray(head + 4, head + 4 + len);
      buf = buf.subarray(head + 4 + len);
      state.requests.push(headers);
      try {
        const batch = JSON.parse(gunzipSync(body).toString());
        state.messages.push(...batch.batch);
      } catch {
        // Not a batch: counted as bytes all the same.
      }
      socket.end("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    state,
    async waitFor(n, ms) {
      const until = Date.now() + ms;
      while (state.messages.length < n && Date.now() < until) await sleep(10);
      return state.messages;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(r));
    },
  };
}

/** A loopback URL on which nothing listens: connection refused. */
export async function refusedUrl() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const port = server.address().port;
  await new Promise((r) => server.close(r));
  return `http://127.0.0.1:${port}`;
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Runs a Node script; resolves with its exit code, output and wall time from spawn to exit. */
export function runNode(script, args, env, { timeoutMs = 30_000 } = {}) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, [script, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const kill = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(kill);
      resolve({ code, stdout, stderr, ms: Number(process.hrtime.bigint() - started) / 1e6 });
    });
  });
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Runs the `opentally` binary; returns its stdout. */
export function opentally(args, env) {
  return execFileSync(BIN, args, { env: env ?? process.env, encoding: "utf8", timeout: 60_000 });
}

async function freePort() {
  const server = net.createServer();
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const port = server.address().port;
  await new Promise((r) => server.close(r));
  return port;
}

/** `opentally serve` on loopback with a fresh data folder and an open-mode project. */
export async function collector(home) {
  const data = path.join(home.dir, "data");
  const key = JSON.parse(opentally(["project", "create", "node", "--json", "--data", data])).write_key;
  const port = await freePort();
  const log = fs.openSync(path.join(home.dir, "serve.log"), "w");
  const proc = spawn(BIN, ["serve", "--data", data, "--listen", `127.0.0.1:${port}`], { stdio: ["ignore", log, log] });
  const url = `http://127.0.0.1:${port}`;
  const until = Date.now() + 20_000;
  for (;;) {
    const ok = await new Promise((r) => {
      const req = http.get(url + "/readyz", (res) => {
        res.resume();
        r(res.statusCode === 200);
      });
      req.on("error", () => r(false));
      req.setTimeout(1000, () => req.destroy());
    });
    if (ok) break;
    if (Date.now() > until) throw new Error("opentally serve did not become ready in 20 s");
    await sleep(50);
  }
  return {
    url,
    key,
    data,
    /** Every event the collector stored, read back with `opentally dump`. */
    events() {
      return opentally(["dump", "--project", "node", "--data", data])
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l));
    },
    async stop() {
      if (proc.exitCode === null) {
        const done = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await done;
      }
    },
  };
}

/**
 * A plain HTTP forward proxy on loopback: forwards each request to its absolute URL and keeps the
 * messageIds of every batch that passed, so a test sees exactly what was sent, duplicates included.
 */
export async function recordingProxy() {
  const seen = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (d) => chunks.push(d));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      try {
        for (const m of JSON.parse(gunzipSync(body).toString()).batch) seen.push(m.messageId);
      } catch {
        // Not a batch.
      }
      const target = new URL(req.url);
      const fwd = http.request(
        { hostname: target.hostname, port: target.port, path: target.pathname, method: req.method, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode, up.headers);
          up.pipe(res);
        },
      );
      fwd.on("error", () => {
        res.writeHead(502);
        res.end();
      });
      fwd.end(body);
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    seen,
    close: () => {
      server.closeAllConnections?.();
      return new Promise((r) => server.close(r));
    },
  };
}

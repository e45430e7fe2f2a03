// The SDK in one process against a loopback collector: the wire format, what is never sent, the
// bounded queue, suppressed scopes, spans, inspect mode, the files shared with the `opentally`
// command, proxies, and the two module formats.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import { createRequire } from "node:module";
import * as net from "node:net";
import * as path from "node:path";
import { test } from "node:test";

import * as opentally from "../dist/esm/index.js";
import { Client } from "../dist/esm/index.js";
import { parseDotenv } from "../dist/esm/consent.js";
import { parseToml, stringifyToml } from "../dist/esm/toml.js";
import { bypassesProxy, caBundle, proxyFor } from "../dist/esm/transport.js";
import { BIN, Home, NEEDS_BIN, ROOT, cleanEnv, recordingProxy, runNode, sink, write } from "./helpers.mjs";

function client(home, url, extra = {}) {
  return new Client({
    app: "demo",
    version: "1.2.3",
    writeKey: "otw_k",
    endpoint: url,
    env: home.env(),
    cwd: home.work,
    stateDir: home.state,
    configFile: home.configFile,
    policyFile: home.policyFile,
    notice: false,
    ...extra,
  });
}

async function withClient(name, extra, fn) {
  const home = new Home(name);
  const collector = await sink("accept");
  const c = client(home, collector.url, extra);
  try {
    await fn(c, collector, home);
  } finally {
    c.close();
    await collector.close();
    home.remove();
  }
}

test("events carry the Segment wire format the collector expects", () =>
  withClient("wire", {}, async (c, collector) => {
    c.track("fit", { method: "cbpe", n: 3, ratio: 0.5, ok: true, data: new Map([["secret", 1]]), missing: undefined, bad: NaN });
    assert.equal(await c.flush(5000), true);
    const [m] = collector.state.messages;
    assert.equal(m.type, "track");
    assert.equal(m.event, "fit");
    // Objects are sent as their class name only; NaN as null; undefined not at all.
    assert.deepEqual(m.properties, { method: "cbpe", n: 3, ratio: 0.5, ok: true, data: "Map", bad: null });
    assert.equal(m.anonymousId, c.status().installId);
    assert.match(m.messageId, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.ok(Math.abs(Date.parse(m.timestamp) - Date.now()) < 10_000);
    assert.deepEqual(m.context.app, { name: "demo", version: "1.2.3" });
    assert.deepEqual(m.context.library, { name: "opentally-node", version: opentally.VERSION });
    assert.deepEqual(m.context.runtime, { name: "node", version: process.versions.node });
    assert.deepEqual(Object.keys(m.context.environment), ["ci", "docker", "kubernetes", "notebook", "cloud"]);
    assert.deepEqual(Object.keys(m.context.hardware), ["arch", "cpus", "memory_gb", "gpu"]);
    assert.match(m.context.session, /^[0-9a-f-]{36}$/);
    const request = collector.state.requests[0];
    assert.match(request, /^POST \/v1\/batch HTTP\/1\.1/);
    assert.match(request, /authorization: Basic b3R3X2s6/i, "the write key as the Basic auth user");
    assert.match(request, /content-encoding: gzip/i);
  }));

test("the library version matches package.json", () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8"));
  assert.equal(opentally.VERSION, pkg.version);
});

test("a full queue drops and counts, and track stays cheap", () =>
  withClient("full", { queueCapacity: 10, batchInterval: 60_000, batchSize: 1000 }, async (c, collector) => {
    const started = process.hrtime.bigint();
    for (let i = 0; i < 100_000; i++) c.track("spam", { i });
    const ns = Number(process.hrtime.bigint() - started) / 100_000;
    const { counters } = c.status();
    assert.equal(counters.queued, 10);
    assert.equal(counters.dropped, 99_990);
    assert.ok(ns < 5_000, `track took ${ns} ns`);
    await c.flush(5000);
    assert.equal(collector.state.messages.length, 10);
  }));

test("suppressed scopes record nothing, sync and async; concurrent work is still recorded", async () => {
  const home = new Home("suppressed");
  const collector = await sink("accept");
  assert.equal(
    opentally.init({
      app: "demo",
      writeKey: "k",
      endpoint: collector.url,
      env: home.env(),
      stateDir: home.state,
      configFile: home.configFile,
      policyFile: home.policyFile,
      notice: false,
    }),
    true,
  );
  assert.equal(opentally.init({ app: "other" }), false, "the first init wins");
  try {
    opentally.suppressed(() => opentally.track("hidden-sync"));
    const inside = opentally.suppressed(async () => {
      await new Promise((r) => setTimeout(r, 5));
      opentally.track("hidden-async");
    });
    opentally.track("visible");
    await inside;
    // Spans: sync and async, success and failure; the error reaches the caller unchanged.
    assert.equal(opentally.timed("sync-ok", () => 42), 42);
    const boom = new RangeError("a secret message");
    assert.throws(() => opentally.timed("sync-err", () => { throw boom; }), (e) => e === boom);
    assert.equal(await opentally.timed("async-ok", async () => "v"), "v");
    await assert.rejects(opentally.timed("async-err", async () => { throw new TypeError("secret too"); }), TypeError);
    const s = opentally.span("manual", { format: "html" });
    s.error(new SyntaxError("x"));
    s.ok(); // a span records once
    assert.equal(await opentally.flush(5000), true);
    const got = Object.fromEntries(collector.state.messages.map((m) => [m.event, m.properties]));
    assert.deepEqual(Object.keys(got).sort(), ["async-err", "async-ok", "manual", "sync-err", "sync-ok", "visible"]);
    assert.equal(got["sync-err"].outcome, "error");
    assert.equal(got["sync-err"].error_type, "RangeError");
    assert.equal(got["async-err"].error_type, "TypeError");
    assert.equal(got["async-ok"].outcome, "ok");
    assert.equal(got["manual"].format, "html");
    assert.equal(got["manual"].error_type, "SyntaxError");
    assert.ok(typeof got["sync-ok"].duration_ms === "number");
    assert.ok(!JSON.stringify(collector.state.messages).includes("secret"), "no error message ever leaves");
    // The CommonJS build sees the same global client.
    const cjs = createRequire(import.meta.url)("../dist/cjs/index.js");
    assert.equal(cjs.client(), opentally.client());
    cjs.track("from-cjs");
    assert.equal(await cjs.flush(5000), true);
    assert.ok(collector.state.messages.some((m) => m.event === "from-cjs"));
    // optOut() writes what `opentally opt-out --app demo` writes, and applies it at once.
    opentally.optOut();
    assert.equal(opentally.status().decision.mode, "off");
    assert.equal(opentally.status().decision.decidedBy, "user_config");
    assert.deepEqual(JSON.parse(JSON.stringify(parseToml(fs.readFileSync(home.configFile, "utf8")))), { apps: { demo: { telemetry: "off" } } });
    const before = collector.state.bytes;
    opentally.track("after-opt-out");
    await opentally.flush(200);
    assert.equal(collector.state.bytes, before);
  } finally {
    opentally.client().close();
    await collector.close();
    home.remove();
  }
});

test("inspect mode prints each event exactly as sent", async () => {
  const home = new Home("inspect");
  const collector = await sink("accept");
  try {
    const env = cleanEnv({ ...home.env(), OPENTALLY_LOG: "1", OPENTALLY_ENDPOINT: collector.url });
    const r = await runNode(path.join(ROOT, "test", "fixtures", "cli.mjs"), ["flush", "2"], env);
    assert.equal(r.code, 0, r.stderr);
    const printed = r.stderr.split("\n").filter((l) => l.startsWith("opentally: ")).map((l) => JSON.parse(l.slice(11)));
    assert.equal(printed.length, 2);
    assert.deepEqual(printed, collector.state.messages);
  } finally {
    await collector.close();
    home.remove();
  }
});

test("dotenv lines are read as dotenv tools write them", () => {
  assert.deepEqual(
    { ...parseDotenv('# c\nexport A="x # y"\nB=\'q\'\nC=plain # comment\r\nbad line\n D = 1 \n') },
    { A: "x # y", B: "q", C: "plain", D: "1" },
  );
});

test("TOML: what the reader accepts, refuses, and the writer writes", () => {
  const t = parseToml('# c\ntelemetry = "off" # note\n[apps."my app"]\ntelemetry = \'on\'\n[apps.x]\nn = [1, 2,\n 3]\ni = { a = true }\n');
  assert.deepEqual(JSON.parse(JSON.stringify(t)), { telemetry: "off", apps: { "my app": { telemetry: "on" }, x: { n: [1, 2, 3], i: { a: true } } } });
  for (const bad of ["telemetry = [", "telemetry = off", "a = 1\na = 2", "[x]\n[x]", "telemetry = \"unclosed"]) {
    assert.throws(() => parseToml(bad), undefined, bad);
  }
  assert.equal(stringifyToml(parseToml('telemetry = "on"\n[apps."my app"]\ntelemetry = "off"\n')), 'telemetry = "on"\n\n[apps."my app"]\ntelemetry = "off"\n');
});

test("NO_PROXY: names, suffixes, ports and *", () => {
  assert.equal(bypassesProxy("collector.example.org", 443, "example.org"), true);
  assert.equal(bypassesProxy("collector.example.org", 443, ".example.org"), true);
  assert.equal(bypassesProxy("notexample.org", 443, "example.org"), false);
  assert.equal(bypassesProxy("127.0.0.1", 8080, "127.0.0.1:9090"), false);
  assert.equal(bypassesProxy("127.0.0.1", 8080, "localhost, 127.0.0.1:8080"), true);
  assert.equal(bypassesProxy("anything", 80, "*"), true);
  assert.equal(bypassesProxy("[::1]", 8080, "[::1]:8080"), true);
  assert.equal(bypassesProxy("[::1]", 8080, "[::1]:9090"), false);
  assert.equal(bypassesProxy("[::1]", 8080, "::1"), true);
  assert.equal(bypassesProxy("anything", 80, undefined), false);
});

test("a proxy the package cannot use is never gone around", () => {
  const target = new URL("https://collector.example.org/v1/batch");
  assert.equal(proxyFor(target, { ALL_PROXY: "socks5h://127.0.0.1:9050" }), "unusable");
  assert.equal(proxyFor(target, { HTTPS_PROXY: "ftp://127.0.0.1:1" }), "unusable");
  assert.equal(proxyFor(target, { HTTPS_PROXY: "http://[bad" }), "unusable");
  assert.equal(proxyFor(target, { HTTPS_PROXY: "127.0.0.1:3128" })?.href, "http://127.0.0.1:3128/");
  assert.equal(proxyFor(target, { HTTPS_PROXY: "socks5://x", NO_PROXY: "example.org" }), undefined);
});

test("the CA bundle is read as the Rust SDK reads it", () => {
  const home = new Home("ca");
  try {
    const ours = path.join(home.dir, "ours.pem");
    const system = path.join(home.dir, "system.pem");
    write(ours, "OURS");
    write(system, "SYSTEM");
    assert.equal(caBundle({ OPENTALLY_CA_BUNDLE: ours, SSL_CERT_FILE: system }).toString(), "OURS");
    assert.equal(caBundle({ SSL_CERT_FILE: system }).toString(), "SYSTEM");
    assert.equal(caBundle({}), undefined);
    // A bundle that cannot be read trusts nothing rather than everything Node trusts.
    assert.equal(caBundle({ OPENTALLY_CA_BUNDLE: path.join(home.dir, "missing.pem") }).length, 0);
  } finally {
    home.remove();
  }
});

test("HTTP_PROXY carries the batch; NO_PROXY goes around it", async () => {
  for (const bypass of [false, true]) {
    const home = new Home("proxy");
    const collector = await sink("accept");
    const proxy = await recordingProxy();
    const env = { ...home.env(), HTTP_PROXY: proxy.url, ...(bypass ? { NO_PROXY: "127.0.0.1" } : {}) };
    const c = client(home, collector.url, { env });
    try {
      c.track("via-proxy");
      assert.equal(await c.flush(5000), true);
      assert.equal(collector.state.messages.length, 1);
      assert.equal(proxy.seen.length, bypass ? 0 : 1);
    } finally {
      c.close();
      await proxy.close();
      await collector.close();
      home.remove();
    }
  }
});

test("HTTPS_PROXY: the request goes through an HTTP CONNECT tunnel", async () => {
  // A CONNECT proxy that only records the tunnel it was asked for and then refuses to carry
  // anything: TLS to a real collector would need a certificate the test cannot issue.
  const asked = [];
  const server = http.createServer();
  server.on("connect", (req, socket) => {
    asked.push(req.url);
    socket.end("HTTP/1.1 403 Forbidden\r\n\r\n");
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const home = new Home("connect");
  const c = client(home, "https://collector.example.org", {
    env: { ...home.env(), HTTPS_PROXY: `http://127.0.0.1:${server.address().port}` },
    maxAttempts: 1,
  });
  try {
    c.track("tunnelled");
    assert.equal(await c.flush(3000), false);
    assert.deepEqual(asked, ["collector.example.org:443"]);
    assert.equal(c.status().counters.retried, 1, "a refused tunnel is a failure to retry, counted");
  } finally {
    c.close();
    server.close();
    home.remove();
  }
});

test("the install id and the user's opt-out are the ones the opentally command sees", { skip: NEEDS_BIN }, () =>
  withClient("same-files", {}, async (c, collector, home) => {
    const env = cleanEnv(home.env());
    const cli = (args) => execFileSync(BIN, args, { env, encoding: "utf8" });
    // The Node client's state folder is the platform default here, as the command's is.
    const node = new Client({ app: "demo", env: home.env(), cwd: home.work, notice: false, endpoint: collector.url });
    try {
      const fromNode = node.status().installId;
      const fromCli = JSON.parse(cli(["status", "--app", "demo", "--json"])).install_id;
      assert.equal(fromNode, fromCli);
      cli(["opt-out", "--app", "demo"]);
      node.reloadConsent();
      assert.equal(node.status().decision.decidedBy, "user_config");
      assert.equal(node.status().decision.mode, "off");
      cli(["opt-in", "--app", "demo"]);
      node.reloadConsent();
      assert.equal(node.status().decision.mode, "on");
      node.setUserChoice(false);
      const seen = JSON.parse(cli(["status", "--app", "demo", "--json"])).decision;
      assert.equal(seen.mode, "off");
      assert.equal(seen.decided_by, "user_config");
    } finally {
      node.close();
    }
  }));

test("when off, status shows no invented id and writes nothing", () =>
  withClient("off-status", { enabled: false }, async (c, collector, home) => {
    c.track("x");
    const s = c.status();
    assert.equal(s.decision.mode, "off");
    assert.deepEqual(home.stateFiles(), []);
    assert.equal(collector.state.connections, 0);
  }));

test("the first-run notice is the Rust SDK's text and needs a terminal", async () => {
  const { defaultNotice } = await import("../dist/esm/notice.js");
  assert.equal(
    defaultNotice("hello", ["HELLO_NO_TELEMETRY"]),
    "hello collects anonymous usage statistics (which features run, how long they take, whether they fail, and the kind of environment) to improve hello. No names, paths, data or IP addresses. See what is sent: OPENTALLY_LOG=1. Turn it off: `opentally opt-out --app hello`, DO_NOT_TRACK=1, HELLO_NO_TELEMETRY=1. This notice is shown once.",
  );
  // Not a terminal (a pipe here): nothing printed, no marker written.
  const home = new Home("notice");
  try {
    const r = await runNode(path.join(ROOT, "test", "fixtures", "cli.mjs"), ["track", "1", "0"], cleanEnv({ ...home.env(), OPENTALLY_ENDPOINT: await (await import("./helpers.mjs")).refusedUrl() }));
    assert.equal(r.stderr, "");
    assert.ok(!fs.existsSync(path.join(home.state, "clitest", "notice-shown")));
  } finally {
    home.remove();
  }
});

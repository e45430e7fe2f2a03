// A real CLI process: telemetry never holds its exit, whatever the collector does, and what could
// not be sent waits in the spool for the next process, which delivers it exactly once.
import assert from "node:assert/strict";
import * as path from "node:path";
import { test } from "node:test";

import { Home, NEEDS_BIN, ROOT, cleanEnv, collector, median, recordingProxy, refusedUrl, runNode, sink } from "./helpers.mjs";

const CLI = path.join(ROOT, "test", "fixtures", "cli.mjs");
const RUNS = 5;
// Generous for a loaded machine, far below every timeout that could hold an exit (connect 2 s,
// request 5 s, exit budget 1 s).
const SLACK_MS = 100;

function cliEnv(home, endpoint, extra = {}) {
  return cleanEnv({ ...home.env(), OPENTALLY_ENDPOINT: endpoint, OPENTALLY_WRITE_KEY: "otw_test", ...extra });
}

test("a CLI exits as fast with telemetry as without, whatever the collector does", async () => {
  const blackhole = await sink("blackhole");
  const faults = [
    ["black hole (accepts, never answers)", blackhole.url],
    ["connection refused", await refusedUrl()],
    ["unresolvable name", "http://opentally.invalid"],
  ];
  const homes = [];
  const times = { baseline: [] };
  for (const [name] of faults) times[name] = [];
  try {
    // Interleaved, so that a slow moment of the machine hits every variant alike.
    for (let i = 0; i < RUNS; i++) {
      const base = new Home("exit-base");
      homes.push(base);
      const b = await runNode(CLI, ["baseline"], cliEnv(base, blackhole.url));
      assert.equal(b.code, 0, b.stderr);
      times.baseline.push(b.ms);
      for (const [name, url] of faults) {
        const home = new Home("exit");
        homes.push(home);
        const r = await runNode(CLI, ["track"], cliEnv(home, url));
        assert.equal(r.code, 0, `${name}: ${r.stderr}`);
        assert.equal(r.stdout, "done\n");
        assert.equal(r.stderr, "", `${name}: telemetry printed nothing`);
        times[name].push(r.ms);
        // Nothing lost: the event waits in the spool.
        assert.equal(home.spooled("clitest").length, 1, `${name}: the event is spooled`);
      }
    }
    const base = median(times.baseline);
    const report = Object.entries(times).map(([k, v]) => `${k}: median ${median(v).toFixed(0)} ms`);
    process.stdout.write(`# exit times: ${report.join("; ")}\n`);
    assert.ok(blackhole.state.connections > 0, "the black hole was reached: the request was in flight at exit");
    for (const [name] of faults) {
      const extra = median(times[name]) - base;
      assert.ok(extra < SLACK_MS, `${name}: exit took ${extra.toFixed(0)} ms longer than without telemetry`);
    }
  } finally {
    await blackhole.close();
    for (const h of homes) h.remove();
  }
});

test("process.exit() right after track loses nothing: the events are spooled", async () => {
  const home = new Home("hard-exit");
  const blackhole = await sink("blackhole");
  try {
    const r = await runNode(CLI, ["exit", "3"], cliEnv(home, blackhole.url));
    assert.equal(r.code, 0, r.stderr);
    const spooled = home.spooled("clitest");
    assert.deepEqual(spooled.map((m) => m.properties.i), [0, 1, 2]);
    assert.equal(spooled[0].type, "track");
    assert.equal(spooled[0].event, "command");
  } finally {
    await blackhole.close();
    home.remove();
  }
});

test("an exit budget of 0 keeps nothing", async () => {
  const home = new Home("zero-budget");
  try {
    const script = path.join(home.dir, "zero.mjs");
    const { writeFileSync } = await import("node:fs");
    writeFileSync(
      script,
      `const o = await import(${JSON.stringify(path.join(ROOT, "dist", "esm", "index.js"))});\n` +
        `o.init({ app: "clitest", flushTimeout: 0 }); o.track("command"); process.exit(0);\n`,
    );
    const r = await runNode(script, [], cliEnv(home, await refusedUrl()));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(home.spooled("clitest"), []);
  } finally {
    home.remove();
  }
});

test("offline events are delivered by the next process, exactly once", { skip: NEEDS_BIN }, async () => {
  const home = new Home("offline");
  const server = await collector(home);
  const proxy = await recordingProxy();
  try {
    // Offline: the collector's port refuses; the two events wait in the spool.
    const offline = await runNode(CLI, ["exit", "2"], cliEnv(home, await refusedUrl()));
    assert.equal(offline.code, 0, offline.stderr);
    const waiting = home.spooled("clitest").map((m) => m.messageId);
    assert.equal(waiting.length, 2);
    // `opentally status` sees the Node app's spool: one format for every SDK.
    const status = JSON.parse(
      (await import("node:child_process")).execFileSync(process.env.OPENTALLY_BIN, ["status", "--app", "clitest", "--json"], {
        env: cliEnv(home, server.url),
        encoding: "utf8",
      }),
    );
    assert.equal(status.spool_files, 1);
    // Online, through a proxy that records every message id on the wire.
    const env = cliEnv(home, server.url, { OPENTALLY_WRITE_KEY: server.key, HTTP_PROXY: proxy.url });
    const online = await runNode(CLI, ["flush", "1"], env);
    assert.equal(online.code, 0, online.stderr);
    assert.equal(JSON.parse(online.stdout.split("\n")[0]).flushed, true);
    assert.deepEqual(home.spooled("clitest"), [], "the spool is empty once delivered");
    // A third process sends only its own event.
    const third = await runNode(CLI, ["flush", "1"], env);
    assert.equal(third.code, 0, third.stderr);
    const onWire = proxy.seen;
    assert.equal(onWire.length, 4, `2 spooled + 1 + 1: ${onWire}`);
    assert.equal(new Set(onWire).size, 4, "no message sent twice");
    for (const id of waiting) assert.ok(onWire.includes(id));
    const stored = server.events().filter((e) => e.context.app.name === "clitest");
    assert.equal(stored.length, 4);
    assert.deepEqual(new Set(stored.map((e) => e.messageId)), new Set(onWire));
  } finally {
    await proxy.close();
    await server.stop();
    home.remove();
  }
});

test("a live collector stores each event exactly once, without an explicit flush", { skip: NEEDS_BIN }, async () => {
  const home = new Home("live");
  const server = await collector(home);
  const proxy = await recordingProxy();
  try {
    // The host works for 1.5 s after tracking: its events leave meanwhile, nothing is spooled.
    const env = cliEnv(home, server.url, { OPENTALLY_WRITE_KEY: server.key, HTTP_PROXY: proxy.url });
    const r = await runNode(CLI, ["track", "5", "1500"], env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(home.spooled("clitest"), []);
    assert.equal(proxy.seen.length, 5);
    assert.equal(new Set(proxy.seen).size, 5);
    const stored = server.events().filter((e) => e.context.app.name === "clitest");
    assert.deepEqual(stored.map((e) => e.properties.i).sort(), [0, 1, 2, 3, 4]);
    const e = stored[0];
    assert.equal(e.event, "command");
    assert.equal(e.context.library.name, "opentally-node");
    assert.equal(e.context.runtime.name, "node");
    assert.equal(e.context.app.version, "1.0.0");
  } finally {
    await proxy.close();
    await server.stop();
    home.remove();
  }
});

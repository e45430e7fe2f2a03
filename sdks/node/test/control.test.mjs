// The collector's remote controls as the Node SDK obeys them: the same sample points as the
// collector, and a kill switch set with `opentally project set-collection` on a real collector.
import assert from "node:assert/strict";
import * as http from "node:http";
import * as path from "node:path";
import { test } from "node:test";
import { gzipSync } from "node:zlib";

import { samplePoint } from "../dist/esm/index.js";
import { readReply } from "../dist/esm/control.js";
import { BIN, Home, NEEDS_BIN, ROOT, cleanEnv, collector, opentally, runNode, sleep, write } from "./helpers.mjs";

test("sample points are the ones the collector and the Rust SDK compute", () => {
  // opentally_protocol::control's pinned values.
  assert.equal(samplePoint("0f6c2a1e-8c3b-4f5d-9a7e-2b1c3d4e5f60").toFixed(12), "0.942685339496");
  assert.equal(samplePoint("a").toFixed(12), "0.878701247056");
});

test("only a collector's answer with a fraction for a sample is read, as in the Rust SDK", () => {
  assert.deepEqual(readReply('{"ok":true,"control":{"collect":false}}'), {
    kind: "delivered",
    answered: true,
    control: { collect: false },
  });
  assert.deepEqual(readReply('{"ok":true,"accepted":3}'), { kind: "delivered", answered: true });
  for (const strange of [
    '{"control":{"collect":false}}',
    '{"ok":false,"control":{"collect":false}}',
    '{"ok":true,"control":{"collect":"no"}}',
    '{"ok":true,"control":{"sample":-1e308}}',
    '{"ok":true,"control":{"sample":1.5}}',
    '{"ok":true,"control":[]}',
    "<html>proxy error</html>",
    "",
  ]) {
    assert.deepEqual(readReply(strange), { kind: "delivered", answered: false }, strange);
  }
});

/** One raw batch from app version `version`; resolves with the collector's answer. */
function post(c, version) {
  const body = gzipSync(
    JSON.stringify({
      batch: [{ type: "track", event: "probe", anonymousId: "probe", context: { app: { name: "ctl", version } } }],
    }),
  );
  return new Promise((resolve, reject) => {
    const req = http.request(
      c.url + "/v1/batch",
      { method: "POST", headers: { "Content-Type": "application/json", "Content-Encoding": "gzip", "X-Write-Key": c.key } },
      (res) => {
        let text = "";
        res.on("data", (d) => (text += d));
        res.on("end", () => resolve(JSON.parse(text)));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const SEND = `
import * as opentally from ${JSON.stringify(path.join(ROOT, "dist", "esm", "index.js"))};
const [url, key, version] = process.argv.slice(2);
opentally.init({ app: "ctl", version, writeKey: key, endpoint: url, notice: false });
for (let round = 0; round < 2; round++) {
  for (let i = 0; i < 3; i++) opentally.track("fit", { n: i });
  await opentally.flush(3000);
}
const s = opentally.status();
console.log(JSON.stringify({ counters: s.counters, control: s.control, spoolFiles: s.spoolFiles }));
`;

test("a kill switch stops a Node process after its next batch and binds the next one", { skip: NEEDS_BIN }, async () => {
  const home = new Home("control");
  const c = await collector(home);
  try {
    const out = opentally(["project", "set-collection", "node", "--version", "<2", "--off", "--data", c.data]);
    assert.match(out, /<2\s+off/);
    // The collector reads the project database every second: wait (bounded) until it answers so.
    let answer;
    for (let i = 0; i < 100; i++) {
      answer = await post(c, "1.0");
      if (answer.control !== undefined) break;
      await sleep(50);
    }
    assert.deepEqual(answer.control, { collect: false });
    const script = path.join(home.dir, "send.mjs");
    write(script, SEND);
    const env = cleanEnv(home.env());
    const run = async (version) => {
      const r = await runNode(script, [c.url, c.key, version], env);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout.trim().split("\n").at(-1));
    };
    const first = await run("1.0");
    assert.equal(first.control.collect, false);
    assert.equal(first.control.appVersion, "1.0");
    assert.equal(first.counters.sent, 3, "the batch that asked");
    assert.equal(first.spoolFiles, 0);
    const second = await run("1.0");
    assert.equal(second.counters.sent, 0, "the next process sends nothing");
    assert.equal(second.counters.withheld, 3, "queued before the remembered stop was read, then dropped");
    // The Rust command reads the Node app's state as its own.
    const status = opentally(["status", "--app", "ctl"], env);
    assert.match(status, /control: {5}collection stopped for version 1\.0/);
    const upgraded = await run("2.0");
    assert.equal(upgraded.counters.sent, 6);
    assert.equal(upgraded.control, null, "an answer without control clears it");
    const stored = c.events();
    assert.equal(stored.length, 6);
    assert.ok(stored.every((e) => e.context.app.version === "2.0"));
  } finally {
    await c.stop();
    home.remove();
  }
});

// Every row of the consent table shared by all SDKs (tests/consent-cases.json): the decision and
// the deciding source; a refusal sends zero bytes to a collector and writes no state, local mode
// writes only its local file, and a consent does deliver (so the zero-byte checks can fail).
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

import { Client } from "../dist/esm/index.js";
import { Home, REPO, sink, write } from "./helpers.mjs";

const table = JSON.parse(fs.readFileSync(path.join(REPO, "tests", "consent-cases.json"), "utf8"));

/** Builds the client a row describes, the way an app would, pointed at `url`. */
function setUp(home, row, url) {
  const files = {
    policy: home.policyFile,
    user_config: home.configFile,
    dotenv: path.join(home.work, "sub", "dir", ".env"),
    parent_dotenv: path.join(home.work, ".env"),
  };
  for (const [what, text] of Object.entries(row.files)) {
    assert.ok(files[what], `unknown file kind ${what}`);
    write(files[what], text);
  }
  const c = row.config;
  const client = new Client({
    app: table.app,
    writeKey: "otw_test",
    endpoint: url,
    env: { ...home.env(), ...row.env },
    cwd: path.join(home.work, "sub", "dir"),
    stateDir: home.state,
    configFile: home.configFile,
    policyFile: home.policyFile,
    enabled: c.enabled,
    default: c.default,
    offInCi: c.off_in_ci,
    disableEnv: c.disable_env,
    enableEnv: c.enable_env,
    notice: false,
    batchInterval: 10,
  });
  switch (row.after_init) {
    case null:
    case undefined:
      break;
    case "disable":
      client.setEnabled(false);
      break;
    case "enable":
      client.setEnabled(true);
      break;
    case "opt_out":
      client.setUserChoice(false);
      break;
    case "opt_in":
      client.setUserChoice(true);
      break;
    default:
      assert.fail(`unknown after_init ${row.after_init}`);
  }
  return client;
}

test("the consent table has rows for every source and every outcome", () => {
  const by = new Set(table.cases.map((r) => r.expect.decided_by));
  for (const s of ["system_policy", "code", "do_not_track", "opentally_telemetry", "app_variable", "dot_env", "user_config", "default"]) {
    assert.ok(by.has(s), `no row decided by ${s}`);
  }
  const modes = new Set(table.cases.map((r) => r.expect.mode));
  assert.deepEqual([...modes].sort(), ["local", "off", "on"]);
});

for (const row of table.cases) {
  test(`consent: ${row.name} → ${row.expect.mode} by ${row.expect.decided_by}`, async () => {
    const home = new Home("consent");
    const collector = await sink("accept");
    const client = setUp(home, row, collector.url);
    try {
      for (let i = 0; i < 5; i++) client.track("fit", { method: "cbpe", i });
      await client.flush(2000);
      const { decision, counters } = client.status();
      assert.equal(decision.mode, row.expect.mode, JSON.stringify(decision.sources, null, 1));
      assert.equal(decision.decidedBy, row.expect.decided_by, JSON.stringify(decision.sources, null, 1));
      // Every source is reported, in order.
      assert.deepEqual(
        decision.sources.map((s) => s.source),
        ["system_policy", "code", "do_not_track", "opentally_telemetry", "app_variable", "dot_env", "user_config", "default"],
      );
      if (row.expect.mode === "off") {
        assert.equal(collector.state.connections, 0, "no connection when refused");
        assert.equal(collector.state.bytes, 0, "zero bytes when refused");
        assert.deepEqual(home.stateFiles(), [], "no state written when refused");
        assert.equal(counters.queued, 0);
      } else if (row.expect.mode === "local") {
        assert.equal(collector.state.connections, 0, "local mode opens no socket");
        const lines = fs.readFileSync(path.join(home.state, table.app, "events.jsonl"), "utf8").trim().split("\n");
        assert.equal(lines.length, 5);
        assert.equal(JSON.parse(lines[0]).event, "fit");
      } else {
        const got = await collector.waitFor(5, 5000);
        assert.equal(got.length, 5, "a consent delivers");
        assert.deepEqual(got.map((m) => m.properties.i), [0, 1, 2, 3, 4]);
      }
    } finally {
      client.close();
      await collector.close();
      home.remove();
    }
  });
}

// track() cost: opentally against @segment/analytics-node and posthog-node, in one process and
// one run, each sending to the same loopback collector (argv[2]).
//
// Two figures per client:
//   call:  time spent inside track() itself, as the caller sees it;
//   total: CPU time of the whole process per event, from the first track() until every event has
//          been handed to the collector (batching, serialising, compressing, HTTP), so work a
//          client defers to promises or timers is counted too.
// Rounds alternate between the clients so that a noisy moment of the machine hits all of them.
import { Analytics } from "@segment/analytics-node";
import { PostHog } from "posthog-node";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import * as opentally from "../../sdks/node/dist/esm/index.js";

const url = process.argv[2];
const ROUNDS = 7;
const CHUNK = 500; // events tracked back to back, then the event loop gets a turn
const CHUNKS = 20; // 10,000 events per client per round
const props = { command: "build", flags: 3, cached: true };

const state = fs.mkdtempSync(path.join(os.tmpdir(), "opentally-bench-"));
opentally.init({
  app: "bench",
  version: "1.0.0",
  writeKey: "otw_bench",
  endpoint: url,
  stateDir: state,
  configFile: path.join(state, "config.toml"),
  policyFile: path.join(state, "policy.toml"),
  env: { HOME: state },
  notice: false,
});
const segment = new Analytics({ writeKey: "bench", host: url, maxEventsInBatch: 100, flushInterval: 2000 });
const posthog = new PostHog("phc_bench", { host: url, flushAt: 100, flushInterval: 2000 });

// Each call gets its own properties object, built before the timed loop: the figures are the
// clients' own cost, not the caller's. Each client has its own loop, so that no client pays for a
// call site shared with the others.
const clients = {
  opentally: {
    loop(ps) {
      for (let i = 0; i < ps.length; i++) opentally.track("command", ps[i]);
    },
    settle: () => opentally.flush(10_000),
  },
  "@segment/analytics-node": {
    loop(ps) {
      for (let i = 0; i < ps.length; i++) segment.track({ anonymousId: "bench", event: "command", properties: ps[i] });
    },
    settle: () => segment.flush({ timeout: 10_000 }),
  },
  "posthog-node": {
    loop(ps) {
      for (let i = 0; i < ps.length; i++) posthog.capture({ distinctId: "bench", event: "command", properties: ps[i] });
    },
    settle: () => posthog.flush(),
  },
};

const turn = () => new Promise((r) => setImmediate(r));
const results = Object.fromEntries(Object.keys(clients).map((k) => [k, { call: [], total: [] }]));

for (let round = 0; round < ROUNDS; round++) {
  for (const [name, c] of Object.entries(clients)) {
    let callNs = 0n;
    const cpu0 = process.cpuUsage();
    for (let chunk = 0; chunk < CHUNKS; chunk++) {
      const ps = Array.from({ length: CHUNK }, (_, i) => ({ ...props, i }));
      const t0 = process.hrtime.bigint();
      c.loop(ps);
      callNs += process.hrtime.bigint() - t0;
      // Every client gets the same chance to send (and the same bound on what it holds).
      await turn();
      await c.settle();
    }
    const cpu = process.cpuUsage(cpu0);
    const n = CHUNK * CHUNKS;
    if (round > 0) {
      // The first round warms the JIT up and is not counted.
      results[name].call.push(Number(callNs) / n);
      results[name].total.push(((cpu.user + cpu.system) * 1000) / n);
    }
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const out = {};
for (const [name, r] of Object.entries(results)) {
  out[name] = { track_call_ns: Math.round(median(r.call)), cpu_per_event_ns: Math.round(median(r.total)) };
}
const ours = out.opentally;
const cheaper = (k) => Math.min(out["@segment/analytics-node"][k], out["posthog-node"][k]);
out.ratios = {
  track_call_vs_cheaper_other: +(cheaper("track_call_ns") / ours.track_call_ns).toFixed(1),
  cpu_per_event_vs_cheaper_other: +(cheaper("cpu_per_event_ns") / ours.cpu_per_event_ns).toFixed(1),
};
// Every opentally event was delivered (none dropped): the figures are of the full path.
const counters = opentally.status().counters;
out.opentally_counters = { sent: counters.sent, dropped: counters.dropped, expected: ROUNDS * CHUNK * CHUNKS };
process.stdout.write(JSON.stringify(out, null, 2) + "\n");
await segment.closeAndFlush({ timeout: 2000 });
await posthog.shutdown(2000);
fs.rmSync(state, { recursive: true, force: true });
process.exit(0);

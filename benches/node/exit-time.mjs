// Exit time of a one-event CLI (exit.mjs) against a black-hole collector (argv[2]), per client,
// against the same CLI without telemetry. Runs are interleaved; a run is stopped after 20 s.
import { spawn } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const url = process.argv[2];
const script = path.join(path.dirname(fileURLToPath(import.meta.url)), "exit.mjs");
const RUNS = 5;
const LIMIT_MS = 20_000;

function run(client) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(process.execPath, [script, client, url], { stdio: "ignore" });
    const kill = setTimeout(() => child.kill("SIGKILL"), LIMIT_MS);
    child.on("close", (code, signal) => {
      clearTimeout(kill);
      resolve({ ms: Number(process.hrtime.bigint() - t0) / 1e6, killed: signal === "SIGKILL", code });
    });
  });
}

const clients = ["none", "opentally", "segment", "posthog"];
const times = Object.fromEntries(clients.map((c) => [c, []]));
const killed = Object.fromEntries(clients.map((c) => [c, 0]));
for (let i = 0; i < RUNS; i++) {
  for (const c of clients) {
    const r = await run(c);
    times[c].push(r.ms);
    if (r.killed) killed[c]++;
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const out = { collector: "black hole", runs: RUNS };
for (const c of clients) out[c] = { exit_ms_median: Math.round(median(times[c])), stopped_at_20s: killed[c] };
const base = out.none.exit_ms_median;
const extra = (c) => Math.max(1, out[c].exit_ms_median - base);
out.extra_ms_over_no_telemetry = { opentally: out.opentally.exit_ms_median - base, segment: out.segment.exit_ms_median - base, posthog: out.posthog.exit_ms_median - base };
out.ratios = {
  segment_extra_vs_opentally_extra: +(extra("segment") / extra("opentally")).toFixed(1),
  posthog_extra_vs_opentally_extra: +(extra("posthog") / extra("opentally")).toFixed(1),
};
process.stdout.write(JSON.stringify(out, null, 2) + "\n");

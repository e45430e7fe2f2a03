// One CLI run as each client's documentation tells a CLI to end: track one event, then leave.
// argv: client, collector URL. The opentally variant adds nothing at the end: it never holds the
// process. The others are closed as their documentation says a short-lived program must be.
const [client, url] = process.argv.slice(2);
if (client === "none") {
  // The baseline: the same program without telemetry.
} else if (client === "opentally") {
  const opentally = await import("../../sdks/node/dist/esm/index.js");
  opentally.init({ app: "benchexit", writeKey: "otw_bench", endpoint: url, notice: false });
  opentally.track("command", { name: "build" });
} else if (client === "segment") {
  const { Analytics } = await import("@segment/analytics-node");
  const analytics = new Analytics({ writeKey: "bench", host: url });
  analytics.track({ anonymousId: "bench", event: "command", properties: { name: "build" } });
  await analytics.closeAndFlush();
} else if (client === "posthog") {
  const { PostHog } = await import("posthog-node");
  const posthog = new PostHog("phc_bench", { host: url });
  posthog.capture({ distinctId: "bench", event: "command", properties: { name: "build" } });
  await posthog.shutdown();
}
process.stdout.write("done\n");

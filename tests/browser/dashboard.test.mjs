// The dashboard in a real browser: Debian's chromium driven by Playwright, against a real
// `opentally serve` on loopback with a generated history. Sign-in, every page, the exports, the
// live view (an event sent with the write key appears), sign-out, token rotation and the sign-in
// rate limit.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const BIN = process.env.OPENTALLY_BIN;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CATALOG = path.resolve(import.meta.dirname, "../../examples/catalog.toml");

let dir, server, base, browser, demo, empty;

function cli(...args) {
  return execFileSync(BIN, [...args, "--data", path.join(dir, "data")], { encoding: "utf8" });
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitReady(url) {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(url + "/readyz");
      if (r.ok) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("the server did not become ready in 20 s");
}

before(async () => {
  assert.ok(BIN, "OPENTALLY_BIN names the opentally binary");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "opentally-browser-"));
  demo = JSON.parse(cli("project", "create", "demo", "--catalog", CATALOG, "--json"));
  empty = JSON.parse(cli("project", "create", "empty", "--json"));
  cli("demo", "generate", "--project", "demo", "--events", "20000", "--days", "60", "--quiet");
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(BIN, ["serve", "--data", path.join(dir, "data"), "--listen", `127.0.0.1:${port}`], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  await waitReady(base);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGTERM");
  if (server) await new Promise((r) => server.once("exit", r));
  fs.rmSync(dir, { recursive: true, force: true });
});

async function signIn(context, token) {
  const page = await context.newPage();
  await page.goto(base + "/dashboard");
  assert.match(page.url(), /\/login\?next=%2Fdashboard$/, "signed out, the dashboard sends to sign-in");
  await page.fill("#token", token);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  return page;
}

test("sign-in: a wrong token is told plainly, the right one opens a strict HttpOnly session", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(base + "/login");
  await page.fill("#token", "ota_not_a_token");
  const [resp] = await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  assert.equal(resp.status(), 401);
  assert.match(await page.textContent(".error"), /not the admin token of any project/);

  await page.fill("#token", demo.admin_token);
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);
  assert.equal(new URL(page.url()).pathname, "/dashboard");
  const cookie = (await context.cookies()).find((c) => c.name === "ot_session");
  assert.ok(cookie, "a session cookie is set");
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, "Strict");
  await context.close();
});

test("the overview draws its charts with their tables, fast, on a phone too", async () => {
  const context = await browser.newContext();
  const page = await signIn(context, demo.admin_token);
  const nav = await page.evaluate(() => {
    const n = performance.getEntriesByType("navigation")[0];
    return { response: n.responseEnd - n.requestStart, loaded: n.domContentLoadedEventEnd - n.startTime };
  });
  console.log(`# overview over 20,000 events: response ${nav.response.toFixed(1)} ms, DOM loaded ${nav.loaded.toFixed(1)} ms after navigation start`);
  const charts = await page.locator("figure.chart svg[role=img]").count();
  assert.ok(charts >= 6, `six charts or more, got ${charts}`);
  for (const h of ["Events and installs", "Active installs", "Version adoption", "Events by name", "Events by operating system", "Events by runtime"]) {
    assert.ok(await page.locator("h2", { hasText: h }).count(), h);
  }
  assert.equal(await page.locator(".error").count(), 0, "no panel failed");
  // The table beside a chart holds the events the generator made.
  const fitLink = page.locator("a", { hasText: /^fit$/ });
  assert.equal(await fitLink.count(), 1);

  // The range lives in the URL.
  await page.fill("input[name=since]", "14d");
  await page.selectOption("select[name=interval]", "week");
  await Promise.all([page.waitForNavigation(), page.click("form.filters button")]);
  assert.match(page.url(), /since=14d/);
  assert.match(page.url(), /interval=week/);
  assert.equal(await page.locator(".error").count(), 0);

  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways scrolling on a phone (${overflow} px too wide)`);
  await context.close();
});

test("per event: durations, errors and a breakdown; every table exports as CSV and JSON", async () => {
  const context = await browser.newContext();
  const page = await signIn(context, demo.admin_token);
  await Promise.all([page.waitForNavigation(), page.click("a:text-is('fit')")]);
  assert.equal(new URL(page.url()).searchParams.get("event"), "fit");
  await page.selectOption("select[name=by]", "os.name");
  await Promise.all([page.waitForNavigation(), page.click("form.filters button")]);
  assert.ok(await page.locator("h2", { hasText: "Calls by os.name" }).count());
  const durations = page.locator("section.panel", { hasText: "Durations (ms)" });
  assert.match(await durations.textContent(), /p95_ms/);
  assert.match(await durations.textContent(), /linux/);

  const csvHref = await durations.locator("a", { hasText: "CSV" }).first().getAttribute("href");
  const csv = await page.request.get(base + csvHref);
  assert.equal(csv.status(), 200);
  assert.match(csv.headers()["content-type"], /text\/csv/);
  const lines = (await csv.text()).trim().split("\n");
  assert.equal(lines[0], "event,os_name,calls,p50_ms,p95_ms,p99_ms,max_ms");
  assert.ok(lines.length >= 2);
  const jsonHref = await durations.locator("a", { hasText: "JSON" }).first().getAttribute("href");
  const json = await (await page.request.get(base + jsonHref)).json();
  assert.deepEqual(json.columns, lines[0].split(","));
  assert.equal(json.rows.length, lines.length - 1);

  // Without the session, the export is not given.
  const anon = await fetch(base + csvHref, { redirect: "manual" });
  assert.equal(anon.status, 303);
  await context.close();
});

test("retention, the funnel builder, paths and friction render their answers", async () => {
  const context = await browser.newContext();
  const page = await signIn(context, demo.admin_token);
  await page.goto(base + "/dashboard/retention?since=60d");
  assert.ok(await page.locator("table.heat tbody tr").count() >= 2, "cohort rows");
  await page.goto(base + "/dashboard/funnel");
  await page.fill("input[name=steps]", "fit,estimate,plot");
  await Promise.all([page.waitForNavigation(), page.click("form.filters button")]);
  const funnel = page.locator("section.panel", { hasText: "Funnel" });
  assert.match(await funnel.textContent(), /pct_of_first/);
  await page.goto(base + "/dashboard/paths?event=fit");
  assert.match(await page.locator("section.panel").first().textContent(), /next_event/);
  await page.goto(base + "/dashboard/friction");
  assert.equal(await page.locator("section.panel").count(), 3);
  assert.equal(await page.locator(".error").count(), 0);
  await page.goto(base + "/dashboard/funnel?steps=fit");
  assert.match(await page.textContent(".error"), /at least two/);
  await context.close();
});

test("the live view shows an event within a second of its ack", async () => {
  const context = await browser.newContext();
  const page = await signIn(context, demo.admin_token);
  await page.goto(base + "/dashboard/live?event=export");
  await page.waitForFunction(() => document.getElementById("live-status").textContent.startsWith("Watching"));
  const sent = Date.now();
  const r = await fetch(base + "/v1/track", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      authorization: "Basic " + Buffer.from(demo.write_key + ":").toString("base64"),
    },
    body: JSON.stringify({ event: "export", anonymousId: "live-test", properties: { format: "csv" } }),
  });
  const acked = Date.now();
  assert.equal(r.status, 200);
  assert.equal((await r.json()).accepted, 1);
  await page.waitForSelector("#live tbody tr", { timeout: 5000 });
  const seen = Date.now();
  console.log(`# live view: acked in ${acked - sent} ms, shown ${seen - acked} ms after the ack`);
  const row = await page.textContent("#live tbody tr");
  assert.match(row, /export/);
  assert.ok(!row.includes("live-test"), "the install id is shown hashed, never as sent");
  await context.close();
});

test("a new project gets the first-event instructions", async () => {
  const context = await browser.newContext();
  const page = await signIn(context, empty.admin_token);
  assert.match(await page.textContent("main"), /Send your first event/);
  assert.match(await page.textContent("main"), /\/v1\/track/);
  await context.close();
});

test("sign-out and token rotation end the session; repeated wrong tokens are slowed down", async () => {
  const context = await browser.newContext();
  const page = await signIn(context, demo.admin_token);
  await Promise.all([page.waitForNavigation(), page.click("nav button[type=submit]")]);
  assert.equal(new URL(page.url()).pathname, "/login");
  await page.goto(base + "/dashboard");
  assert.equal(new URL(page.url()).pathname, "/login");

  const again = await signIn(context, demo.admin_token);
  cli("project", "rotate-token", "demo");
  await again.goto(base + "/dashboard");
  assert.equal(new URL(again.url()).pathname, "/login", "a rotated token signs everyone out");

  let limited = null;
  for (let i = 0; i < 15 && !limited; i++) {
    await again.goto(base + "/login");
    await again.fill("#token", "ota_wrong");
    const [resp] = await Promise.all([again.waitForNavigation(), again.click("button[type=submit]")]);
    if (resp.status() === 429) limited = i;
  }
  // Ten wrong tokens are answered at once (the first test gave one), then one every six
  // seconds; past them, sign-in is refused for a minute.
  assert.ok(limited !== null && limited >= 9 && limited <= 12, `limited past ten wrong tokens (at ${limited})`);
  assert.match(await again.textContent(".error"), /Too many sign-in attempts/);
  await context.close();
});

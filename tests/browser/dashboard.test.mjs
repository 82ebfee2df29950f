// The dashboard in a real browser (Debian's chromium, driven by playwright-core): a running
// bulwark with an origin, live traffic (some of it failing), a rule that fires and a webhook
// receiver. The page must show live values in its charts and tables, silence an alert from
// its button, and the screenshot is kept under the test output directory.
//
//   BULWARK=build/release/bulwark OUT=build/test-output node tests/browser/dashboard.test.mjs
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import http from "node:http";
import net from "node:net";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const bulwarkBin = process.env.BULWARK || "build/release/bulwark";
const outDir = process.env.OUT || "build/test-output";
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
fs.mkdirSync(outDir, { recursive: true });

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function fail(msg) { throw new Error(msg); }

async function waitFor(what, fn, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try { last = await fn(); if (last) return last; } catch (e) { last = e.message; }
    await sleep(250);
  }
  fail(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bulwark-dashboard-"));
const children = [];
const servers = [];
let browser;

async function main() {
  // The origin: /fail answers 500, everything else 200 after a few milliseconds.
  const origin = http.createServer((req, res) => {
    setTimeout(() => {
      res.writeHead(req.url.startsWith("/fail") ? 500 : 200, { "Content-Type": "text/plain" });
      res.end("hello\n");
    }, 5 + Math.random() * 20);
  });
  servers.push(origin);
  await new Promise((r) => origin.listen(0, "127.0.0.1", r));
  const hooks = [];
  const receiver = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => { hooks.push(JSON.parse(body)); res.end(); });
  });
  servers.push(receiver);
  await new Promise((r) => receiver.listen(0, "127.0.0.1", r));

  const port = await freePort(), admin = await freePort();
  fs.writeFileSync(path.join(dir, "rules.yml"), `groups:
  - name: dashboard
    rules:
      - alert: BulwarkIsUp
        expr: up{job="bulwark"} == 1
        labels: {severity: warning}
        annotations: {summary: "bulwark {{ $labels.instance }} is up (a test alert)"}
`);
  fs.writeFileSync(path.join(dir, "am.yml"), `route:
  receiver: hook
  group_wait: 1s
  group_interval: 2s
receivers:
  - name: hook
    webhook_configs: [{url: "http://127.0.0.1:${receiver.address().port}/"}]
`);
  fs.writeFileSync(path.join(dir, "bulwark.yml"), `workers: 1
admin: {listen: "127.0.0.1:${admin}"}
access_log: {enabled: false}
observe:
  evaluation_interval: 1s
  rule_files: [rules.yml]
  alertmanager: {config_file: am.yml}
listeners:
  - listen: "127.0.0.1:${port}"
    routes: [{prefix: /, upstream: app}]
upstreams:
  app:
    servers: ["127.0.0.1:${origin.address().port}"]
vault:
  catalog: catalog.db
  storage: {disk: {path: store}}
  plans:
    configs:
      source: {type: command, command: [sh, -c, "seq 1 50000"]}
      encrypt: false
    broken:
      source: {type: command, command: [sh, -c, "echo no such database >&2; exit 2"]}
      encrypt: false
`);
  const log = fs.openSync(path.join(outDir, "dashboard-bulwark.log"), "w");
  // Its own state directory, where it generates the admin token the API and the page need.
  const stateDir = path.join(dir, "state");
  const b = spawn(bulwarkBin, ["serve", "-c", path.join(dir, "bulwark.yml")],
                  { stdio: ["ignore", log, log], env: { ...process.env, STATE_DIRECTORY: stateDir } });
  children.push(b);
  const token = await waitFor("the generated admin token", () =>
    fs.readFileSync(path.join(stateDir, "admin.token"), "utf8").trim());
  const auth = { Authorization: `Bearer ${token}` };
  const api = async (p) => {
    const r = await fetch(`http://127.0.0.1:${admin}${p}`, { headers: auth });
    if (!r.ok) throw new Error(`${p}: ${r.status}`);
    return r.json();
  };
  await waitFor("bulwark's admin API", () => api("/api/v1/observe/status"));
  if ((await fetch(`http://127.0.0.1:${admin}/api/v1/observe/status`)).status !== 401) {
    fail("the admin API answers without its token");
  }

  // Two backups, one failing: the backups panel shows both plans.
  for (const plan of ["configs", "broken"]) {
    const r = await fetch(`http://127.0.0.1:${admin}/api/v1/backups/run?plan=${plan}`, { method: "POST", headers: auth });
    if (r.status !== 202) fail(`backups/run?plan=${plan}: ${r.status}`);
  }

  // Traffic for the charts: a steady stream, one request in ten failing.
  let stop = false, sent = 0;
  const traffic = (async () => {
    while (!stop) {
      const url = `http://127.0.0.1:${port}/${sent % 10 === 0 ? "fail" : "ok"}/${sent}`;
      await fetch(url).then((r) => r.text()).catch(() => {});
      sent++;
      await sleep(15);
    }
  })();

  browser = await chromium.launch({ executablePath: browserPath, args: ["--no-sandbox", "--headless=new"] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  // The Content-Security-Policy allows the page's own script and style only: a violation would
  // show as a console error (and the page would not work).
  page.on("console", (m) => { if (m.type() === "error" && /Content.Security.Policy/i.test(m.text())) errors.push(m.text()); });
  const landing = await page.goto(`http://127.0.0.1:${admin}/`);
  if (!(landing.headers()["content-security-policy"] || "").includes("script-src 'sha256-")) fail("no CSP on the page");
  if (landing.headers()["x-frame-options"] !== "DENY") fail("the page may be framed");
  // It asks for the token once...
  await page.waitForSelector("#token-form:not([hidden])", { timeout: 20000 });
  await page.fill("#token-input", token);
  await page.click("#token-form button");
  await waitFor("three refreshes of the page", async () =>
    Number(await page.evaluate(() => document.body.dataset.refreshes || 0)) >= 3);
  // ...and keeps it: a reload does not ask again.
  await page.reload();
  await waitFor("refreshes after a reload", async () =>
    Number(await page.evaluate(() => document.body.dataset.refreshes || 0)) >= 1);
  if (await page.isVisible("#token-form")) fail("the page asked for the token again");

  // Charts: points drawn and a current value above zero.
  for (const id of ["rps", "errors", "p95"]) {
    await waitFor(`the ${id} chart to have points`, async () =>
      Number(await page.getAttribute(`#chart-${id}`, "data-points")) >= 2, 30000);
  }
  const rps = await waitFor("a request rate", async () => {
    const t = await page.textContent("#value-rps");
    return parseFloat(t) > 0 ? t : null;
  });
  const errRate = await waitFor("an error rate", async () => {
    const t = await page.textContent("#value-errors");
    return parseFloat(t) > 0 ? t : null;
  });
  const p95 = await page.textContent("#value-p95");
  if (!/ms|s$/.test(p95)) fail(`p95 shows ${p95}`);

  // The upstream table: the origin, up, with its request count growing.
  const first = Number(await page.textContent("#upstreams tbody tr td.requests"));
  if (await page.textContent("#upstreams tbody tr td.state") !== "up") fail("the origin is not shown up");
  await waitFor("the request count to grow", async () =>
    Number(await page.textContent("#upstreams tbody tr td.requests")) > first);

  // The firing alert, silenced from the page.
  await waitFor("the firing alert", async () =>
    (await page.textContent("#alerts tbody")).includes("BulwarkIsUp"));
  await waitFor("the alert's notification", () => hooks.length > 0);
  await page.click("#alerts tbody tr.alert button.silence");
  await waitFor("the silence in the table", async () =>
    (await page.textContent("#silences tbody")).includes("dashboard"));
  await waitFor("the alert shown silenced", async () =>
    (await page.textContent("#alerts tbody td.alert-state")).includes("silenced"));
  const silences = await api("/api/v2/silences");
  if (silences.length !== 1 || silences[0].status.state !== "active" || silences[0].createdBy !== "dashboard") {
    fail(`silences: ${JSON.stringify(silences)}`);
  }
  const amAlerts = await api("/api/v2/alerts");
  if (!amAlerts.some((a) => a.status.state === "suppressed")) fail("the alert is not suppressed");
  // The backups panel: the good plan with its sizes, the broken one failed.
  await waitFor("both plans in the backups panel", async () =>
    (await page.locator("#backups tbody tr.backup").count()) === 2);
  const good = await page.textContent('#backups tr[data-plan="configs"]');
  if (!good.includes("ok") || !good.includes("282.1 KiB →")) fail(`backups panel, configs: ${good}`);
  const bad = await page.textContent('#backups tr[data-plan="broken"]');
  if (!bad.includes("failed") || !bad.includes("never")) fail(`backups panel, broken: ${bad}`);
  await page.screenshot({ path: path.join(outDir, "dashboard.png"), fullPage: true });
  if (errors.length) fail(`page errors: ${errors.join("; ")}`);
  stop = true;
  await traffic;
  console.log(`dashboard: ok (rps ${rps}, errors ${errRate}, p95 ${p95}, ${sent} requests, screenshot ${path.join(outDir, "dashboard.png")})`);
}

let code = 0;
try {
  await main();
} catch (e) {
  console.error(`dashboard test FAILED: ${e.message}`);
  code = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  for (const c of children) c.kill("SIGTERM");
  for (const s of servers) s.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
process.exit(code);

// Drives dist/ in headless Chromium (Debian's, via playwright-core) against an RPC server.
//
//   node run.mjs --server http://127.0.0.1:8080 [--scenario NAME ...] [--refused NAME ...]
//
// Serves the page itself on 127.0.0.1:<free port> (another origin than the server, so every
// call is cross-origin and preflighted), runs each scenario in the page, and runs each
// --refused scenario from http://localhost:<port>, an origin the server must NOT allow.
// Prints one JSON object {allowedOrigin, refusedOrigin, results: {name: outcome}, refused: {...}}.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name) => args.flatMap((a, i) => (a === name ? [args[i + 1]] : []));
const server = opt("--server")[0];
const pagePort = Number(opt("--page-port")[0] ?? 0);
if (!server) throw new Error("--server URL is required");

const files = { "/": "index.html", "/index.html": "index.html", "/page.js": "page.js" };
const http = createServer((req, res) => {
  const file = files[new URL(req.url, "http://x").pathname];
  if (!file) { res.writeHead(404).end(); return; }
  res.writeHead(200, { "content-type": file.endsWith(".js") ? "text/javascript" : "text/html" });
  res.end(readFileSync(join(here, "dist", file)));
});
await new Promise((resolve) => http.listen(pagePort, "127.0.0.1", resolve));
const port = http.address().port;
const allowedOrigin = `http://127.0.0.1:${port}`;
const refusedOrigin = `http://localhost:${port}`;

const profile = mkdtempSync(join(tmpdir(), "gmf-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const out = { allowedOrigin, refusedOrigin, results: {}, refused: {} };
try {
  async function runIn(origin, names, into) {
    const page = await context.newPage();
    await page.goto(`${origin}/?server=${encodeURIComponent(server)}`);
    await page.waitForFunction(() => document.title === "ready");
    const all = await page.evaluate(() => window.gmfScenarios);
    for (const name of names.length ? names : all) {
      into[name] = await page.evaluate((n) => window.gmfRun(n), name);
    }
    await page.close();
  }
  await runIn(allowedOrigin, opt("--scenario"), out.results);
  const refused = opt("--refused");
  if (refused.length) await runIn(refusedOrigin, refused, out.refused);
} finally {
  await context.close();
  http.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));

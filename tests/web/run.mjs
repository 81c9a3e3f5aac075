// Drives dist/ in headless Chromium (Debian's, via playwright-core) against an RPC server.
//
//   node run.mjs --server http://127.0.0.1:8080 [--scenario NAME ...] [--refused NAME ...]
//   node run.mjs --server URL --dist ../../examples/web/dist --example   (the example page)
//
// Serves the page itself on 127.0.0.1:<free port> (another origin than the server, so every
// call is cross-origin and preflighted), runs each scenario in the page, and runs each
// --refused scenario from http://localhost:<port>, an origin the server must NOT allow.
// Prints one JSON object {allowedOrigin, refusedOrigin, results: {name: outcome}, refused: {...}};
// with --example: {example: {connect: [lines], "grpc-web": [lines]}} read from the page's list.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name) => args.flatMap((a, i) => (a === name ? [args[i + 1]] : []));
const server = opt("--server")[0];
const pagePort = Number(opt("--page-port")[0] ?? 0);
if (!server) throw new Error("--server URL is required");

const dist = resolve(opt("--dist")[0] ?? join(here, "dist"));
const http = createServer((req, res) => {
  const path = new URL(req.url, "http://x").pathname;
  const file = normalize(join(dist, path === "/" ? "index.html" : path));
  if (!file.startsWith(dist) || !existsSync(file)) { res.writeHead(404).end(); return; }
  res.writeHead(200, { "content-type": file.endsWith(".js") ? "text/javascript" : "text/html" });
  res.end(readFileSync(file));
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
  if (args.includes("--example")) {
    out.example = {};
    for (const protocol of ["connect", "grpc-web"]) {
      const page = await context.newPage();
      await page.goto(`${allowedOrigin}/?server=${encodeURIComponent(server)}&protocol=${protocol}`);
      await page.waitForFunction(() => document.title === "done", null, { timeout: 20000 });
      out.example[protocol] = await page.$$eval("#out li", (items) => items.map((li) => li.textContent));
      await page.close();
    }
  } else {
    await runIn(allowedOrigin, opt("--scenario"), out.results);
    const refused = opt("--refused");
    if (refused.length) await runIn(refusedOrigin, refused, out.refused);
  }
} finally {
  await context.close();
  http.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));

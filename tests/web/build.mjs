// Bundles src/page.ts (and the generated code) into dist/ with esbuild: dist/index.html + page.js.
import { build } from "esbuild";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
mkdirSync(dist, { recursive: true });
await build({
  entryPoints: [join(here, "src/page.ts")],
  bundle: true,
  format: "esm",
  target: "es2022",
  outfile: join(dist, "page.js"),
  logLevel: "warning",
});
writeFileSync(join(dist, "index.html"),
  '<!doctype html><meta charset="utf-8"><title>loading</title><h1>GMF web clients</h1><ul id="log"></ul>' +
  '<script type="module" src="page.js"></script>\n');
console.log(`built ${dist}`);

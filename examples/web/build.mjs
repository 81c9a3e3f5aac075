// Generates src/gen/ from proto/ (protoc from grpcio-tools + protoc-gen-es), then bundles
// src/main.ts with esbuild into dist/ (main.js + index.html): `npm install && npm run build`.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const proto = join(here, "..", "..", "proto");
mkdirSync(join(here, "src", "gen"), { recursive: true });
execFileSync(process.env.PYTHON || "python3", [
  "-m", "grpc_tools.protoc", `-I${join(proto, "helloworld")}`, `-I${join(proto, "routeguide")}`,
  `--plugin=protoc-gen-es=${join(here, "node_modules", ".bin", "protoc-gen-es")}`,
  `--es_out=${join(here, "src", "gen")}`, "--es_opt=target=ts",
  join(proto, "helloworld", "helloworld.proto"), join(proto, "routeguide", "route_guide.proto"),
], { stdio: "inherit" });
mkdirSync(join(here, "dist"), { recursive: true });
await build({
  entryPoints: [join(here, "src", "main.ts")], bundle: true, format: "esm", target: "es2022",
  outfile: join(here, "dist", "main.js"), logLevel: "warning",
});
copyFileSync(join(here, "index.html"), join(here, "dist", "index.html"));
console.log(`built ${join(here, "dist")}: serve it with any static file server`);

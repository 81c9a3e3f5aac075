// Generates TypeScript messages and service descriptors from proto/helloworld and proto/routeguide
// with @bufbuild/protoc-gen-es, run by protoc from grpcio-tools (no buf CLI, nothing downloaded).
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const out = join(here, "gen");
mkdirSync(out, { recursive: true });
execFileSync(process.env.PYTHON || "python3", [
  "-m", "grpc_tools.protoc",
  `-I${join(root, "proto/helloworld")}`,
  `-I${join(root, "proto/routeguide")}`,
  `--plugin=protoc-gen-es=${join(here, "node_modules/.bin/protoc-gen-es")}`,
  `--es_out=${out}`,
  "--es_opt=target=ts",
  join(root, "proto/helloworld/helloworld.proto"),
  join(root, "proto/routeguide/route_guide.proto"),
], { stdio: "inherit" });
console.log(`generated TypeScript in ${out}`);

// The calls the acceptance tests make from the browser, one function per scenario. Each returns
// a plain object so Playwright can hand it back to pytest as JSON: {ok: true, value} or
// {ok: false, code, message} (gRPC code numbers for every client library), plus elapsed ms.
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import * as grpcWeb from "grpc-web";
import { Greeter, HelloReplySchema, HelloRequestSchema, type HelloReply, type HelloRequest } from "../gen/helloworld_pb";
import { FeatureSchema, PointSchema, RectangleSchema, RouteGuide, type Feature, type Rectangle } from "../gen/route_guide_pb";

export type Outcome = { ok: boolean; value?: unknown; code?: number; message?: string; ms: number };

const SMALL_RECT = { lo: { latitude: 0, longitude: 0 }, hi: { latitude: 20_000_000, longitude: 20_000_000 } };
const FEATURE_POINT = { latitude: 10_000_000, longitude: 10_000_000 };
const DEADLINE_MS = 300;

async function timed(fn: () => Promise<unknown>): Promise<Outcome> {
  const start = performance.now();
  try {
    const value = await fn();
    return { ok: true, value, ms: performance.now() - start };
  } catch (err) {
    const ms = performance.now() - start;
    if (err instanceof ConnectError) return { ok: false, code: err.code, message: err.rawMessage, ms };
    if (err instanceof grpcWeb.RpcError) return { ok: false, code: err.code, message: err.message, ms };
    return { ok: false, code: Code.Unknown, message: String(err), ms };
  }
}

// ------------------------------------------------------------------ @connectrpc/connect-web
function connectTransport(server: string, binary: boolean, get = false): Transport {
  return createConnectTransport({ baseUrl: server, useBinaryFormat: binary, useHttpGet: get });
}

function grpcWebTransport(server: string): Transport {
  return createGrpcWebTransport({ baseUrl: server });
}

function connectScenarios(prefix: string, make: (server: string) => Transport) {
  return {
    [`${prefix}_unary`]: (server: string) =>
      timed(async () => (await createClient(Greeter, make(server)).sayHello({ name: "browser" })).message),
    [`${prefix}_stream`]: (server: string) =>
      timed(async () => {
        const names: string[] = [];
        for await (const f of createClient(RouteGuide, make(server)).listFeatures(SMALL_RECT)) names.push(f.name);
        return names;
      }),
    [`${prefix}_error`]: (server: string) =>
      timed(async () => (await createClient(Greeter, make(server)).sayHello({ name: "" })).message),
    [`${prefix}_deadline`]: (server: string) =>
      timed(async () =>
        (await createClient(Greeter, make(server)).sayHello({ name: "slow" }, { timeoutMs: DEADLINE_MS })).message),
  };
}

// ------------------------------------------------------------------ grpc-web (the official runtime)
// protoc-gen-grpc-web is a binary fetched from GitHub at install time, which this project cannot
// reach; grpc-web's runtime takes hand-written MethodDescriptors instead, with the messages
// (de)serialized by the @bufbuild/protobuf code generated above.
const sayHello = new grpcWeb.MethodDescriptor<HelloRequest, HelloReply>(
  "/helloworld.Greeter/SayHello", grpcWeb.MethodType.UNARY, Object as never, Object as never,
  (req: HelloRequest) => toBinary(HelloRequestSchema, req),
  (bytes: Uint8Array) => fromBinary(HelloReplySchema, bytes),
);
const listFeatures = new grpcWeb.MethodDescriptor<Rectangle, Feature>(
  "/routeguide.RouteGuide/ListFeatures", grpcWeb.MethodType.SERVER_STREAMING, Object as never, Object as never,
  (req: Rectangle) => toBinary(RectangleSchema, req),
  (bytes: Uint8Array) => fromBinary(FeatureSchema, bytes),
);

function grpcWebLib(format: "text" | "binary") {
  return new grpcWeb.GrpcWebClientBase({ format });
}

function libUnary(server: string, format: "text" | "binary", name: string, metadata: grpcWeb.Metadata = {}) {
  return grpcWebLib(format).unaryCall(`${server}/helloworld.Greeter/SayHello`,
    create(HelloRequestSchema, { name }), metadata, sayHello).then((r) => r.message);
}

function libStream(server: string, format: "text" | "binary"): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const names: string[] = [];
    const stream = grpcWebLib(format).serverStreaming(`${server}/routeguide.RouteGuide/ListFeatures`,
      create(RectangleSchema, { lo: create(PointSchema, SMALL_RECT.lo), hi: create(PointSchema, SMALL_RECT.hi) }),
      {}, listFeatures);
    stream.on("data", (f) => names.push(f.name));
    stream.on("error", reject);
    stream.on("end", () => resolve(names));
  });
}

export const scenarios: Record<string, (server: string) => Promise<Outcome>> = {
  ...connectScenarios("connect_json", (s) => connectTransport(s, false)),
  ...connectScenarios("connect_proto", (s) => connectTransport(s, true)),
  ...connectScenarios("grpcweb", grpcWebTransport),
  connect_get: (server) =>
    timed(async () => (await createClient(RouteGuide, connectTransport(server, false, true)).getFeature(FEATURE_POINT)).name),
  grpcweblib_text_unary: (server) => timed(() => libUnary(server, "text", "browser")),
  grpcweblib_binary_unary: (server) => timed(() => libUnary(server, "binary", "browser")),
  grpcweblib_text_stream: (server) => timed(() => libStream(server, "text")),
  grpcweblib_binary_stream: (server) => timed(() => libStream(server, "binary")),
  grpcweblib_text_error: (server) => timed(() => libUnary(server, "text", "")),
  grpcweblib_binary_error: (server) => timed(() => libUnary(server, "binary", "")),
  grpcweblib_binary_deadline: (server) =>
    timed(() => libUnary(server, "binary", "slow", { deadline: String(Date.now() + DEADLINE_MS) })),
};

// Calls helloworld.Greeter/SayHello (unary) and routeguide.RouteGuide/ListFeatures (server
// streaming) from the browser. ?server=URL picks the server (default http://localhost:50051),
// ?protocol=grpc-web switches from the Connect protocol to gRPC-Web.
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { Greeter } from "./gen/helloworld_pb";
import { RouteGuide } from "./gen/route_guide_pb";

const params = new URLSearchParams(location.search);
const baseUrl = params.get("server") ?? "http://localhost:50051";
const transport = params.get("protocol") === "grpc-web"
  ? createGrpcWebTransport({ baseUrl })
  : createConnectTransport({ baseUrl });
const greeter = createClient(Greeter, transport);
const routeGuide = createClient(RouteGuide, transport);

const out = document.getElementById("out") as HTMLElement;
function show(line: string) {
  const li = document.createElement("li");
  li.textContent = line;
  out.appendChild(li);
}

async function run(name: string) {
  out.replaceChildren();
  document.title = "running";
  try {
    const reply = await greeter.sayHello({ name });
    show(`SayHello: ${reply.message}`);
    const rect = { lo: { latitude: 0, longitude: 0 }, hi: { latitude: 20_000_000, longitude: 20_000_000 } };
    for await (const feature of routeGuide.listFeatures(rect)) {
      show(`ListFeatures: ${feature.name} (${feature.location?.latitude}, ${feature.location?.longitude})`);
    }
  } catch (err) {
    show(`error: ${String(err)}`);
  }
  document.title = "done";
}

const input = document.getElementById("name") as HTMLInputElement;
input.value = params.get("name") ?? "browser";
const form = document.getElementById("form") as HTMLFormElement;
form.addEventListener("submit", (event) => {
  event.preventDefault();
  void run(input.value);
});
void run(input.value);

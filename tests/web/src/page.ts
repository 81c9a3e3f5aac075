// The test page: exposes the scenarios to Playwright (window.gmfRun) and shows what ran.
import { scenarios } from "./scenarios";

const params = new URLSearchParams(location.search);
const server = params.get("server") ?? location.origin;

async function run(name: string) {
  const scenario = scenarios[name];
  if (!scenario) throw new Error(`no scenario ${name}`);
  const outcome = await scenario(server);
  const li = document.createElement("li");
  li.textContent = `${name}: ${JSON.stringify(outcome)}`;
  document.getElementById("log")?.appendChild(li);
  return outcome;
}

Object.assign(window, { gmfRun: run, gmfScenarios: Object.keys(scenarios) });
document.title = "ready";

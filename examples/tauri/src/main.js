// Tauri v2 webview: spawn bridge as a sidecar through the shell plugin, read its ready
// line ({"event": "ready", "url", "token", "pid"}) from stdout, and talk to it with the
// same client as the browser and Electron (npm bridge-ipc; its ESM build is copied in by
// build.mjs). The list is a live store: one render per batch of changes, resynced after
// every reconnection.
//
// The args must equal those allowed in src-tauri/capabilities/default.json: the shell
// plugin refuses any other. The webview's Origin (tauri://localhost on macOS/Linux,
// http://tauri.localhost on Windows) is allowlisted there with --allow-origin.
// withGlobalTauri (tauri.conf.json) exposes the plugin as window.__TAURI__.shell.

import { BridgeClient, liveConfigs } from "./bridge-ipc.mjs";

export const SIDECAR = "binaries/bridge";
export const SIDECAR_ARGS = [
  "serve", "--port", "0", "--exit-with-parent",
  "--allow-origin", "tauri://localhost", "--allow-origin", "http://tauri.localhost",
];

/** Spawn the sidecar; resolve with {url, token, child} from its ready line. */
export async function startBridge(shell = window.__TAURI__.shell, readyTimeoutMs = 20000) {
  const command = shell.Command.sidecar(SIDECAR, SIDECAR_ARGS);
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("bridge did not report ready")), readyTimeoutMs);
    command.stdout.on("data", (line) => {
      let message;
      try {
        message = JSON.parse(line);
      } catch {
        return; // not the ready line
      }
      clearTimeout(timer);
      if (message.event === "ready") resolve(message);
      else reject(new Error(`bridge could not start: ${message.message || message.error}`));
    });
    command.on("close", ({ code }) => {
      clearTimeout(timer);
      reject(new Error(`bridge exited with code ${code}`));
    });
    command.on("error", (error) => reject(new Error(String(error))));
  });
  // The child's stdin stays open while the app runs; when the app exits it closes, and
  // --exit-with-parent shuts bridge down.
  const child = await command.spawn();
  const { url, token } = await ready;
  return { url, token, child };
}

const $ = (selector) => document.querySelector(selector);

function render(items) {
  $("#configs").replaceChildren(
    ...items.map((view) => {
      const li = document.createElement("li");
      li.dataset.id = view.id;
      li.textContent = `${view.customName} (${view.provider}) ${view.apiKeyPreview}`;
      return li;
    }),
  );
}

async function main() {
  const { url, token } = await startBridge();
  const client = new BridgeClient({ url, token });
  const configs = liveConfigs(client);
  let shown = null;
  configs.subscribe(() => {
    const { items, status, error } = configs.getSnapshot();
    $("#status").dataset.state = status;
    $("#status").textContent = status === "open" ? "Connected" : status;
    $("#error").textContent = error ? error.message : "";
    if (items !== shown) render((shown = items)); // the same array when no item changed
  });
  await client.connect();
}

main().catch((error) => {
  $("#error").textContent = error.message;
});

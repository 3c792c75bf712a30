// Electron main process: starts bridge as a sidecar and gives each window's preload
// its URL and token over IPC. The preload is the npm package's `bridge-ipc/preload`: one
// CommonJS file that requires only `electron`, so the renderer stays sandboxed. (Electron
// cannot be installed on the CI machine — its install downloads a binary — so this file
// is not run there; sidecar.mjs and the preload build are tested under plain Node. See
// docs/renderers.md.)

import { app, BrowserWindow, ipcMain } from "electron";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { startSidecar } from "./sidecar.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const preload = createRequire(import.meta.url).resolve("bridge-ipc/preload");
let sidecar = null;

async function createWindow() {
  const window = new BrowserWindow({
    width: 960,
    height: 720,
    webPreferences: {
      preload,
      contextIsolation: true,
      nodeIntegration: false,
      sandbox: true,
    },
  });
  await window.loadFile(path.join(here, "..", "renderer", "index.html"));
}

app.whenReady().then(async () => {
  // The preload's WebSocket carries the page's Origin: `file://` for loadFile(). bridge
  // refuses every browser Origin not allowlisted (DESIGN §6), so allow exactly that one.
  sidecar = await startSidecar({
    command: process.env.BRIDGE_COMMAND || "bridge",
    serveArgs: ["--allow-origin", "file://"],
  });
  // bridge-ipc/preload asks this channel for {url, token} on every connection attempt.
  ipcMain.handle("bridge:connection", () => ({ url: sidecar.url, token: sidecar.token }));
  await createWindow();
  app.on("activate", () => {
    if (BrowserWindow.getAllWindows().length === 0) createWindow();
  });
});

app.on("window-all-closed", async () => {
  if (sidecar) await sidecar.stop();
  if (process.platform !== "darwin") app.quit();
});

// Electron main process: starts bridge as a sidecar and gives each window's preload
// its URL and token over IPC. (Electron cannot be installed on the CI machine — its
// install downloads a binary — so this file is not run there; sidecar.mjs, which holds
// all the logic, is tested under plain Node. See docs/renderers.md.)

import { app, BrowserWindow, ipcMain } from "electron";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { startSidecar } from "./sidecar.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
let sidecar = null;

async function createWindow() {
  const window = new BrowserWindow({
    width: 960,
    height: 720,
    webPreferences: {
      preload: path.join(here, "preload.mjs"),
      contextIsolation: true,
      nodeIntegration: false,
      sandbox: false, // an ES-module preload needs it off (Electron ≥ 28)
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

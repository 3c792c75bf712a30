// bridge-ipc/preload — a ready-made Electron preload, built as one CommonJS file that
// requires nothing but `electron`, so it runs in a sandboxed renderer (`sandbox: true`,
// Electron's default since 20), where a preload may not be an ES module nor require
// other files.
//
// It exposes `window.electronAPI`:
//   llmConfig: {create, read, update, delete, list, refreshCache, onChanged} (DESIGN §8),
//   invoke(channel, params), on(topic, callback), onConnectionStatus(callback), onWarning(callback).
// The main process hands over the connection: `ipcMain.handle("bridge:connection",
// () => ({url, token}))` — asked again on every reconnection attempt. Errors cross the
// contextBridge as plain `{message, code, name, data}` (Error subclasses lose their fields).
import { contextBridge, ipcRenderer } from "electron";
import { BridgeClient, llmConfigApi } from "./client.js";

/** The ipcMain.handle channel the main process answers with `{url, token}`. */
const CONNECTION_CHANNEL = "bridge:connection";

const client = new BridgeClient({
  url: async () => (await ipcRenderer.invoke(CONNECTION_CHANNEL)).url,
  token: async () => (await ipcRenderer.invoke(CONNECTION_CHANNEL)).token,
});
client.connect();

const plainError = (error) => ({
  message: error.message,
  code: error.code,
  name: error.name,
  data: error.data,
});

const wrap =
  (fn) =>
  (...args) =>
    fn(...args).catch((error) => Promise.reject(plainError(error)));
const api = llmConfigApi(client);

contextBridge.exposeInMainWorld("electronAPI", {
  llmConfig: {
    create: wrap(api.create),
    read: wrap(api.read),
    update: wrap(api.update),
    delete: wrap(api.delete),
    list: wrap(api.list),
    refreshCache: wrap(api.refreshCache),
    onChanged: (callback) => api.onChanged(callback),
  },
  invoke: wrap((channel, params) => client.invoke(channel, params)),
  on: (topic, callback) => client.on(topic, callback),
  onConnectionStatus: (callback) => client.onStatus((status) => callback(status)),
  onWarning: (callback) => client.onWarning((warning) => callback({ ...warning })),
});

// Electron preload: exposes window.electronAPI.llmConfig (create, read, update, delete,
// list, refreshCache, onChanged) backed by the bridge sidecar. Errors cross the
// contextBridge as plain objects {message, code, name, data} because Error subclasses
// lose their fields there.

import { contextBridge, ipcRenderer } from "electron";
import { BridgeClient, llmConfigApi } from "../renderer/bridge-client.js";

const client = new BridgeClient({
  url: async () => (await ipcRenderer.invoke("bridge:connection")).url,
  token: async () => (await ipcRenderer.invoke("bridge:connection")).token,
});
client.connect();

const plainError = (error) => ({
  message: error.message,
  code: error.code,
  name: error.name,
  data: error.data,
});

const wrap = (fn) => (...args) => fn(...args).catch((error) => Promise.reject(plainError(error)));
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
  onConnectionStatus: (callback) => client.onStatus((status) => callback(status)),
});

// The sandbox-safe Electron preload of npm bridge-ipc (clients/js/dist/preload.cjs, built
// by `make js-build`) under plain Node 20 against a real `bridge serve`. Electron is not
// installable here, so the preload runs in a fresh V8 context with what a sandboxed
// preload gets: a `require` that yields only `electron` (stood in for: contextBridge and
// ipcRenderer record what crosses them) and the renderer's WebSocket.

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";
import { OPENAI_KEY, sidecarIn } from "./helpers.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const PRELOAD = path.join(here, "..", "..", "clients", "js", "dist", "preload.cjs");

test("preload: one CommonJS file requiring only electron exposes electronAPI against a real server", async () => {
  const code = readFileSync(PRELOAD, "utf8");
  assert.deepEqual([...code.matchAll(/\brequire\(([^)]*)\)/g)].map((m) => m[1]), ['"electron"']);
  assert.doesNotMatch(code, /^\s*(import|export)\s/m, "no ES module syntax");

  const dir = mkdtempSync(path.join(tmpdir(), "bridge-preload-"));
  const sidecar = await sidecarIn(dir);
  try {
    const asked = [];
    let exposed = null;
    const electron = {
      contextBridge: { exposeInMainWorld: (key, api) => (exposed = { key, api }) },
      ipcRenderer: {
        invoke: async (channel) => {
          asked.push(channel);
          return { url: sidecar.url, token: sidecar.token };
        },
      },
    };
    const required = [];
    const sandboxRequire = (name) => {
      required.push(name);
      if (name === "electron") return electron;
      throw new Error(`a sandboxed preload cannot require ${name}`);
    };
    const module = { exports: {} };
    // The preload's client lives as long as its window: the test ends it by stopping its
    // timers and sockets (a window closing does the same).
    let ended = false;
    const timers = new Set();
    const sockets = new Set();
    const context = vm.createContext({
      WebSocket: class extends WebSocket {
        constructor(...args) {
          super(...args);
          sockets.add(this);
        }
      },
      console,
      setTimeout: (callback, ms) => {
        if (ended) return 0;
        const timer = setTimeout(callback, ms);
        timers.add(timer);
        return timer;
      },
      clearTimeout,
      MessageEvent,
    });
    const endWindow = () => {
      ended = true;
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.close();
    };
    vm.runInContext(`(function (require, module, exports) {\n${code}\n})`, context, { filename: PRELOAD })(
      sandboxRequire,
      module,
      module.exports,
    );
    assert.deepEqual(required, ["electron"]);
    assert.equal(exposed.key, "electronAPI");
    const api = exposed.api;
    assert.deepEqual(Object.keys(api.llmConfig).sort(), [
      "create",
      "delete",
      "list",
      "onChanged",
      "read",
      "refreshCache",
      "update",
    ]);

    const statuses = [];
    api.onConnectionStatus((status) => statuses.push(status));
    const changed = new Promise((resolve) => {
      const off = api.llmConfig.onChanged((event) => {
        off();
        resolve(event);
      });
    });
    const view = await api.llmConfig.create({ customName: "Preload", provider: "openai", apiKey: OPENAI_KEY });
    assert.equal(view.apiKeyPreview, `sk-...${OPENAI_KEY.slice(-3)}`);
    const event = await changed;
    assert.deepEqual([event.type, event.id], ["created", view.id]);
    assert.deepEqual(Array.from(await api.llmConfig.list(), (v) => v.id), [view.id]); // another realm's array
    assert.equal((await api.invoke("bridge:hello")).protocolVersion, 1);
    assert.ok(asked.every((channel) => channel === "bridge:connection") && asked.length >= 2);
    assert.equal(statuses.at(-1), "open");

    // A refused write crosses the contextBridge as a plain object with code, name and data.
    const error = await api.llmConfig.create({ customName: "Preload", provider: "openai", apiKey: OPENAI_KEY }).then(
      () => assert.fail("a duplicate name must be refused"),
      (e) => e,
    );
    assert.equal(Object.prototype.toString.call(error), "[object Object]"); // not an Error
    assert.equal(error.code, 4009);
    assert.equal(error.data.code, "DUPLICATE_CONFIG_NAME");
    assert.equal(typeof error.message, "string");
    endWindow();
  } finally {
    await sidecar.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

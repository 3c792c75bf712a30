// bridge-ipc/svelte — Svelte readable stores over the live collection stores. Svelte's
// store contract (`subscribe(run) → unsubscribe`, `run` called at once with the current
// value) needs no import from svelte itself, so this entry works with Svelte 3, 4 and 5
// (`$configs` in a component) and with `get()`/`derived()` from `svelte/store`.
import { sharedCollection } from "./index.js";

/**
 * A Svelte readable store of a live store (anything with `subscribe` + `getSnapshot`).
 * @param {{subscribe: (listener: () => void) => () => void, getSnapshot: () => any}} live
 */
export function readableFrom(live) {
  return {
    subscribe(run) {
      run(live.getSnapshot());
      return live.subscribe(() => run(live.getSnapshot()));
    },
  };
}

/** A readable store of collection `name` of `client` (the store shared per client and name). */
export function collectionStore(client, name) {
  return readableFrom(sharedCollection(client, name));
}

/** A readable store of the LLM configs of `client`: `$configs.items`, `$configs.status`, … */
export function llmConfigStore(client) {
  return collectionStore(client, "llm-config");
}

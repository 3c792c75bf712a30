// bridge-ipc/react — React bindings over the live collection store: `BridgeProvider`,
// `useLlmConfig()` (the original settings app's hook shape, plus `status`),
// `useLlmConfigItem(id)` and `useLiveCollection(name)`. Built on useSyncExternalStore:
// a component re-renders only when the snapshot (or, for an item hook, that item)
// changes identity. React is a peer dependency.
import {
  createContext,
  createElement,
  useCallback,
  useContext,
  useMemo,
  useState,
  useSyncExternalStore,
} from "react";
import { sharedCollection } from "./index.js";

const CONFIGS = "llm-config";
const BridgeContext = createContext(null);

/** Provide `client` (a BridgeClient) to the hooks below it. */
export function BridgeProvider({ client, children }) {
  return createElement(BridgeContext.Provider, { value: client }, children);
}

/** The client passed in, else the nearest BridgeProvider's; throws when there is neither. */
export function useBridgeClient(client) {
  const provided = useContext(BridgeContext);
  const found = client ?? provided;
  if (!found) throw new Error("bridge-ipc/react: no client: pass one or render inside <BridgeProvider client={…}>");
  return found;
}

/** The snapshot `{items, byId, status, revision, error}` of collection `name`. */
export function useLiveCollection(name, client) {
  const store = sharedCollection(useBridgeClient(client), name);
  return useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
}

/** One item of the LLM configs by id (`null` when absent); re-renders only when that item changes. */
export function useLlmConfigItem(id, client) {
  const store = sharedCollection(useBridgeClient(client), CONFIGS);
  const select = useCallback(() => store.getSnapshot().byId[id] ?? null, [store, id]);
  return useSyncExternalStore(store.subscribe, select, select);
}

/** The view an optimistic create shows until the server's own arrives (never the key). */
function optimisticView(id, input) {
  const key = typeof input.apiKey === "string" ? input.apiKey.trim() : "";
  const now = new Date().toISOString();
  return {
    id,
    customName: input.customName,
    provider: input.provider,
    baseUrl: input.baseUrl ?? null,
    useAuthHeader: input.useAuthHeader ?? true,
    apiKeyPreview: key.length < 10 ? "••••••••" : `${key.slice(0, 3)}...${key.slice(-3)}`,
    createdAt: now,
    updatedAt: now,
    version: 0,
  };
}

let optimisticIds = 0;

/**
 * The LLM configs of the client: `{configurations, isLoading, error, status,
 * createConfiguration, updateConfiguration, deleteConfiguration, getConfiguration,
 * refreshConfigurations, clearError}`.
 *
 * Writes resolve with the server's answer and reject with its error (also kept in
 * `error` until `clearError()`); with `{optimistic: true}` the change shows at once and
 * is rolled back if the server refuses it.
 * @param {import("./client.js").BridgeClient} [client] default: the BridgeProvider's.
 */
export function useLlmConfig(client) {
  const bridge = useBridgeClient(client);
  const store = sharedCollection(bridge, CONFIGS);
  const snapshot = useSyncExternalStore(store.subscribe, store.getSnapshot, store.getSnapshot);
  const [writeError, setWriteError] = useState(null);

  const write = useCallback(
    async (channel, params, overlay) => {
      const release = overlay ? store.overlay(overlay.id, overlay.item) : null;
      try {
        return await bridge.invoke(channel, params);
      } catch (error) {
        setWriteError(error);
        throw error;
      } finally {
        // The server's change notification precedes its response, so the server state
        // already holds the outcome when the local change is dropped.
        if (release) release();
      }
    },
    [bridge, store],
  );

  const createConfiguration = useCallback(
    (config, options = {}) => {
      let overlay = null;
      if (options.optimistic) {
        const id = `optimistic-${++optimisticIds}`;
        overlay = { id, item: optimisticView(id, config) };
      }
      return write("llm-config:create", { config }, overlay);
    },
    [write],
  );

  const updateConfiguration = useCallback(
    (id, updates, options = {}) => {
      const params = options.expectedVersion === undefined ? { id, updates } : { id, updates, expectedVersion: options.expectedVersion };
      const current = store.getSnapshot().byId[id];
      let overlay = null;
      if (options.optimistic && current) {
        const { apiKey, ...visible } = updates;
        overlay = { id, item: { ...current, ...visible } };
      }
      return write("llm-config:update", params, overlay);
    },
    [store, write],
  );

  const deleteConfiguration = useCallback(
    async (id, options = {}) => {
      const params = options.expectedVersion === undefined ? { id } : { id, expectedVersion: options.expectedVersion };
      const result = await write("llm-config:delete", params, options.optimistic ? { id, item: null } : null);
      return result.deleted;
    },
    [write],
  );

  const getConfiguration = useCallback((id) => store.getSnapshot().byId[id] ?? null, [store]);

  const refreshConfigurations = useCallback(async () => {
    try {
      await bridge.invoke("llm-config:refresh-cache");
      await store.refresh();
    } catch (error) {
      setWriteError(error);
      throw error;
    }
  }, [bridge, store]);

  const clearError = useCallback(() => {
    setWriteError(null);
    store.clearError();
  }, [store]);

  const { items, status, error } = snapshot;
  const isLoading = !store.loaded && status !== "failed" && status !== "closed";
  return useMemo(
    () => ({
      configurations: items,
      isLoading,
      error: writeError ?? error,
      status,
      createConfiguration,
      updateConfiguration,
      deleteConfiguration,
      getConfiguration,
      refreshConfigurations,
      clearError,
    }),
    [
      items,
      isLoading,
      writeError,
      error,
      status,
      createConfiguration,
      updateConfiguration,
      deleteConfiguration,
      getConfiguration,
      refreshConfigurations,
      clearError,
    ],
  );
}

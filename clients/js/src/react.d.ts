// bridge-ipc/react: React hooks over the live stores (React is a peer dependency).
import type { ReactNode } from "react";
import type {
  BridgeClient,
  CollectionItem,
  LiveSnapshot,
  LiveStatus,
  LlmConfigInput,
  LlmConfigPatch,
  LlmConfigView,
} from "./index.js";

/** Props of BridgeProvider. */
export interface BridgeProviderProps {
  client: BridgeClient<any, any>;
  children?: ReactNode;
}

/** Provides `client` to the hooks below it. */
export declare function BridgeProvider(props: BridgeProviderProps): ReactNode;
/** The client passed in, else the nearest BridgeProvider's (throws when there is neither). */
export declare function useBridgeClient(client?: BridgeClient<any, any> | null): BridgeClient<any, any>;
/** The snapshot of collection `name`. */
export declare function useLiveCollection<T extends CollectionItem = CollectionItem>(
  name: string,
  client?: BridgeClient<any, any> | null,
): LiveSnapshot<T>;
/** One LLM config by id, null when absent; re-renders only when that item changes. */
export declare function useLlmConfigItem(id: string, client?: BridgeClient<any, any> | null): LlmConfigView | null;

/** Options of a write. */
export interface WriteOptions {
  /** Show the change at once; rolled back if the server refuses it (default false). */
  optimistic?: boolean;
  /** Fail with VERSION_CONFLICT (4012) unless the stored version is this one. */
  expectedVersion?: number;
}

/** What useLlmConfig returns: the original settings app's hook, plus `status`. */
export interface UseLlmConfig {
  /** The configs in creation order; unchanged ones keep their identity. */
  configurations: readonly LlmConfigView[];
  /** True until the first snapshot is applied. */
  isLoading: boolean;
  /** The last failed write or store failure, until clearError(). */
  error: unknown;
  /** Connection state. */
  status: LiveStatus;
  createConfiguration(config: LlmConfigInput, options?: Pick<WriteOptions, "optimistic">): Promise<LlmConfigView>;
  updateConfiguration(id: string, updates: LlmConfigPatch, options?: WriteOptions): Promise<LlmConfigView>;
  /** Resolves true when deleted, false when the id was unknown. */
  deleteConfiguration(id: string, options?: WriteOptions): Promise<boolean>;
  /** The config with `id` from the live snapshot, null when absent (no round trip). */
  getConfiguration(id: string): LlmConfigView | null;
  /** Reload the server's cache from its store and resync. */
  refreshConfigurations(): Promise<void>;
  clearError(): void;
}

/** The LLM configs of the client (argument, else the BridgeProvider's). */
export declare function useLlmConfig(client?: BridgeClient<any, any> | null): UseLlmConfig;

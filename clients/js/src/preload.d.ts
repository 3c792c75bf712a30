// bridge-ipc/preload is an Electron preload script: it exports nothing. What it exposes:
import type { BridgeWarning, LlmConfigApi, LiveStatus, Status } from "./index.js";

/** `window.electronAPI` as the preload exposes it (errors arrive as plain objects). */
export interface ElectronBridgeApi {
  llmConfig: LlmConfigApi;
  invoke(channel: string, params?: unknown): Promise<unknown>;
  on(topic: string, callback: (payload: unknown) => void): () => void;
  onConnectionStatus(callback: (status: Status | LiveStatus) => void): () => void;
  /** Warnings of the client (a schema mismatch with the server); without a listener they go to the console. */
  onWarning(callback: (warning: BridgeWarning) => void): () => void;
}

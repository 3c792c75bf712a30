// bridge-ipc — the main entry: the client and the live collection stores.
export {
  BridgeClient,
  BridgeError,
  CallTimeoutError,
  ConnectionLostError,
  HANDSHAKE_REFUSED_CAUSES,
  PROTOCOL_VERSION,
  SCHEMA_HASH,
  STATUSES,
  TerminalError,
  llmConfigApi,
} from "./client.js";
export { LiveCollection, liveCollection, liveConfigs, sharedCollection } from "./live.js";

// bridge-ipc: the client, its errors and the live collection stores.
export * from "./client.js";
export * from "./live.js";

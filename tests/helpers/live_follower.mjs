// A JS live store following one collection of a bridge server, for the Python e2e tests.
//
//   node --experimental-websocket tests/helpers/live_follower.mjs CONNECTION_FILE COLLECTION SCHEMA_HASH
//
// bridge-ipc's BridgeClient (clients/js/src) re-reads the connection file before every
// attempt (so it follows a restarted server), and `liveCollection(client, COLLECTION)`
// keeps the collection's items. Every snapshot the store publishes is printed on stdout as
// one JSON line `{status, revision, items}`, and every `COLLECTION:changed` notification
// the client receives as `{event}`; the process closes the client and exits when its
// stdin ends.
import { readFileSync } from "node:fs";
import { BridgeClient, liveCollection } from "../../clients/js/src/index.js";

const [connectionFile, name, schemaHash] = process.argv.slice(2);
const connection = () => JSON.parse(readFileSync(connectionFile, "utf8"));
const client = new BridgeClient({
  url: () => connection().url,
  token: () => connection().token,
  schemaHash,
  initialDelayMs: 50,
  maxDelayMs: 300,
});
const store = liveCollection(client, name);
const print = () => {
  const { status, revision, items } = store.getSnapshot();
  process.stdout.write(JSON.stringify({ status, revision, items }) + "\n");
};
store.subscribe(print);
print();
client.on(`${name}:changed`, (event) => process.stdout.write(JSON.stringify({ event }) + "\n"));

process.stdin.resume();
process.stdin.on("end", () => {
  store.close();
  client.close();
  process.exit(0);
});

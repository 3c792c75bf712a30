// The same package bundled for a browser page by esbuild (imports resolved from the
// installed tarball): connects with the page's fragment, creates a config and shows the
// live store's snapshot in window.__result.
import { BridgeClient, liveConfigs } from "bridge-ipc";

const fragment = new URLSearchParams(location.hash.slice(1));
const client = new BridgeClient({ url: fragment.get("url"), token: fragment.get("token") });
const store = liveConfigs(client);
store.subscribe(() => {
  const { status, items } = store.getSnapshot();
  if (status === "open" && items.length > 0) window.__result = { status, names: items.map((item) => item.customName) };
});
client
  .invoke("llm-config:create", { config: { customName: "From Chromium", provider: "anthropic", apiKey: fragment.get("key") } })
  .catch((error) => (window.__result = { error: error.message }));

// The plain settings page (index.html) imports the client from here: the source of the
// npm package bridge-ipc (clients/js/), which runs unbuilt in a browser. Serve the
// repository root so that this relative import resolves (docs/renderers.md).
export * from "../../clients/js/src/index.js";

// Shared by the Node tests: start a real `bridge serve` as a sidecar on a data directory.

import { startSidecar } from "../../examples/electron/sidecar.mjs";

/** The Python that has bridge installed (`make js-test` sets BRIDGE_PYTHON to the venv's). */
export const python = process.env.BRIDGE_PYTHON || "python3";
/** A fake OpenAI key of a valid shape. */
export const OPENAI_KEY = "sk-" + "A1b2C3d4E5f6G7h8I9j0".repeat(2);

/** Start `bridge serve` on `dir` (file secret backend, logs discarded) with `extra` args. */
export function sidecarIn(dir, extra = []) {
  return startSidecar({
    command: python,
    args: ["-m", "bridge"],
    serveArgs: ["--data-dir", dir, "--secret-backend", "file", ...extra],
    stderr: "ignore",
  });
}

// Shared by the Node tests: start a real `bridge serve` as a sidecar on a data directory.

import path from "node:path";
import { fileURLToPath } from "node:url";
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

/** The checkout's root (tests/helpers/app_sidecar.py is imported from there). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * Start an application's own sidecar on `dir`: `bridge serve` with the example's `app:echo`
 * channel and `app:tick` topic (tests/helpers/app_sidecar.py), so its schemaHash is not a
 * stock server's.
 */
export function appSidecarIn(dir, extra = []) {
  return startSidecar({
    command: python,
    args: ["-m", "tests.helpers.app_sidecar"],
    serveArgs: ["--data-dir", dir, "--secret-backend", "file", ...extra],
    env: { ...process.env, PYTHONPATH: ROOT },
    stderr: "ignore",
  });
}

// sidecar.mjs — start `bridge serve` as a sidecar of a desktop app and hand its
// connection to the UI. No Electron import: it runs (and is tested) under plain Node.
//
// The sidecar pattern (DESIGN §7): the app spawns `bridge serve --port 0
// --exit-with-parent`, reads the single JSON ready line from stdout
// ({"event": "ready", "url", "token", "pid"}), and keeps the child's stdin open; when
// the app exits (even if it crashes), stdin reaches EOF and bridge shuts down cleanly.

import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

/**
 * Spawn bridge and wait for its ready line.
 *
 * @param {object} [options]
 * @param {string} [options.command="bridge"] Executable to run (e.g. a bundled binary or python).
 * @param {string[]} [options.args=[]] Arguments placed before `serve` (e.g. ["-m", "bridge"]).
 * @param {string[]} [options.serveArgs=[]] Extra `bridge serve` arguments (e.g. ["--data-dir", dir]).
 * @param {number} [options.readyTimeoutMs=20000] How long to wait for the ready line, in milliseconds.
 * @param {NodeJS.ProcessEnv} [options.env] Environment of the child (default: this process's).
 * @param {"inherit" | "ignore" | "pipe"} [options.stderr="inherit"] Where bridge's JSON log lines go.
 * @returns {Promise<{url: string, token: string, pid: number, child: import("node:child_process").ChildProcess, stop: (timeoutMs?: number) => Promise<number|null>}>}
 * @throws {Error} when bridge reports an error line, exits, or stays silent past the timeout.
 */
export function startSidecar(options = {}) {
  const {
    command = "bridge",
    args = [],
    serveArgs = [],
    readyTimeoutMs = 20000,
    env = process.env,
    stderr = "inherit",
  } = options;
  const child = spawn(command, [...args, "serve", "--port", "0", "--exit-with-parent", ...serveArgs], {
    stdio: ["pipe", "pipe", stderr],
    env,
  });
  const exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));

  /** Close stdin (the parent is "gone"), then SIGTERM if bridge is still there after `timeoutMs`. */
  async function stop(timeoutMs = 10000) {
    if (child.exitCode !== null) return child.exitCode;
    child.stdin.end();
    const timer = setTimeout(() => child.kill("SIGTERM"), timeoutMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }

  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    const timer = setTimeout(() => {
      child.kill("SIGTERM");
      reject(new Error(`bridge did not print its ready line within ${readyTimeoutMs} ms`));
    }, readyTimeoutMs);
    const fail = (error) => {
      clearTimeout(timer);
      lines.close();
      reject(error);
    };
    child.once("error", fail);
    exited.then((code) => fail(new Error(`bridge exited with code ${code} before it was ready`)));
    lines.once("line", (line) => {
      let message;
      try {
        message = JSON.parse(line);
      } catch {
        fail(new Error("bridge printed something other than its JSON ready line"));
        return;
      }
      if (message.event !== "ready") {
        child.kill("SIGTERM");
        fail(new Error(`bridge could not start: ${message.message || message.error}`));
        return;
      }
      clearTimeout(timer);
      resolve({ url: message.url, token: message.token, pid: message.pid, child, stop });
    });
  });
}

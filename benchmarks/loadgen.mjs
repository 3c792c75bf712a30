// Load generator for benchmarks/run.py (Node + ws: cheaper per message than a Python
// client, so the server, not the client, is what saturates).
// Usage: node loadgen.mjs '<json spec>'  → prints one JSON line with the measurements.
// Modes: "seq" (sequential round trips), "pipe" (pipelined, N connections),
// "fanout" (receivers + one updater; time until every receiver has the notification).
// Server CPU is read from /proc/<pid>/task/*/schedstat (nanoseconds on CPU, every thread).
import { readdirSync, readFileSync } from "node:fs";
import WebSocket from "ws";

const spec = JSON.parse(process.argv[2]);
const now = () => process.hrtime.bigint();

function serverCpuNs(pid) {
  if (!pid) return 0;
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return total;
}

function clientCpuUs() {
  const u = process.cpuUsage();
  return u.user + u.system;
}

function open(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers: spec.headers ?? {}, perMessageDeflate: false });
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

// A notification (bridge writes it before the response to the write that caused it).
const NOTE = Buffer.from('{"jsonrpc":"2.0","method"');
const isNote = (data) => data.length >= NOTE.length && data.compare(NOTE, 0, NOTE.length, 0, NOTE.length) === 0;

const tag = Math.random().toString(36).slice(2, 8);
function frame(id) {
  let params = spec.params;
  if (spec.varyName) params = { ...params, updates: { customName: `Bench ${tag} ${id}` } };
  const msg = { jsonrpc: "2.0", id, method: spec.method };
  if (params !== undefined) msg.params = params;
  return JSON.stringify(msg);
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function seq() {
  const ws = await open(spec.url);
  let wake = null;
  ws.on("message", (data) => {
    if (isNote(data)) return;
    const w = wake;
    wake = null;
    w();
  });
  const rtts = [];
  let cpu0 = 0;
  let cli0 = 0;
  const total = spec.warmup + spec.count;
  for (let i = 1; i <= total; i++) {
    if (i === spec.warmup + 1) {
      cpu0 = serverCpuNs(spec.serverPid);
      cli0 = clientCpuUs();
    }
    const msg = frame(i);
    const t0 = now();
    const got = new Promise((r) => {
      wake = r;
    });
    ws.send(msg);
    await got;
    if (i > spec.warmup) rtts.push(Number(now() - t0) / 1000);
  }
  const cpu = serverCpuNs(spec.serverPid) - cpu0;
  const cli = clientCpuUs() - cli0;
  ws.close();
  rtts.sort((a, b) => a - b);
  return {
    n: rtts.length,
    p50_us: pct(rtts, 50),
    p99_us: pct(rtts, 99),
    server_cpu_us_per_req: cpu / 1000 / spec.count,
    client_cpu_us_per_req: cli / spec.count,
  };
}

async function pipe() {
  const sockets = await Promise.all(Array.from({ length: spec.conns }, () => open(spec.url)));
  const perConn = spec.count;
  const cpu0 = serverCpuNs(spec.serverPid);
  const cli0 = clientCpuUs();
  const t0 = now();
  await Promise.all(
    sockets.map(
      (ws) =>
        new Promise((resolve) => {
          let sent = 0;
          let received = 0;
          ws.on("message", (data) => {
            if (isNote(data)) return;
            received++;
            if (sent < perConn) ws.send(frame(++sent));
            if (received === perConn) resolve();
          });
          for (let k = 0; k < spec.depth && sent < perConn; k++) ws.send(frame(++sent));
        }),
    ),
  );
  const wall = Number(now() - t0) / 1e9;
  const cpu = serverCpuNs(spec.serverPid) - cpu0;
  const cli = clientCpuUs() - cli0;
  for (const ws of sockets) ws.close();
  const total = perConn * spec.conns;
  return {
    n: total,
    msgs_per_s: total / wall,
    server_cpu_us_per_req: cpu / 1000 / total,
    server_cpu_util: cpu / 1e9 / wall,
    client_cpu_util: cli / 1e6 / wall,
  };
}

// Receivers: this process (or each child, with spec.procs > 1) holds its share of the
// connections and, per update, reports when all of them have the notification.
async function openReceivers(count) {
  const receivers = [];
  for (let i = 0; i < count; i += 50) {
    const batch = Math.min(50, count - i);
    receivers.push(...(await Promise.all(Array.from({ length: batch }, () => open(spec.url)))));
  }
  return receivers;
}

async function receiversChild() {
  const receivers = await openReceivers(spec.share);
  let got = 0;
  let first = 0n;
  let last = 0n;
  for (const ws of receivers) {
    ws.on("message", () => {
      // Receivers never send: any message is the notification (no parse on the clock).
      const t = now();
      if (got === 0) first = t;
      last = t;
      if (++got === receivers.length) {
        process.send({ first: String(first), last: String(last) });
        got = 0;
      }
    });
  }
  process.on("message", (m) => {
    if (m === "stop") {
      for (const ws of receivers) ws.terminate();
      process.exit(0);
    }
  });
  process.send({ ready: true });
  await new Promise(() => {});
}

async function fanout() {
  const { fork } = await import("node:child_process");
  const procs = spec.procs ?? 1;
  const children = [];
  let reports = [];
  let wake = null;
  for (let i = 0; i < procs; i++) {
    const share = Math.floor(spec.receivers / procs) + (i < spec.receivers % procs ? 1 : 0);
    const child = fork(process.argv[1], [JSON.stringify({ ...spec, mode: "receivers", share })]);
    await new Promise((resolve) => child.once("message", resolve));
    child.on("message", (m) => {
      reports.push(m);
      if (wake) wake();
    });
    children.push(child);
  }
  const updater = await open(spec.url);
  let answered = false;
  updater.on("message", (data) => {
    if (isNote(data)) return;
    answered = true;
    if (wake) wake();
  });
  const last = [];
  const first = [];
  const cpu = [];
  for (let u = 1; u <= spec.warmup + spec.updates; u++) {
    reports = [];
    answered = false;
    const finished = new Promise((resolve) => {
      wake = () => {
        if (answered && reports.length === procs) resolve();
      };
    });
    const c0 = serverCpuNs(spec.serverPid);
    const t0 = now();
    updater.send(frame(u));
    await finished;
    const c1 = serverCpuNs(spec.serverPid);
    if (u > spec.warmup) {
      const lo = reports.map((r) => BigInt(r.first)).reduce((a, b) => (a < b ? a : b));
      const hi = reports.map((r) => BigInt(r.last)).reduce((a, b) => (a > b ? a : b));
      last.push(Number(hi - t0) / 1e6);
      first.push(Number(lo - t0) / 1e6);
      cpu.push((c1 - c0) / 1e6);
    }
  }
  updater.terminate();
  for (const child of children) child.send("stop");
  last.sort((a, b) => a - b);
  first.sort((a, b) => a - b);
  cpu.sort((a, b) => a - b);
  return {
    n: last.length,
    all_p50_ms: pct(last, 50),
    all_max_ms: last.at(-1),
    first_p50_ms: pct(first, 50),
    // Server CPU for the whole update: commit, the notification to every receiver, the response.
    server_cpu_ms_p50: pct(cpu, 50),
  };
}

const modes = { seq, pipe, fanout, receivers: receiversChild };
modes[spec.mode]().then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  },
  (err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  },
);

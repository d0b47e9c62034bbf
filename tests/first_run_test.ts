// The first run as a newcomer meets it: `deno task start` in a terminal. It prints what to try, the
// printed commands work as printed, and Ctrl-C, which reaches the relay twice (the terminal signals
// the whole process group and the task runner forwards its own copy), is one graceful shutdown.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertSegmentsMatch,
  type BackgroundProcess,
  delay,
  freePort,
  isSegmentName,
  pgBinDir,
  REPO_ROOT,
  run,
  spawnBackground,
  tempDir,
  TESTDATA,
  waitFor,
} from "./_pg.ts";
import { RawReplClient } from "./_relay_util.ts";

/** `deno task start` in a session and process group of its own, as a terminal's shell runs it. */
interface TaskStart extends AsyncDisposable {
  readonly proc: BackgroundProcess;
  readonly port: number;
  readonly httpPort: number;
  /** What a terminal does on Ctrl-C: SIGINT to every process of the foreground group. */
  ctrlC(): void;
}

async function startTask(): Promise<TaskStart> {
  const port = await freePort();
  const httpPort = await freePort();
  // Later options win over the task's own, so the test need not own 5433 and 9433.
  const proc = await spawnBackground([
    "setsid",
    Deno.execPath(),
    "task",
    "start",
    "--listen",
    `127.0.0.1:${port}`,
    "--http",
    `127.0.0.1:${httpPort}`,
  ], { cwd: REPO_ROOT, env: { NO_COLOR: "1" } });
  // setsid execs in place: the task runner's pid is the group's id.
  const group = (signal: Deno.Signal) => {
    try {
      Deno.kill(-proc.pid, signal);
    } catch { /* the group is gone */ }
  };
  try {
    await waitFor(() => /Ctrl-C stops the relay/.test(proc.stdout()), {
      timeoutMs: 30_000,
      message: `deno task start printed nothing to try:\n${proc.stdout()}\n${proc.stderr()}`,
    });
  } catch (e) {
    group("SIGKILL");
    await proc[Symbol.asyncDispose]();
    throw e;
  }
  return {
    proc,
    port,
    httpPort,
    ctrlC: () => group("SIGINT"),
    async [Symbol.asyncDispose]() {
      if (!proc.exited) group("SIGKILL");
      await proc[Symbol.asyncDispose]();
    },
  };
}

/** The printed line that starts with `prefix`, trimmed. */
function printedLine(out: string, prefix: string): string {
  const line = out.split("\n").map((l) => l.trim()).find((l) => l.startsWith(prefix));
  assert.ok(line, `no line starting with ${prefix} in:\n${out}`);
  return line;
}

Deno.test("deno task start: what it prints works as printed, and one Ctrl-C exits 0", async () => {
  await using task = await startTask();
  const out = task.proc.stdout();
  const dashboard = printedLine(out, "http://");
  assert.equal(dashboard, `http://127.0.0.1:${task.httpPort}/`);
  const psql = printedLine(out, "psql ");
  const receivewal = printedLine(out, "D=$(mktemp -d)");
  assert.match(receivewal, /--endpos 0\/BFFFFF/);
  assert.equal(out.match(/IDENTIFY_SYSTEM/g)?.length, 1, "printed more than once");

  const page = await fetch(dashboard);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /text\/html/);
  await page.body?.cancel();

  // The commands run exactly as printed, in a shell, with PostgreSQL 15's clients.
  await using tmp = await tempDir("walrelay-first-run-");
  const env = { PATH: `${await pgBinDir()}:${Deno.env.get("PATH")}`, TMPDIR: tmp.path };
  const identify = await run(["sh", "-c", psql], { env, timeoutMs: 20_000 });
  assert.equal(identify.code, 0, identify.stderr);
  assert.match(identify.stdout, /7711872075948452854 \| +2 \| 0\/C00000/);

  const pulled = await run(["sh", "-c", receivewal], { env, timeoutMs: 30_000 });
  assert.equal(pulled.code, 0, `${pulled.stderr}\n--- relay ---\n${task.proc.stderr()}`);
  assert.match(pulled.stderr, /switched to timeline 2 at 0\/997C58/);
  const [target] = [...Deno.readDirSync(tmp.path)].map((e) => join(tmp.path, e.name));
  assert.ok(target, "pg_receivewal's directory is missing");
  const sample = [...Deno.readDirSync(TESTDATA)].map((e) => e.name).filter(isSegmentName).sort();
  assert.deepEqual(await assertSegmentsMatch(target, TESTDATA), sample);

  // A client that streams and never answers holds the shutdown open, so both copies of the
  // signal surely arrive while it is under way.
  const client = await RawReplClient.connect(task.port);
  try {
    const r = await client.query("START_REPLICATION 0/900000 TIMELINE 2");
    assert.equal(r.copyBoth, true, JSON.stringify(r.error));
    task.ctrlC();
    await waitFor(() => /received shutdown request/.test(task.proc.stderr()), { timeoutMs: 5000 });
    // The relay may see the two copies as one signal when they arrive together; a copy that
    // arrives a little later (a slow forward, or a second press at once) is the same request.
    task.ctrlC();
    await delay(300);
    assert.equal(task.proc.exited, false, task.proc.stderr());
  } finally {
    client.close();
  }
  const status = await task.proc.status;
  const log = task.proc.stderr();
  assert.equal(status.code, 0, log);
  assert.match(log, /received SIGINT: shutting down after sending all WAL/);
  assert.match(log, /LOG: {2}shut down/);
  assert.doesNotMatch(log, /again/);
});

Deno.test("deno task start: a second Ctrl-C well after the first still exits at once", async () => {
  await using task = await startTask();
  // Streams and never answers: the graceful shutdown waits for it.
  using client = await RawReplClient.connect(task.port);
  const r = await client.query("START_REPLICATION 0/900000 TIMELINE 2");
  assert.equal(r.copyBoth, true, JSON.stringify(r.error));
  await waitFor(() => /starting replication/.test(task.proc.stderr()), { timeoutMs: 5000 });

  task.ctrlC();
  await waitFor(() => /received shutdown request/.test(task.proc.stderr()), { timeoutMs: 5000 });
  await delay(1500);
  assert.equal(task.proc.exited, false, "the first Ctrl-C did not wait for the client");
  assert.doesNotMatch(task.proc.stderr(), /again/);

  const t = performance.now();
  task.ctrlC();
  const status = await task.proc.status;
  assert.ok(performance.now() - t < 2000, task.proc.stderr());
  assert.notEqual(status.code, 0);
  assert.match(task.proc.stderr(), /received SIGINT again: exiting immediately/);
});

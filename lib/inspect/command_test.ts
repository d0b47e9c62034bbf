import assert from "node:assert/strict";
import { EXIT_CONSISTENT, EXIT_ERROR, EXIT_INCONSISTENT, runInspectCommand } from "./command.ts";

const WAL_DIR = new URL("../../testdata/wal", import.meta.url).pathname;
const manifest = JSON.parse(
  await Deno.readTextFile(new URL("../../testdata/wal.json", import.meta.url)),
);

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await runInspectCommand(args, {
    stdout: (s) => stdout += s,
    stderr: (s) => stderr += s,
    stderrIsTerminal: false,
  });
  return { code, stdout, stderr };
}

async function copyWithout(name: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "walrelay_inspect_cmd_" });
  for await (const e of Deno.readDir(WAL_DIR)) {
    if (e.name !== name) await Deno.copyFile(`${WAL_DIR}/${e.name}`, `${dir}/${e.name}`);
  }
  return dir;
}

Deno.test("inspect prints the sample WAL as text and exits 0", async () => {
  const { code, stdout, stderr } = await run([WAL_DIR]);
  assert.equal(code, EXIT_CONSISTENT);
  assert.equal(stderr, "");
  const [t1, t2] = manifest.timelines;
  assert.match(stdout, /^timeline 1$/m);
  assert.match(stdout, /^timeline 2$/m);
  assert.ok(stdout.includes(`${manifest.system_identifier}, segment size 1 MB, block size 8192`));
  assert.ok(stdout.includes(`PostgreSQL 15 (page magic 0xD110)`));
  assert.ok(stdout.includes(`switch      to timeline 2 at ${t2.switchpoint}`));
  assert.ok(stdout.includes(`switch      from timeline 1 at ${t2.switchpoint}`));
  assert.ok(
    stdout.includes(
      `valid end   ${t1.end_lsn}: invalid record length at ${t1.end_lsn}: wanted 24, got 0`,
    ),
  );
  assert.ok(stdout.includes(`valid end   ${t2.segment_end_lsn} (end of the last segment file)`));
  // The statistics table, laid out as pg_waldump's.
  assert.match(stdout, /^ {2}Type +N +\(%\) +Combined size +\(%\)$/m);
  assert.match(stdout, /^ {2}Heap +\d+ \( *\d+\.\d\d\) +\d+ \( *\d+\.\d\d\)$/m);
  assert.match(stdout, /^ {2}Total +\d+ +\d+ \[100%\]$/m);
  assert.match(stdout, /\nconsistent\n$/);
});

Deno.test("inspect --json prints the same report as JSON", async () => {
  const { code, stdout } = await run(["--json", WAL_DIR]);
  assert.equal(code, EXIT_CONSISTENT);
  const json = JSON.parse(stdout);
  assert.equal(json.consistent, true);
  assert.equal(json.systemId, manifest.system_identifier);
  assert.equal(json.segmentSize, manifest.segment_size);
  assert.equal(json.serverMajor, 15);
  assert.deepEqual(json.timelines.map((t: { timeline: number }) => t.timeline), [1, 2]);
  const [t1, t2] = json.timelines;
  assert.equal(t1.validEnd, manifest.timelines[0].end_lsn);
  assert.deepEqual(t1.forkedAt, { timeline: 2, lsn: manifest.timelines[1].switchpoint });
  assert.equal(t2.switchpoint, manifest.timelines[1].switchpoint);
  assert.equal(t2.validEnd, manifest.timelines[1].segment_end_lsn);
  assert.equal(t2.stop.kind, "end");
  const heap = t2.rmgrs.find((r: { name: string }) => r.name === "Heap");
  assert.ok(heap.records > 0 && heap.bytes > 0);
  assert.deepEqual(json.issues, []);
});

Deno.test("inspect exits 1 and names the gap when a segment is missing", async () => {
  const dir = await copyWithout("000000010000000000000007");
  try {
    const text = await run([dir]);
    assert.equal(text.code, EXIT_INCONSISTENT);
    assert.match(text.stdout, /^inconsistent:$/m);
    assert.match(
      text.stdout,
      /^ {2}timeline 1: segment 000000010000000000000007 is missing \(WAL from 0\/700000\)$/m,
    );
    assert.match(text.stdout, /^ {2}gaps {8}000000010000000000000007$/m);
    const json = await run(["--json", dir]);
    assert.equal(json.code, EXIT_INCONSISTENT);
    assert.equal(JSON.parse(json.stdout).issues[0].kind, "gap");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inspect of one segment file exits 0", async () => {
  const { code, stdout } = await run([`${WAL_DIR}/00000002000000000000000B`]);
  assert.equal(code, EXIT_CONSISTENT);
  assert.match(stdout, /: file, 1 segment file on 1 timeline\n/);
  assert.ok(stdout.includes(`valid end   ${manifest.timelines[1].segment_end_lsn}`));
});

Deno.test("inspect of an empty directory exits 0 with nothing to show", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrelay_inspect_cmd_" });
  try {
    await Deno.writeTextFile(`${dir}/README`, "not WAL");
    const { code, stdout } = await run([dir]);
    assert.equal(code, EXIT_CONSISTENT);
    assert.match(stdout, /0 segment files on 0 timelines/);
    assert.match(stdout, /^warning: skipped 1 other file\(s\): README$/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inspect exits 2 on usage and I/O errors", async () => {
  const none = await run([]);
  assert.equal(none.code, EXIT_ERROR);
  assert.match(none.stderr, /expected one DIR or FILE/);
  const two = await run([WAL_DIR, WAL_DIR]);
  assert.equal(two.code, EXIT_ERROR);
  const bad = await run(["--frobnicate", WAL_DIR]);
  assert.equal(bad.code, EXIT_ERROR);
  assert.match(bad.stderr, /^walrelay inspect: /);
  const missing = await run(["/nonexistent/walrelay"]);
  assert.equal(missing.code, EXIT_ERROR);
  assert.equal(
    missing.stderr,
    'walrelay inspect: could not inspect "/nonexistent/walrelay": No such file or directory\n',
  );
  const help = await run(["--help"]);
  assert.equal(help.code, EXIT_CONSISTENT);
  assert.match(help.stdout, /^Usage: walrelay inspect/);
  assert.equal(missing.stdout, "");
});

Deno.test("inspect follows symbolic links and refuses a single file that is not a segment", async () => {
  const dir = await Deno.makeTempDir({ prefix: "walrelay_inspect_cmd_" });
  try {
    for await (const e of Deno.readDir(WAL_DIR)) {
      await Deno.symlink(`${WAL_DIR}/${e.name}`, `${dir}/${e.name}`);
    }
    await Deno.mkdir(`${dir}/archive_status`);
    const linked = await run(["--json", dir]);
    const direct = await run(["--json", WAL_DIR]);
    assert.equal(linked.code, EXIT_CONSISTENT);
    const strip = (s: string): unknown => {
      const { path: _path, elapsedMs: _ms, ...rest } = JSON.parse(s);
      return rest;
    };
    assert.deepEqual(strip(linked.stdout), strip(direct.stdout));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const history = await run([`${WAL_DIR}/00000002.history`]);
  assert.equal(history.code, EXIT_ERROR);
  assert.match(history.stderr, /is not a WAL segment file/);
});

Deno.test("inspect draws no progress bar for a small directory, nor when stderr is no terminal", async () => {
  let stderr = "";
  let stdout = "";
  const code = await runInspectCommand([WAL_DIR], {
    stdout: (s) => stdout += s,
    stderr: (s) => stderr += s,
    stderrIsTerminal: true,
  });
  assert.equal(code, EXIT_CONSISTENT);
  assert.equal(stderr, "");
  assert.ok(!stdout.includes("\r"));
});

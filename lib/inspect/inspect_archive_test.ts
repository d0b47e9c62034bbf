import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { inspectWal } from "./inspect.ts";
import { pipeThroughTool } from "../archive/_test_utils.ts";
import { TESTDATA } from "../../tests/_pg.ts";

const plain = await inspectWal(TESTDATA);
const names: string[] = [];
for await (const e of Deno.readDir(TESTDATA)) names.push(e.name);
names.sort();
const bytes = (n: string): Promise<Uint8Array> => Deno.readFile(`${TESTDATA}/${n}`);
const sha1 = async (b: Uint8Array): Promise<string> =>
  new Uint8Array(await crypto.subtle.digest("SHA-1", b as Uint8Array<ArrayBuffer>)).toHex();

/** A directory holding `files` (relative path → bytes). */
async function tree(files: [string, Uint8Array][]): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "walrelay-inspect-archive-" });
  for (const [rel, b] of files) {
    const path = `${dir}/${rel}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeFile(path, b);
  }
  return dir;
}

/** What must not depend on how the files were stored. */
const essence = (r: Awaited<ReturnType<typeof inspectWal>>) =>
  r.timelines.map((t) => [t.timeline, t.segments, t.records, t.validEnd, t.stop.kind]);

Deno.test("inspect: a pg_receivewal --compress directory reads as the plain one", async () => {
  const dir = await tree(
    await Promise.all(
      names.map(async (n): Promise<[string, Uint8Array]> =>
        n.endsWith(".history")
          ? [n, await bytes(n)]
          : n.endsWith(".partial")
          ? [n.replace(".partial", ".gz.partial"), gzipSync(await bytes(n))]
          : [`${n}.lz4`, await pipeThroughTool("lz4", ["-q", "-c"], await bytes(n))]
      ),
    ),
  );
  try {
    const r = await inspectWal(dir);
    assert.ok(r.consistent, JSON.stringify(r.issues));
    assert.deepEqual(essence(r), essence(plain));
    assert.deepEqual(r.archive, { layout: "pg_receivewal", formats: { lz4: 6, gzip: 1 } });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inspect: a pgBackRest archive reads as the plain one; a wrong SHA-1 stops the timeline", async () => {
  const files = await Promise.all(names.map(async (n): Promise<[string, Uint8Array]> => {
    const b = await bytes(n);
    if (n.endsWith(".history")) return [`15-1/${n}`, b];
    return [
      `15-1/${n.slice(0, 16)}/${n}-${await sha1(b)}.zst`,
      await pipeThroughTool("zstd", ["-q", "-c"], b),
    ];
  }));
  const dir = await tree([["archive.info", new Uint8Array(1)], ...files]);
  try {
    const r = await inspectWal(dir);
    assert.ok(r.consistent, JSON.stringify(r.issues));
    assert.deepEqual(essence(r), essence(plain));
    assert.equal(r.archive?.layout, "pgbackrest");
    // The same bytes under another segment's checksum.
    const [path] = files.find(([p]) => p.includes("/000000010000000000000007-"))!;
    const wrong = path.replace(/-[0-9a-f]{40}/, `-${"0".repeat(40)}`);
    await Deno.rename(`${dir}/${path}`, `${dir}/${wrong}`);
    const damaged = await inspectWal(dir);
    const tl1 = damaged.timelines.find((t) => t.timeline === 1)!;
    assert.equal(tl1.stop.kind, "invalid");
    assert.match(tl1.stop.message, /000000010000000000000007-0{40}\.zst.*checksum mismatch/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inspect: an undecodable Barman file is an issue naming it", async () => {
  const files = await Promise.all(names.map(async (n): Promise<[string, Uint8Array]> => {
    const b = await bytes(n);
    return n.endsWith(".history") ? [`wals/${n}`, b] : [`wals/${n.slice(0, 16)}/${n}`, gzipSync(b)];
  }));
  const bad = files.find(([p]) => p.endsWith("/000000010000000000000008"))!;
  bad[1] = bad[1].slice(0, 20);
  bad[1][12] = 0xff;
  const dir = await tree(files);
  try {
    const r = await inspectWal(dir);
    assert.equal(r.archive?.layout, "barman");
    assert.equal(r.consistent, false);
    assert.ok(
      r.issues.some((i) =>
        i.kind === "damaged-archive" && /000000010000000000000008/.test(i.message)
      ),
      JSON.stringify(r.issues),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

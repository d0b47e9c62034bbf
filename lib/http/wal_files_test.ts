import assert from "node:assert/strict";
import { copyTestdata, flipByte } from "../../tests/_pg.ts";
import { WalStore } from "../wal/store.ts";
import { parseWalFileRequest, WalFiles } from "./wal_files.ts";

/** A copy of the sample WAL and a handler over it. */
async function sample(): Promise<{ dir: string; files: WalFiles } & AsyncDisposable> {
  const dir = await copyTestdata();
  const store = await WalStore.open(dir);
  return {
    dir,
    files: new WalFiles(() => store),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

async function text(res: Response): Promise<string> {
  return await res.text();
}

Deno.test("parseWalFileRequest: only what PostgreSQL's %f can be", () => {
  assert.deepEqual(parseWalFileRequest("00000002000000000000000A"), {
    kind: "segment",
    name: "00000002000000000000000A",
  });
  assert.deepEqual(parseWalFileRequest("00000002.history"), {
    kind: "history",
    name: "00000002.history",
  });
  for (
    const bad of [
      "",
      "00000002000000000000000a", // PostgreSQL writes upper case
      "000000020000000000000000A",
      "00000002000000000000000",
      "000000010000000000000009.partial",
      "000000010000000000000009.backup",
      "00000001000000000000000900000028.backup",
      "00000002.HISTORY",
      "0000002.history",
      "../000000010000000000000006",
      "..%2F000000010000000000000006",
      "000000010000000000000006/",
      "/etc/passwd",
      "000000010000000000000006\n",
      " 000000010000000000000006",
    ]
  ) {
    assert.equal(parseWalFileRequest(bad), undefined, JSON.stringify(bad));
  }
});

Deno.test("WalFiles: a complete segment and a history file, whole, with Content-Length; HEAD without a body", async () => {
  await using s = await sample();
  for (const name of ["000000010000000000000006", "00000002000000000000000B", "00000002.history"]) {
    const res = await s.files.handle(name, "GET");
    assert.equal(res.status, 200, name);
    assert.equal(res.headers.get("content-type"), "application/octet-stream");
    const want = await Deno.readFile(`${s.dir}/${name}`);
    assert.equal(res.headers.get("content-length"), String(want.length));
    assert.deepEqual(await res.bytes(), want, name);

    const head = await s.files.handle(name, "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), String(want.length));
    assert.equal(head.body, null);
  }
  assert.equal(s.files.requests.get("served"), 6);
});

Deno.test("WalFiles: bad names 400, missing files 404, a .partial and a segment beyond the end 404 without WAL", async () => {
  await using s = await sample();
  const bad = await s.files.handle("../00000002.history", "GET");
  assert.equal(bad.status, 400);
  assert.match(await text(bad), /^invalid WAL file name "\.\.\/00000002\.history"/);
  const partialName = await s.files.handle("000000010000000000000009.partial", "GET");
  assert.equal(partialName.status, 400);
  await partialName.body?.cancel();

  for (
    const name of [
      "000000010000000000000005", // before the first
      "00000003000000000000000B", // no such timeline
      "000000010000000000001000", // no 1 MiB segment has this name
      "00000003.history",
    ]
  ) {
    const res = await s.files.handle(name, "GET");
    assert.equal(res.status, 404, name);
    assert.equal(await text(res), `WAL file "${name}" is not in the relay's directory\n`);
  }

  // Timeline 1 ends in segment 9: the directory has only its .partial.
  const partial = await s.files.handle("000000010000000000000009", "GET");
  assert.equal(partial.status, 404);
  assert.equal(
    await text(partial),
    'WAL file "000000010000000000000009" is not complete: only "000000010000000000000009.partial" is in the relay\'s directory\n',
  );

  // A whole file past the valid end (a recycled or preallocated one): never served.
  await Deno.copyFile(`${s.dir}/00000002000000000000000B`, `${s.dir}/00000002000000000000000C`);
  const beyond = await s.files.handle("00000002000000000000000C", "GET");
  assert.equal(beyond.status, 404);
  assert.match(
    await text(beyond),
    /^WAL file "00000002000000000000000C" is not complete yet: valid WAL ends at 0\/C00000 on timeline 2\n$/,
  );
  // A file cut short.
  const head = (await Deno.readFile(`${s.dir}/00000002000000000000000B`)).subarray(0, 8192);
  await Deno.writeFile(`${s.dir}/00000002000000000000000B`, head);
  const cut = await s.files.handle("00000002000000000000000B", "GET");
  assert.equal(cut.status, 404);
  assert.match(await text(cut), /is not complete yet/);
  assert.equal(s.files.requests.get("bad_name"), 2);
  assert.equal(s.files.requests.get("not_found"), 4);
  assert.equal(s.files.requests.get("not_complete"), 3);
});

Deno.test("WalFiles: a damaged segment or history file is 500, naming it, and not a byte of it", async () => {
  await using s = await sample();
  await flipByte(`${s.dir}/000000010000000000000007`, 500_000);
  const res = await s.files.handle("000000010000000000000007", "GET");
  assert.equal(res.status, 500);
  assert.equal(res.headers.get("content-type"), "text/plain; charset=utf-8");
  assert.match(
    await text(res),
    /^WAL file "000000010000000000000007" is damaged: .* at 0\/7[0-9A-F]+\n$/,
  );
  // HEAD says the same.
  const head = await s.files.handle("000000010000000000000007", "HEAD");
  assert.equal(head.status, 500);
  await head.body?.cancel();

  await Deno.writeTextFile(`${s.dir}/00000003.history`, "this is no history\n");
  const history = await s.files.handle("00000003.history", "GET");
  assert.equal(history.status, 500);
  assert.match(await text(history), /^WAL file "00000003\.history" is damaged: syntax error/);
  assert.equal(s.files.requests.get("damaged"), 3);
});

Deno.test("WalFiles: no store yet is 404", async () => {
  const files = new WalFiles(() => {
    throw new Error("the WAL store is not open yet");
  });
  const res = await files.handle("000000010000000000000006", "GET");
  assert.equal(res.status, 404);
  assert.match(await text(res), /is not available: the WAL store is not open yet/);
});

Deno.test("WalFiles: a body still being sent is broken off when the server stops", async () => {
  const dir = await copyTestdata();
  try {
    const store = await WalStore.open(dir);
    const stop = new AbortController();
    const files = new WalFiles(() => store, stop.signal);
    const res = await files.handle("000000010000000000000006", "GET");
    assert.equal(res.status, 200);
    stop.abort();
    await assert.rejects(res.bytes(), /the server is stopping/);
    // Served after the stop: broken off at once, the file closed all the same.
    const late = await files.handle("000000010000000000000007", "GET");
    await assert.rejects(late.bytes(), /the server is stopping/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Replaces `dir/name` by `name.gz`, as `pg_receivewal --compress=gzip` stores it. */
async function gzipInPlace(dir: string, name: string): Promise<Uint8Array> {
  const plain = await Deno.readFile(`${dir}/${name}`);
  const gz = await new Response(
    ReadableStream.from([plain]).pipeThrough(new CompressionStream("gzip")),
  ).bytes();
  await Deno.writeFile(`${dir}/${name}.gz`, gz);
  await Deno.remove(`${dir}/${name}`);
  return gz;
}

Deno.test("WalFiles: a gzip-compressed segment is served as its plain, validated bytes; a corrupt one is 500 naming the file", async () => {
  const dir = await copyTestdata();
  try {
    const want = await Deno.readFile(`${dir}/000000010000000000000006`);
    await gzipInPlace(dir, "000000010000000000000006");
    const gz = await gzipInPlace(dir, "000000010000000000000007");
    // Damage the compressed stream in the middle: it no longer decodes to a segment.
    gz[gz.length >> 1]! ^= 0xff;
    gz[(gz.length >> 1) + 1]! ^= 0xff;
    await Deno.writeFile(`${dir}/000000010000000000000007.gz`, gz);
    const store = await WalStore.open(dir);
    const files = new WalFiles(() => store);

    const res = await files.handle("000000010000000000000006", "GET");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-length"), String(1 << 20));
    assert.deepEqual(await res.bytes(), want);
    const head = await files.handle("000000010000000000000006", "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), String(1 << 20));

    for (const method of ["GET", "HEAD"] as const) {
      const bad = await files.handle("000000010000000000000007", method);
      assert.equal(bad.status, 500, method);
      assert.equal(bad.headers.get("content-type"), "text/plain; charset=utf-8");
      assert.match(
        await text(bad),
        /^WAL file "000000010000000000000007" is damaged: archived WAL file ".*\/000000010000000000000007\.gz": /,
      );
    }
    // The segment before it was validated without following its last record into the damage.
    assert.equal(files.requests.get("served"), 2);
    assert.equal(files.requests.get("damaged"), 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("WalFiles: an older timeline's whole copy of its switch segment is served plain or compressed", async () => {
  for (const compressed of [false, true]) {
    const dir = await copyTestdata();
    try {
      // Timeline 1 switched within segment 8 here, and timeline 2 has its own segment 8 (its
      // bytes do not matter: the request is for timeline 1's whole file, which the store
      // passes over when streaming).
      await Deno.writeTextFile(`${dir}/00000002.history`, "1\t0/8A0000\tno recovery target\n");
      const name = "000000010000000000000008";
      await Deno.copyFile(`${dir}/${name}`, `${dir}/000000020000000000000008`);
      const want = await Deno.readFile(`${dir}/${name}`);
      if (compressed) await gzipInPlace(dir, name);
      const store = await WalStore.open(dir);
      assert.notEqual(store.segmentFile(1, 8n)?.name, name);
      const files = new WalFiles(() => store);
      const res = await files.handle(name, "GET");
      assert.equal(
        res.status,
        200,
        `${compressed ? "gzip" : "plain"}: ${await res.clone().text()}`,
      );
      assert.deepEqual(await res.bytes(), want);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

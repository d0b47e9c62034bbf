import assert from "node:assert/strict";
import { copyTestdata, flipByte } from "../../tests/_pg.ts";
import { validateFiles } from "./reader.ts";
import { type SegmentCheckRequest, SegmentValidations } from "./segment_validation.ts";
import { WalStore } from "./store.ts";

const SEG = 1 << 20;

/** The sample's segment `segno` of timeline 1, with the next one for a record running on. */
function request(dir: string, segno: number): SegmentCheckRequest {
  const name = (n: number) =>
    `0000000100000000000000${n.toString(16).toUpperCase().padStart(2, "0")}`;
  return {
    tli: 1,
    segno: BigInt(segno),
    name: name(segno),
    path: `${dir}/${name(segno)}`,
    next: { name: name(segno + 1), path: `${dir}/${name(segno + 1)}`, bytes: SEG, complete: true },
  };
}

async function validations(dir: string, log?: (m: string) => void): Promise<SegmentValidations> {
  const store = await WalStore.open(dir);
  return new SegmentValidations({ ...store.identity, ...(log ? { log } : {}) });
}

Deno.test("segment validation: once per file identity, shared by concurrent requests; a touch revalidates", async () => {
  const dir = await copyTestdata();
  try {
    const v = await validations(dir);
    const req = request(dir, 7);
    const [a, b, c] = await Promise.all([v.check(req), v.check(req), v.check(req)]);
    assert.equal(v.runs, 1, "three concurrent requests, one validation");
    assert.equal(a, b);
    assert.equal(b, c);
    assert.deepEqual(a, {
      fileName: "000000010000000000000007",
      validEnd: 0x800000n,
      error: undefined,
      errorFile: undefined,
    });
    await v.check(req);
    assert.equal(v.runs, 1, "unchanged file: the result is reused");

    // A new modification time is a new identity: validated again.
    const later = new Date(Date.now() + 60_000);
    await Deno.utime(req.path, later, later);
    await v.check(req);
    assert.equal(v.runs, 2);
    await v.check(req);
    assert.equal(v.runs, 2);

    // The record at the end of segment 7 runs on into segment 8: a new version of that file
    // revalidates segment 7 too.
    await Deno.utime(req.next!.path, later, new Date(Date.now() + 120_000));
    await v.check(req);
    assert.equal(v.runs, 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("segment validation: a flipped byte ends the valid WAL at the last good record, in xlogreader's words, logged once", async () => {
  const dir = await copyTestdata();
  try {
    const logged: string[] = [];
    const v = await validations(dir, (m) => logged.push(m));
    const req = request(dir, 7);
    await flipByte(req.path, 500_000);
    const r = await v.check(req);
    assert.equal(r.fileName, "000000010000000000000007");
    assert.equal(r.errorFile, "000000010000000000000007");
    assert.match(
      r.error!.message,
      /^incorrect resource manager data checksum in record at 0\/7[0-9A-F]{5}$/,
    );
    assert.ok(r.validEnd > 0x700000n && r.validEnd <= 0x700000n + 500_000n, `${r.validEnd}`);
    assert.equal(r.error!.lsn, r.validEnd, "the bad record begins where the last good one ends");
    // The whole chain from the sample's first segment stops at the same place.
    const whole = await validateFiles([request(dir, 6).path, req.path]);
    assert.equal(whole.validEnd, r.validEnd);
    assert.equal(whole.error?.message, r.error!.message);

    await v.check(req);
    assert.equal(v.runs, 1);
    assert.equal(logged.length, 1);
    assert.equal(
      logged[0],
      `WAL file "000000010000000000000007" is damaged: ${r.error!.message}; ` +
        `valid WAL of segment 000000010000000000000007 ends at 0/${
          r.validEnd.toString(16).toUpperCase()
        }`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("segment validation: the record that runs on into the next segment is checked there", async () => {
  const dir = await copyTestdata();
  try {
    const v = await validations(dir);
    const req = request(dir, 7);
    // Segment 8 begins with the last 7 bytes of a record begun in segment 7 (XLP_FIRST_IS_CONTRECORD).
    await flipByte(req.next!.path, 40 + 3);
    const r = await v.check(req);
    assert.match(r.error!.message, /^incorrect resource manager data checksum in record at 0\/7F/);
    assert.ok(r.validEnd < 0x800000n && r.validEnd > 0x7F0000n);
    // Segment 8 by itself begins with its first own record: the continuation is segment 7's.
    const r8 = await v.check(request(dir, 8));
    assert.equal(r8.error, undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("segment validation: without the next file, the record running on is the tail's business", async () => {
  const dir = await copyTestdata();
  try {
    const v = await validations(dir);
    const req = { ...request(dir, 7), next: undefined };
    const r = await v.check(req);
    assert.equal(r.error, undefined);
    assert.equal(r.validEnd, 0x800000n);
    await v.check(req);
    assert.equal(v.runs, 1);
    // Once the next file is there, the record is followed into it.
    await v.check(request(dir, 7));
    assert.equal(v.runs, 2);
    // A next file that is not the next segment (recycled, another cluster's) fails by itself
    // when a sender reaches it; the segment before it is whole.
    await Deno.copyFile(request(dir, 6).path, request(dir, 8).path);
    const recycled = await v.check(request(dir, 7));
    assert.equal(v.runs, 3);
    assert.equal(recycled.error, undefined);
    assert.equal(recycled.validEnd, 0x800000n);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("segment validation: memory is bounded by the number of results kept", async () => {
  const dir = await copyTestdata();
  try {
    const store = await WalStore.open(dir);
    const v = new SegmentValidations({ ...store.identity, capacity: 2 });
    for (const segno of [6, 7, 8]) await v.check(request(dir, segno));
    assert.equal(v.size, 2);
    assert.equal(v.runs, 3);
    // The oldest went first.
    await v.check(request(dir, 8));
    assert.equal(v.runs, 3);
    await v.check(request(dir, 6));
    assert.equal(v.runs, 4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("segment validation: the worker thread and this thread find the same", async () => {
  const dir = await copyTestdata();
  try {
    const store = await WalStore.open(dir);
    await flipByte(request(dir, 7).path, 300_000);
    const results = [];
    for (const worker of [true, false]) {
      const v = new SegmentValidations({ ...store.identity, worker });
      results.push(await Promise.all([6, 7, 8].map((n) => v.check(request(dir, n)))));
    }
    assert.deepEqual(results[0], results[1]);
    assert.ok(results[0]![1]!.error);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("segment validation: the switch segment is one file, validated once for both timelines", async () => {
  const dir = await copyTestdata();
  try {
    const store = await WalStore.open(dir);
    // Segment 9 of timeline 1 is read from timeline 2's file, as the walsender does.
    const [a, b] = await Promise.all([store.checkSegment(1, 9n), store.checkSegment(2, 9n)]);
    assert.equal(store.validations.runs, 1);
    assert.deepEqual(a, b);
    assert.equal(a?.fileName, "000000020000000000000009");
    assert.equal(a?.error, undefined);
    // Every segment of the sample is complete (the last ends in an XLOG_SWITCH) and valid.
    for (const [tli, segno] of [[1, 6n], [1, 7n], [1, 8n], [2, 10n], [2, 11n]] as const) {
      const r = await store.checkSegment(tli, segno);
      assert.equal(r?.error, undefined);
      assert.equal(r?.validEnd, (segno + 1n) << 20n);
    }
    assert.equal(store.checkSegment(2, 12n), undefined, "no such segment");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("segment validation: segments validated at once by two workers find what one thread finds, damage included", async () => {
  const dir = await copyTestdata();
  try {
    await flipByte(`${dir}/000000010000000000000007`, 300_000);
    const store = await WalStore.open(dir);
    const inThread = new SegmentValidations({ ...store.identity, worker: false });
    const pooled = new SegmentValidations({ ...store.identity, workers: 2 });
    const want = await Promise.all([6, 7].map((n) => inThread.check(request(dir, n))));
    const got = await Promise.all([6, 7].map((n) => pooled.check(request(dir, n))));
    assert.deepEqual(got, want);
    assert.ok(want[1]!.error, "the flipped byte is found");
    assert.equal(pooled.runs, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

import assert from "node:assert/strict";
import { WalStore } from "./store.ts";
import { parseLsn } from "./lsn.ts";
import { UnknownTimelineError } from "./errors.ts";

import { copyTestdata, tempDir, TESTDATA } from "../../tests/_pg.ts";

interface Manifest {
  system_identifier: string;
  segment_size: number;
  block_size: number;
  timelines: { timeline: number; switchpoint?: string; segment_end_lsn?: string }[];
  files: { name: string; size: number }[];
}
const manifest: Manifest = JSON.parse(
  await Deno.readTextFile(new URL("../../testdata/wal.json", import.meta.url)),
);

Deno.test("store: identity, timelines and end agree with the generator's manifest", async () => {
  const store = await WalStore.open(TESTDATA);
  assert.equal(store.identity.systemId.toString(), manifest.system_identifier);
  assert.equal(store.identity.segmentSize, manifest.segment_size);
  assert.equal(store.identity.blockSize, manifest.block_size);
  assert.equal(store.identity.serverMajor, 15);
  const newest = manifest.timelines.at(-1)!;
  assert.equal(store.timeline, newest.timeline);
  assert.equal(store.endLsn, parseLsn(newest.segment_end_lsn!));
  const tl1 = manifest.timelines[0]!;
  assert.equal(store.endOf(1), parseLsn(newest.switchpoint!), "TLI 1 ends at the switch point");
  assert.throws(
    () => store.endOf(7),
    (e: unknown) => e instanceof UnknownTimelineError && e.tli === 7,
  );
  assert.equal(tl1.timeline, 1);
});

Deno.test("store: the switch segment of the old timeline is read from the new timeline's file", async () => {
  const store = await WalStore.open(TESTDATA);
  const switchPoint = store.endOf(1);
  const segno = switchPoint / BigInt(store.identity.segmentSize);
  const f = store.segmentFile(1, segno);
  assert.equal(f?.tli, 2);
  assert.equal(f?.partial, false);
  assert.equal(store.segmentFile(1, segno - 1n)?.tli, 1);
});

Deno.test("store: a shared check answers for a complete segment; without an answer, or failing, the store validates it itself", async () => {
  const owner = await WalStore.open(TESTDATA);
  const asked: bigint[] = [];
  let mode: "answer" | "none" | "fail" = "answer";
  const store = await WalStore.open(TESTDATA, {
    sharedCheck: (tli, segno) => {
      asked.push(segno);
      if (mode === "fail") return Promise.reject(new Error("thread gone"));
      return mode === "none" ? Promise.resolve(undefined) : owner.checkSegment(tli, segno)!;
    },
  });
  const want = await owner.checkSegment(1, 7n);
  assert.deepEqual(await store.checkSegment(1, 7n), want);
  assert.equal(store.validations.runs, 0, "answered by the other store");
  mode = "none";
  assert.deepEqual(await store.checkSegment(1, 7n), want);
  assert.equal(store.validations.runs, 1, "validated here");
  mode = "fail";
  assert.deepEqual(await store.checkSegment(1, 6n), await owner.checkSegment(1, 6n));
  assert.equal(store.validations.runs, 2, "validated here");
  // Not complete: nobody is asked.
  assert.equal(store.checkSegment(2, 0x20n), undefined);
  assert.deepEqual(asked, [7n, 7n, 6n]);
});

Deno.test("store: a refresh told which files were written looks at those only; an unknown one makes it a whole rescan", async () => {
  await using tmp = await tempDir("walrelay-store-");
  const dir = await copyTestdata(tmp.path);
  // The newest segment, as pg_receivewal has it halfway: a `.partial` of its first pages.
  const last = "00000002000000000000000B";
  const whole = await Deno.readFile(`${dir}/${last}`);
  await Deno.remove(`${dir}/${last}`);
  const partial = `${dir}/${last}.partial`;
  await Deno.writeFile(partial, whole.subarray(0, 16 * 8192));
  const store = await WalStore.open(dir);
  const segStart = 0xB00000n;
  assert.ok(store.endLsn <= segStart + BigInt(16 * 8192), `end ${store.endLsn}`);
  // A file the store does not list yet, which only a listing finds.
  const unlisted = "000000020000000000000010";
  await Deno.writeFile(`${dir}/${unlisted}`, new Uint8Array(0));
  // The rest of the segment arrives.
  await Deno.writeFile(partial, whole.subarray(16 * 8192), { append: true });
  assert.equal(await store.refresh([`${last}.partial`, "not-wal.tmp"]), true);
  assert.equal(store.endLsn, parseLsn(manifest.timelines.at(-1)!.segment_end_lsn!));
  assert.equal(store.segmentFile(2, 0xBn)?.size, whole.length);
  assert.equal(store.segmentFile(2, 0x10n), undefined, "the directory was not listed");
  assert.equal(await store.refresh([`${last}.partial`]), false, "nothing new");
  await store.refresh([unlisted]);
  assert.equal(store.segmentFile(2, 0x10n)?.name, unlisted, "an unknown name: a whole rescan");
});

Deno.test("store: a recycled segment's header is read again once it is written to, or at a whole rescan", async () => {
  await using tmp = await tempDir("walrelay-store-");
  const dir = await copyTestdata(tmp.path);
  // The newest segment as PostgreSQL recycles one: an older segment's bytes under its name.
  const last = "00000002000000000000000B";
  const whole = await Deno.readFile(`${dir}/${last}`);
  await Deno.copyFile(`${dir}/000000020000000000000009`, `${dir}/${last}`);
  const told = await WalStore.open(dir);
  const listing = await WalStore.open(dir);
  for (const store of [told, listing]) {
    assert.equal(store.endLsn, 0xB00000n, "the recycled file is not trusted");
  }
  // Written over, in place, with no event for it yet.
  await Deno.writeFile(`${dir}/${last}`, whole);
  for (const store of [told, listing]) {
    await store.refresh(["00000002000000000000000A"]);
    assert.equal(store.endLsn, 0xB00000n, "its header was not read again");
  }
  await told.refresh([last]);
  assert.equal(told.endLsn, 0xC00000n, "written to: read again");
  await listing.refresh();
  assert.equal(listing.endLsn, 0xC00000n, "a whole rescan: read again");
});

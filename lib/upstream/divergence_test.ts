import assert from "node:assert/strict";
import { parseHistory } from "../wal/history.ts";
import { DIVERGED_DIR, findFork, setAside } from "./divergence.ts";

const SEG = 1 << 20;

async function listNames(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.isFile) names.push(e.name);
  return names.sort();
}

Deno.test("findFork: the relay's own later timeline diverged as a whole", () => {
  const local = parseHistory(2, "1\t0/3000100\tno recovery target specified\n");
  const upstream = parseHistory(3, "1\t0/2800000\tno recovery target specified\n");
  assert.deepEqual(findFork(local, 0x3500000n, upstream), {
    tli: 1,
    lsn: 0x2800000n,
    divergedTimelines: [2],
    next: 3,
  });
});

Deno.test("findFork: nothing diverged while the relay's WAL lies within the upstream's", () => {
  const upstream = parseHistory(3, "1\t0/3000100\tx\n\n2\t0/4000000\tx\n");
  // Behind the first switch, at it, and on timeline 2 below the second.
  assert.equal(findFork(parseHistory(1, undefined), 0x2000000n, upstream), undefined);
  assert.equal(findFork(parseHistory(1, undefined), 0x3000100n, upstream), undefined);
  const two = parseHistory(2, "1\t0/3000100\tx\n");
  assert.equal(findFork(two, 0x3F00000n, upstream), undefined);
  // On timeline 2 beyond the upstream's second switch.
  assert.deepEqual(findFork(two, 0x4000008n, upstream), {
    tli: 2,
    lsn: 0x4000000n,
    divergedTimelines: [],
    next: 3,
  });
  // The upstream still on the relay's timeline: nothing to compare.
  assert.equal(findFork(two, 0x4000008n, two), undefined);
});

Deno.test("findFork: a timeline of the same ID that began elsewhere is not the same", () => {
  const local = parseHistory(2, "1\t0/3000100\tx\n");
  const upstream = parseHistory(3, "1\t0/2000000\tx\n\n2\t0/2500000\tx\n");
  assert.deepEqual(findFork(local, 0x3100000n, upstream), {
    tli: 1,
    lsn: 0x2000000n,
    divergedTimelines: [2],
    next: 2,
  });
});

async function segmentDir(files: Record<string, number>): Promise<string> {
  const dir = await Deno.makeTempDir();
  for (const [name, fill] of Object.entries(files)) {
    await Deno.writeFile(`${dir}/${name}`, new Uint8Array(SEG).fill(fill));
  }
  return dir;
}

Deno.test("setAside: the fork's segment is copied whole and cut to the fork", async () => {
  const dir = await segmentDir({
    "000000010000000000000004": 4,
    "000000010000000000000005": 5,
    "000000010000000000000006": 6,
    "000000010000000000000007.partial": 7,
  });
  try {
    const fork = { tli: 1, lsn: 0x540010n, divergedTimelines: [], next: 2 };
    const d = await setAside(dir, SEG, fork, 0x780000n);
    const target = `${dir}/${DIVERGED_DIR}/00000001-0000000000540010`;
    assert.equal(d.path, `${DIVERGED_DIR}/00000001-0000000000540010`);
    assert.equal(d.prefixKept, true);
    assert.deepEqual(d.files, [
      "000000010000000000000005",
      "000000010000000000000006",
      "000000010000000000000007.partial",
    ]);
    assert.deepEqual(await listNames(target), d.files);
    assert.deepEqual(await listNames(dir), [
      "000000010000000000000004",
      "000000010000000000000005.partial",
    ]);
    // The copy is the original, whole.
    assert.ok((await Deno.readFile(`${target}/000000010000000000000005`)).every((b) => b === 5));
    const cut = await Deno.readFile(`${dir}/000000010000000000000005.partial`);
    assert.equal(cut.length, SEG);
    assert.ok(cut.subarray(0, 0x40010).every((b) => b === 5));
    assert.ok(cut.subarray(0x40010).every((b) => b === 0));

    // Again, as after a crash midway: nothing is set aside twice, the first copy stays.
    await Deno.writeFile(`${dir}/000000010000000000000006`, new Uint8Array(SEG).fill(9));
    const again = await setAside(dir, SEG, fork, 0x780000n);
    assert.deepEqual(again.files, []);
    assert.ok((await Deno.readFile(`${target}/000000010000000000000005`)).every((b) => b === 5));
    assert.ok((await Deno.readFile(`${target}/000000010000000000000006`)).every((b) => b === 6));
    assert.deepEqual(await listNames(dir), [
      "000000010000000000000004",
      "000000010000000000000005.partial",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("setAside: a fork at a segment boundary moves that segment whole", async () => {
  const dir = await segmentDir({
    "000000010000000000000004": 4,
    "000000010000000000000005.partial": 5,
  });
  try {
    const fork = { tli: 1, lsn: 0x500000n, divergedTimelines: [], next: 2 };
    const d = await setAside(dir, SEG, fork, 0x540000n);
    assert.deepEqual(d.files, ["000000010000000000000005.partial"]);
    assert.equal(d.prefixKept, true);
    assert.deepEqual(await listNames(dir), ["000000010000000000000004"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("setAside: without the fork's segment there is no prefix to keep", async () => {
  const dir = await segmentDir({ "000000010000000000000006": 6 });
  try {
    const fork = { tli: 1, lsn: 0x540010n, divergedTimelines: [], next: 2 };
    const d = await setAside(dir, SEG, fork, 0x680000n);
    assert.deepEqual(d.files, ["000000010000000000000006"]);
    assert.equal(d.prefixKept, false);
    assert.deepEqual(await listNames(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("setAside: diverged timelines go with their history files", async () => {
  const dir = await segmentDir({
    "000000010000000000000004": 4,
    "000000010000000000000005": 5,
    "000000020000000000000005": 5,
    "000000020000000000000006.partial": 6,
  });
  await Deno.writeTextFile(`${dir}/00000002.history`, "1\t0/580000\tx\n");
  try {
    const fork = { tli: 1, lsn: 0x520000n, divergedTimelines: [2], next: 3 };
    const d = await setAside(dir, SEG, fork, 0x610000n);
    assert.deepEqual(d.files, [
      "000000010000000000000005",
      "00000002.history",
      "000000020000000000000005",
      "000000020000000000000006.partial",
    ]);
    assert.deepEqual(await listNames(dir), [
      "000000010000000000000004",
      "000000010000000000000005.partial",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

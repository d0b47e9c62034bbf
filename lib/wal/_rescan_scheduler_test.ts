import assert from "node:assert/strict";
import { RescanScheduler } from "./_rescan_scheduler.ts";
import { tempDir, waitFor } from "../../tests/_pg.ts";

/** A store whose refreshes take as long as the test says, and are recorded. */
function slowStore() {
  const asked: (string[] | "whole")[] = [];
  const pending: (() => void)[] = [];
  return {
    asked,
    /** Ends the refresh that runs. */
    finish: async (): Promise<void> => {
      pending.shift()?.();
      // Let the scheduler see it end and start the next.
      for (let i = 0; i < 5; i++) await Promise.resolve();
    },
    refresh(modified?: readonly string[]): Promise<void> {
      asked.push(modified ? [...modified].sort() : "whole");
      return new Promise((resolve) => pending.push(resolve));
    },
  };
}

Deno.test("rescan scheduler: a write, or a close after writing, looks at the file; any other event, a whole rescan", async () => {
  const store = slowStore();
  const s = new RescanScheduler(store, { onError: () => {} });
  s.event({ kind: "modify", paths: ["/wal/000000010000000000000003.partial"] });
  await store.finish();
  s.event({ kind: "access", paths: ["/wal/000000010000000000000003.partial"] });
  await store.finish();
  for (const kind of ["create", "rename", "remove", "other", "any"] as const) {
    s.event({ kind, paths: ["/wal/000000010000000000000004"] });
    await store.finish();
  }
  assert.deepEqual(store.asked, [
    ["000000010000000000000003.partial"],
    ["000000010000000000000003.partial"],
    "whole",
    "whole",
    "whole",
    "whole",
    "whole",
  ]);
  s.stop();
});

Deno.test("rescan scheduler: one look at a time; what is asked meanwhile is merged into the next", async () => {
  const store = slowStore();
  const s = new RescanScheduler(store, { onError: () => {} });
  s.event({ kind: "modify", paths: ["/wal/a"] });
  s.event({ kind: "modify", paths: ["/wal/b"] });
  s.event({ kind: "modify", paths: ["/wal/c", "/wal/b"] });
  await store.finish();
  s.event({ kind: "modify", paths: ["/wal/d"] });
  s.rescan();
  s.event({ kind: "modify", paths: ["/wal/e"] });
  await store.finish();
  await store.finish();
  await s.idle();
  // The whole rescan covers the files written while it was asked for.
  assert.deepEqual(store.asked, [["a"], ["b", "c"], "whole"]);
  s.stop();
});

Deno.test("rescan scheduler: while a long rescan's successor waits its turn, written files are still looked at", async () => {
  let now = 0;
  const asked: (string[] | "whole")[] = [];
  const store = {
    refresh(modified?: readonly string[]): Promise<void> {
      asked.push(modified ? [...modified] : "whole");
      if (!modified) now += 100; // a listing of 100 ms: the next waits 900 ms
      return Promise.resolve();
    },
  };
  const s = new RescanScheduler(store, { onError: () => {}, now: () => now });
  s.rescan();
  await s.idle();
  s.rescan();
  s.event({ kind: "modify", paths: ["/wal/x.partial"] });
  await s.idle();
  assert.deepEqual(asked, ["whole", ["x.partial"]], "the second listing waits");
  s.stop();
  s.event({ kind: "modify", paths: ["/wal/y.partial"] });
  await s.idle();
  assert.equal(asked.length, 2, "stopped: nothing more");
});

Deno.test("rescan scheduler: a failed look is told, and the next is made", async () => {
  const errors: string[] = [];
  let calls = 0;
  const store = {
    refresh(): Promise<void> {
      calls++;
      return calls === 1 ? Promise.reject(new Error("EIO")) : Promise.resolve();
    },
  };
  const s = new RescanScheduler(store, { onError: (e) => errors.push(e.message) });
  s.rescan();
  await s.idle();
  s.rescan();
  await s.idle();
  assert.deepEqual(errors, ["EIO"]);
  assert.equal(calls, 2);
  s.stop();
});

Deno.test("rescan scheduler: watching a flat directory, a write names its file and a new file asks for a whole rescan", async () => {
  await using dir = await tempDir("walrelay-watch-");
  await Deno.writeFile(`${dir.path}/a`, new Uint8Array(1));
  const asked: (string[] | "whole")[] = [];
  const store = {
    refresh(modified?: readonly string[]): Promise<void> {
      asked.push(modified ? [...modified] : "whole");
      return Promise.resolve();
    },
  };
  const failures: Error[] = [];
  const s = new RescanScheduler(store, { onError: () => {} });
  const watching = s.watch(dir.path, "plain", (e) => failures.push(e));
  await Deno.writeFile(`${dir.path}/a`, new Uint8Array(1), { append: true });
  await waitFor(() => asked.some((a) => a !== "whole" && a.includes("a")), {
    timeoutMs: 5000,
    intervalMs: 10,
    message: `a write to "a" looked at: ${JSON.stringify(asked)}`,
  });
  assert.ok(!asked.includes("whole"), JSON.stringify(asked));
  await Deno.writeFile(`${dir.path}/b`, new Uint8Array(1));
  await waitFor(() => asked.includes("whole"), {
    timeoutMs: 5000,
    intervalMs: 10,
    message: `a new file made a whole rescan: ${JSON.stringify(asked)}`,
  });
  s.stop();
  await watching;
  assert.deepEqual(failures, [], "stopping is not a failure");
});

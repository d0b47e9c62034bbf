import assert from "node:assert/strict";
import { walDirHint } from "./_layout_hint.ts";

async function tree(dirs: string[], fn: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir();
  try {
    for (const d of dirs) await Deno.mkdir(`${root}/${d}`, { recursive: true });
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("walDirHint: the directories above the WAL name where it is", async () => {
  await tree(["base", "pg_wal"], async (r) => {
    assert.match(
      (await walDirHint(r))!,
      new RegExp(`data directory, whose WAL is in "${r}/pg_wal"`),
    );
  });
  await tree(["pg_xlog"], async (r) => {
    assert.match((await walDirHint(r))!, /"[^"]*\/pg_xlog"/);
  });
  const stanzas = ["a/15-1", "b/17-2/0000000100000000", "c/9.6-1", "d/18-1", "notes"];
  await tree(stanzas.map((s) => `archive/${s}`), async (r) => {
    assert.equal(
      await walDirHint(r),
      `it looks like a pgBackRest repository, whose WAL is in a stanza's archive: ` +
        `"${r}/archive/a", "${r}/archive/b", "${r}/archive/c" and 1 more`,
    );
    assert.equal(
      await walDirHint(`${r}/archive`),
      `it looks like a pgBackRest repository's archive directory, whose WAL is in a stanza's: ` +
        `"${r}/archive/a", "${r}/archive/b", "${r}/archive/c" and 1 more`,
    );
  });
  await tree(["pg1/wals/0000000100000000", "pg1/streaming", "other"], async (r) => {
    assert.equal(
      await walDirHint(r),
      `it looks like Barman's home, whose WAL is in a server's directory: "${r}/pg1"`,
    );
  });
});

Deno.test("walDirHint: nothing to say of other directories, or of one that is gone", async () => {
  await tree(["x/y", "archive/z/not-a-major"], async (r) => {
    assert.equal(await walDirHint(r), undefined);
    assert.equal(await walDirHint(`${r}/missing`), undefined);
  });
});

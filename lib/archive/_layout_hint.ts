/**
 * Where the WAL may be when a directory holds none: the directories operators give by mistake
 * are a data directory, a pgBackRest repository (or its `archive/`) and Barman's home, each a
 * level or two above the WAL. Not part of the public API.
 *
 * @module
 */

import { join } from "../wal/_path.ts";

/** The names of `dir`'s subdirectories, sorted; none when it cannot be read. */
async function subdirs(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) if (e.isDirectory) out.push(e.name);
  } catch {
    // Unreadable or gone: nothing to suggest there.
  }
  return out.sort();
}

/** Whether `dir` is a pgBackRest stanza's archive: it holds `<major>-<id>` directories. */
async function isStanzaArchive(dir: string): Promise<boolean> {
  return (await subdirs(dir)).some((d) => /^\d+(\.\d+)?-\d+$/.test(d));
}

/** Up to three names, then how many more. */
function some(names: string[]): string {
  const shown = names.slice(0, 3).map((n) => `"${n}"`).join(", ");
  return names.length > 3 ? `${shown} and ${names.length - 3} more` : shown;
}

/**
 * A hint naming the directories below `dir` that hold WAL in a layout walrelay reads, when `dir`
 * looks like one of the directories above them; `undefined` otherwise.
 *
 * @param dir A directory in which no WAL file was found.
 */
export async function walDirHint(dir: string): Promise<string | undefined> {
  const below = await subdirs(dir);
  if (below.includes("pg_wal") || below.includes("pg_xlog")) {
    const wal = below.includes("pg_wal") ? "pg_wal" : "pg_xlog";
    return `it looks like a PostgreSQL data directory, whose WAL is in "${join(dir, wal)}"`;
  }
  const stanzasIn = async (archive: string) => {
    const found: string[] = [];
    for (const s of await subdirs(archive)) {
      if (await isStanzaArchive(join(archive, s))) found.push(join(archive, s));
    }
    return found;
  };
  if (below.includes("archive")) {
    const stanzas = await stanzasIn(join(dir, "archive"));
    if (stanzas.length) {
      return `it looks like a pgBackRest repository, whose WAL is in a stanza's archive: ${
        some(stanzas)
      }`;
    }
  }
  const stanzas = await stanzasIn(dir);
  if (stanzas.length) {
    return `it looks like a pgBackRest repository's archive directory, whose WAL is in a stanza's: ${
      some(stanzas)
    }`;
  }
  const servers: string[] = [];
  for (const s of below) {
    if ((await subdirs(join(dir, s))).includes("wals")) servers.push(join(dir, s));
  }
  if (servers.length) {
    return `it looks like Barman's home, whose WAL is in a server's directory: ${some(servers)}`;
  }
  return undefined;
}

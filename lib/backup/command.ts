/**
 * `walrelay backup`: `import PATH --wal-dir DIR` stores a `pg_basebackup -Ft` output for
 * serving; `list --wal-dir DIR` shows what is stored.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { formatLsn } from "../wal/lsn.ts";
import { importBackup } from "./import.ts";
import { BackupStore } from "./store.ts";

const USAGE = `Usage:
  walrelay backup import PATH --wal-dir DIR   store a pg_basebackup -Ft output (with its
                                              backup_manifest) for BASE_BACKUP; DIR must hold
                                              the backup's WAL from its start to its end
  walrelay backup list --wal-dir DIR          the stored base backups
`;

/**
 * Runs `walrelay backup …`.
 *
 * @returns The exit code: 0 done, 1 failed, 2 bad usage.
 *
 * @example
 * ```ts ignore
 * Deno.exit(await runBackupCommand(["import", "/tmp/bb", "--wal-dir", "/srv/wal"]));
 * ```
 */
export async function runBackupCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { "wal-dir": { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
    });
  } catch (e) {
    console.error(`walrelay backup: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const [sub, path, ...extra] = positionals;
  const walDir = values["wal-dir"];
  if (!walDir || extra.length > 0 || (sub === "import" && !path) || (sub === "list" && path)) {
    console.error(USAGE);
    return 2;
  }
  try {
    if (sub === "import") {
      const info = await importBackup(path!, {
        walDir,
        log: (m) => console.error(`walrelay backup: ${m}`),
      });
      console.log(
        `stored base backup "${info.id}": ${formatLsn(info.startLsn)} to ${
          formatLsn(info.endLsn)
        } on timeline ${info.timeline}, PostgreSQL ${info.major}, label "${info.label}"`,
      );
      return 0;
    }
    if (sub === "list") {
      const store = await BackupStore.open(walDir, { cleanup: false });
      for (const b of store.list()) {
        console.log(
          `${b.id}  ${formatLsn(b.startLsn)}..${
            formatLsn(b.endLsn)
          }  tli ${b.timeline}  PG ${b.major}  ${b.source}  ${b.storedAt.toISOString()}  ${b.label}`,
        );
      }
      return 0;
    }
  } catch (e) {
    console.error(`walrelay backup: ${(e as Error).message}`);
    return 1;
  }
  console.error(USAGE);
  return 2;
}

/**
 * Where resolving a connection string reads the outside world: environment variables, the home
 * directory, files with their modes. Tests replace it.
 *
 * @module
 */

/** Where conninfo resolution reads the outside world; tests replace it. */
export interface ConninfoEnvironment {
  /** Environment variable lookup. */
  env(name: string): string | undefined;
  /** The home directory (for `~/.pgpass` and `~/.postgresql/…`). */
  home(): string | undefined;
  /**
   * Reads a file with its mode bits (and owner, for the private key check), or `undefined` when
   * it does not exist.
   */
  readFile(path: string): { text: string; mode: number | null; uid?: number | null } | undefined;
  /** Receives warnings (a group/world readable password file). */
  warn(message: string): void;
}

/** The real environment: `Deno.env`, `$HOME`, files on disk, warnings on stderr. */
export const processEnvironment: ConninfoEnvironment = {
  env: (name) => {
    try {
      return Deno.env.get(name);
    } catch {
      return undefined; // no --allow-env
    }
  },
  home: () => {
    try {
      return Deno.env.get("HOME");
    } catch {
      return undefined;
    }
  },
  readFile: (path) => {
    try {
      const info = Deno.statSync(path);
      if (!info.isFile) return undefined;
      return { text: Deno.readTextFileSync(path), mode: info.mode, uid: info.uid };
    } catch {
      return undefined;
    }
  },
  warn: (message) => console.error(`WARNING: ${message}`),
};

/**
 * A one-line progress bar for a terminal: bytes done of a total, redrawn in place.
 *
 * @module
 */

/** Options of {@linkcode ProgressBar}. */
export interface ProgressBarOptions {
  /** Writes text to the terminal (stderr, so stdout stays clean for the report). */
  write: (text: string) => void;
  /** Cells of the bar (default 30). */
  width?: number;
  /** Least time between redraws, in milliseconds (default 100). */
  intervalMs?: number;
  /** The clock, in milliseconds; a test may pass its own. */
  now?: () => number;
}

const MB = 1024 * 1024;

/**
 * Draws `[#####.....]  45%  115.2/256.0 MB  812.3 MB/s` with a carriage return, at most every
 * `intervalMs`, so the cost stays negligible however often it is told of progress.
 *
 * @example
 * ```ts
 * import { ProgressBar } from "./progress_bar.ts";
 * import assert from "node:assert/strict";
 * let out = "";
 * let t = 0;
 * const bar = new ProgressBar({ write: (s) => out += s, width: 10, now: () => t });
 * t = 1000;
 * bar.update(50 * 1024 * 1024, 100 * 1024 * 1024);
 * assert.equal(out, "\r[#####.....]  50%  50.0/100.0 MB  50.0 MB/s");
 * bar.finish();
 * assert.ok(out.endsWith("\r\x1b[2K"));
 * ```
 */
export class ProgressBar {
  readonly #write: (text: string) => void;
  readonly #width: number;
  readonly #interval: number;
  readonly #now: () => number;
  readonly #began: number;
  #last = -Infinity;
  #drawn = false;

  /** Creates a bar; nothing is drawn until the first {@linkcode ProgressBar.update}. */
  constructor(opts: ProgressBarOptions) {
    this.#write = opts.write;
    this.#width = opts.width ?? 30;
    this.#interval = opts.intervalMs ?? 100;
    this.#now = opts.now ?? (() => performance.now());
    this.#began = this.#now();
  }

  /** Redraws the bar for `done` of `total` bytes, unless it was drawn very recently. */
  update(done: number, total: number): void {
    const now = this.#now();
    if (now - this.#last < this.#interval && done < total) return;
    this.#last = now;
    const ratio = total > 0 ? Math.min(1, done / total) : 1;
    const cells = Math.round(ratio * this.#width);
    const seconds = (now - this.#began) / 1000;
    const rate = seconds > 0 ? `  ${(done / MB / seconds).toFixed(1)} MB/s` : "";
    this.#write(
      `\r[${"#".repeat(cells)}${".".repeat(this.#width - cells)}] ` +
        `${String(Math.floor(ratio * 100)).padStart(3)}%  ` +
        `${(done / MB).toFixed(1)}/${(total / MB).toFixed(1)} MB${rate}`,
    );
    this.#drawn = true;
  }

  /** Erases the bar, leaving the cursor at the start of an empty line. */
  finish(): void {
    if (this.#drawn) this.#write("\r\x1b[2K");
    this.#drawn = false;
  }
}

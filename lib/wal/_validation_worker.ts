/**
 * The worker thread of `SegmentValidations`: validates segments as asked and answers with the
 * outcome; once idle for a while it says so and ends, so it never keeps the process alive.
 *
 * @module
 */

import { validateSegment } from "./_segment_check.ts";
import type { ValidationSettings } from "./_segment_check.ts";
import type { SegmentCheckRequest } from "./segment_validation.ts";

/** How long an idle worker waits for more work before it ends. */
const IDLE_MS = 500;

const scope = self as unknown as {
  onmessage: (e: MessageEvent) => void;
  postMessage(message: unknown): void;
  close(): void;
};

let inFlight = 0;
let idle: ReturnType<typeof setTimeout> | undefined;

scope.onmessage = async (e: MessageEvent) => {
  const { id, request, settings } = e.data as {
    id: number;
    request: SegmentCheckRequest;
    settings: ValidationSettings;
  };
  clearTimeout(idle);
  inFlight++;
  try {
    scope.postMessage({ id, outcome: await validateSegment(request, settings) });
  } catch (err) {
    const { name, message } = err instanceof Error ? err : new Error(String(err));
    scope.postMessage({ id, error: { name, message } });
  } finally {
    if (--inFlight === 0) {
      idle = setTimeout(() => {
        scope.postMessage({ bye: true });
        scope.close();
      }, IDLE_MS);
    }
  }
};

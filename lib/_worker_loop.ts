/**
 * The loop of walrelay's worker threads (validation, decoding): answer each request by its `id`,
 * and once idle for a while say `bye` and end, so a worker never keeps the process alive. Not
 * part of the public API.
 *
 * @module
 */

/**
 * How long an idle worker waits for more work before it ends. A sender on a busy machine may ask
 * for a segment only every few hundred milliseconds, and a worker started anew loads its modules
 * and compiles its hot loops again: long enough to outlast such gaps, short enough that a command
 * that is done exits soon after.
 */
const IDLE_MS = 2000;

/**
 * Runs inside a worker: `handle` turns each request (a message with a numeric `id`) into the
 * fields of its answer; a thrown error goes back as `{ id, error: { name, message } }`.
 *
 * @param handle Does the work of one request.
 */
export function serveUntilIdle(
  handle: (request: { id: number } & Record<string, unknown>) => Promise<Record<string, unknown>>,
): void {
  const scope = self as unknown as {
    onmessage: (e: MessageEvent) => void;
    postMessage(message: unknown): void;
    close(): void;
  };
  let inFlight = 0;
  let idle: ReturnType<typeof setTimeout> | undefined;
  scope.onmessage = async (e: MessageEvent) => {
    const request = e.data as { id: number } & Record<string, unknown>;
    clearTimeout(idle);
    inFlight++;
    try {
      scope.postMessage({ id: request.id, ...await handle(request) });
    } catch (err) {
      const { name, message } = err instanceof Error ? err : new Error(String(err));
      scope.postMessage({ id: request.id, error: { name, message } });
    } finally {
      if (--inFlight === 0) {
        idle = setTimeout(() => {
          scope.postMessage({ bye: true });
          scope.close();
        }, IDLE_MS);
      }
    }
  };
}

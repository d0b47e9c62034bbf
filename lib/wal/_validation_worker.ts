/**
 * The worker thread of `SegmentValidations`: validates segments as asked and answers with the
 * outcome.
 *
 * @module
 */

import { serveUntilIdle } from "../_worker_loop.ts";
import { validateSegment } from "./_segment_check.ts";
import type { ValidationSettings } from "./_segment_check.ts";
import type { SegmentCheckRequest } from "./segment_validation.ts";

serveUntilIdle(async (data) => {
  const { request, settings } = data as unknown as {
    request: SegmentCheckRequest;
    settings: ValidationSettings;
  };
  return { outcome: await validateSegment(request, settings) };
});

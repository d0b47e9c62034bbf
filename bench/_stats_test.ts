import assert from "node:assert/strict";
import { distribution, mean, median, percentile, ratio } from "./_stats.ts";

Deno.test("median: odd and even counts, unsorted input left alone", () => {
  const input = [3, 1, 2];
  assert.equal(median(input), 2);
  assert.deepEqual(input, [3, 1, 2]);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.equal(median([7]), 7);
  assert.ok(Number.isNaN(median([])));
});

Deno.test("percentile: nearest rank, never interpolated", () => {
  const hundred = Array.from({ length: 100 }, (_, i) => 100 - i);
  assert.equal(percentile(hundred, 50), 50);
  assert.equal(percentile(hundred, 99), 99);
  assert.equal(percentile(hundred, 100), 100);
  assert.equal(percentile(hundred, 0), 1);
  // Ten values: p99 is the largest, p90 the ninth.
  const ten = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
  assert.equal(percentile(ten, 99), 100);
  assert.equal(percentile(ten, 90), 90);
  assert.equal(percentile(ten, 50), 50);
  assert.equal(percentile([-0.5, 0.25], 50), -0.5);
  assert.ok(Number.isNaN(percentile([], 50)));
});

Deno.test("mean and distribution", () => {
  assert.equal(mean([1, 2, 6]), 3);
  assert.ok(Number.isNaN(mean([])));
  assert.deepEqual(distribution([4, 2, 9, 1]), {
    p50: 2,
    p90: 9,
    p99: 9,
    min: 1,
    max: 9,
    mean: 4,
  });
  assert.ok(Object.values(distribution([])).every(Number.isNaN));
});

Deno.test("ratio: only of two positive figures", () => {
  assert.equal(ratio(3, 2), 1.5);
  assert.ok(Number.isNaN(ratio(0, 2)));
  assert.ok(Number.isNaN(ratio(2, 0)));
  assert.ok(Number.isNaN(ratio(-1, -2)));
});

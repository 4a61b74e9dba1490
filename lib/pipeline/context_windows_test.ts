import assert from "node:assert/strict";
import {
  checkContextOptions,
  type ContextSchedule,
  contextWindows,
  orderedHalving,
} from "./context_windows.ts";

interface Case {
  frames: number;
  step: number;
  length: number;
  overlap: number;
  stride: number;
  schedule: ContextSchedule;
  closedLoop: boolean;
  windows: number[][];
}

const table = JSON.parse(
  await Deno.readTextFile(new URL("./testdata/context_windows.json", import.meta.url)),
) as { cases: Case[] };

Deno.test("contextWindows() matches AnimateDiff-Evolved's uniform schedules (42 cases)", () => {
  for (const c of table.cases) {
    const got = contextWindows(c.frames, c.step, {
      length: c.length,
      overlap: c.overlap,
      stride: c.stride,
      schedule: c.schedule,
      closedLoop: c.closedLoop,
    });
    assert.deepEqual(got, c.windows, JSON.stringify({ ...c, windows: undefined }));
  }
});

Deno.test("contextWindows() gives one window of every frame when the clip fits", () => {
  for (const step of [0, 1, 2, 7]) {
    for (const schedule of ["standard_uniform", "looped_uniform"] as const) {
      assert.deepEqual(contextWindows(16, step, { length: 16, overlap: 4, schedule }), [
        Array.from({ length: 16 }, (_, i) => i),
      ]);
    }
  }
});

Deno.test("contextWindows() covers every frame of a 24-frame clip with 16-frame windows", () => {
  for (let step = 0; step < 8; step++) {
    const windows = contextWindows(24, step, { length: 16, overlap: 4 });
    const seen = new Set(windows.flat());
    assert.equal(seen.size, 24, `step ${step}`);
    assert.ok(windows.every((w) => w.length === 16));
  }
});

Deno.test("contextWindows() refuses a stride whose windows run past the clip", () => {
  assert.throws(
    () => contextWindows(17, 0, { length: 16, overlap: 4, stride: 2 }),
    /lower --context-stride/,
  );
});

Deno.test("orderedHalving() reverses the bits of the step", () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5].map(orderedHalving), [0, 0.5, 0.25, 0.75, 0.125, 0.625]);
});

Deno.test("checkContextOptions() refuses windows that cannot tile a clip, naming the flag", () => {
  assert.throws(() => checkContextOptions({ length: 8, overlap: 8 }), /--context-overlap/);
  assert.throws(() => checkContextOptions({ length: 0, overlap: 0 }), /--context-length/);
  assert.throws(() => checkContextOptions({ length: 40, overlap: 4 }, 32), /--context-length 32/);
  assert.throws(
    () => checkContextOptions({ length: 8, overlap: 2, stride: 0 }),
    /--context-stride/,
  );
});

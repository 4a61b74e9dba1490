import assert from "node:assert/strict";
import { planTiles, tileAxis } from "./tiles.ts";

Deno.test("tileAxis() covers the axis, overlaps enough, and its weights sum to 1", () => {
  let cases = 0;
  for (const length of [1, 7, 64, 100, 257, 1000]) {
    for (const tile of [0, 24, 40, 64, 128]) {
      for (const overlap of [4, 8, 16]) {
        for (const multiple of [1, 2, 4]) {
          for (const scale of [1, 2, 4]) {
            if (tile > 0 && tile - overlap - (multiple - 1) < 1) continue;
            const axis = tileAxis(length, { tile, overlap, multiple, scale });
            const { spans, weights } = axis;
            const margin = Math.floor(overlap / 4);
            assert.equal(spans[0]!.start, 0);
            assert.equal(spans[spans.length - 1]!.end, length);
            for (const [i, s] of spans.entries()) {
              assert.equal(s.start % multiple, 0, "starts on the grid");
              if (i < spans.length - 1) {
                assert.equal((s.end - s.start) % multiple, 0, "sizes on the grid");
                const next = spans[i + 1]!;
                assert.ok(next.start > s.start, "windows advance");
                assert.ok(s.end - next.start >= overlap, `overlap ${s.end - next.start}`);
                // The margins of a shared edge have weight 0.
                const w = weights[i]!;
                for (let p = (s.end - s.start - margin) * scale; p < w.length; p++) {
                  assert.equal(w[p], 0);
                }
                const wn = weights[i + 1]!;
                for (let p = 0; p < margin * scale; p++) assert.equal(wn[p], 0);
              }
            }
            const sum = new Float64Array(length * scale);
            spans.forEach((s, i) =>
              weights[i]!.forEach((w, p) => (sum[s.start * scale + p]! += w))
            );
            assert.ok(sum.every((v) => Math.abs(v - 1) < 1e-6), "weights sum to 1");
            cases++;
          }
        }
      }
    }
  }
  assert.ok(cases > 100);
});

Deno.test("tileAxis() ramps linearly between neighbours", () => {
  // Two windows of 20 sharing pixels 12..20 (overlap 8, margin 2): ramp over 14..18.
  const { spans, weights } = tileAxis(32, { tile: 20, overlap: 8 });
  assert.deepEqual(spans, [{ start: 0, end: 20 }, { start: 12, end: 32 }]);
  const w0 = [...weights[0]!].map((v) => Math.round(v * 1000) / 1000);
  assert.deepEqual(w0.slice(12), [1, 1, 0.875, 0.625, 0.375, 0.125, 0, 0]);
});

Deno.test("tileAxis() and planTiles() refuse impossible layouts", () => {
  assert.throws(() => tileAxis(100, { tile: 16, overlap: 16 }), /larger tile/);
  assert.throws(() => tileAxis(100, { tile: 64, overlap: 8, margin: 4 }), /less than half/);
  assert.throws(() => tileAxis(0, { tile: 64 }), /positive integer/);
  assert.throws(() => planTiles(10, 10, { tile: -1 }), /tile must be an integer >= 0/);
});

Deno.test("planTiles() lays out columns x rows", () => {
  const grid = planTiles(1000, 600, { tile: 512, overlap: 32 });
  // 2 x 512 would cover 1000 columns with only 24 shared: 3 columns; 600 rows: 2.
  assert.equal(grid.columns.spans.length, 3);
  assert.equal(grid.rows.spans.length, 2);
  assert.equal(grid.count, 6);
});

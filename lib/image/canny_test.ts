import assert from "node:assert/strict";
import fc from "fast-check";
import { hasShared, readSharedJson, sharedPath } from "../../tests/shared.ts";
import { canny } from "./canny.ts";
import { decodeImage, type RawImage } from "./codec.ts";
import { rgbToGray } from "./gray.ts";

interface CannyCase {
  png: string;
  n_edge_pixels: number;
  edge_flat_indices: number[];
}
interface CannyGolden {
  inputs: Record<string, string>;
  cases: Record<string, { gray_png: string } & Record<string, CannyCase | unknown>>;
}

async function readRgb(relative: string): Promise<RawImage> {
  return await decodeImage(await Deno.readFile(sharedPath(relative)), { channels: 3 });
}

/** First channel of a decoded L-mode PNG. */
async function readGray(relative: string): Promise<Uint8Array> {
  const rgb = await readRgb(relative);
  return Uint8Array.from({ length: rgb.width * rgb.height }, (_, i) => rgb.data[i * 3]!);
}

function edgeIndices(edges: Uint8Array): number[] {
  const out: number[] = [];
  edges.forEach((v, i) => {
    if (v === 255) out.push(i);
  });
  return out;
}

function gray(width: number, height: number, data: ArrayLike<number>): RawImage {
  return { width, height, channels: 1, data: Uint8Array.from(data) };
}

function transpose(image: RawImage): RawImage {
  const { width, height, channels, data } = image;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) {
        out[(x * height + y) * channels + c] = data[(y * width + x) * channels + c]!;
      }
    }
  }
  return { width: height, height: width, channels, data: out };
}

function transposePlane(plane: Uint8Array, width: number, height: number): Uint8Array {
  return transpose({ width, height, channels: 1, data: plane }).data;
}

const arbitraryImage = (channels: 1 | 3) =>
  fc.record({ width: fc.integer({ min: 1, max: 12 }), height: fc.integer({ min: 1, max: 12 }) })
    .chain(({ width, height }) =>
      fc.uint8Array({ minLength: width * height * channels, maxLength: width * height * channels })
        .map((data): RawImage => ({ width, height, channels, data }))
    );

/** Images with few distinct levels, so plateaus and equal magnitudes (the tie rules) occur. */
const arbitraryBlocky = (channels: 1 | 3) =>
  fc.record({ width: fc.integer({ min: 1, max: 12 }), height: fc.integer({ min: 1, max: 12 }) })
    .chain(({ width, height }) =>
      fc.array(fc.constantFrom(0, 60, 128, 255), {
        minLength: width * height * channels,
        maxLength: width * height * channels,
      }).map((data): RawImage => ({ width, height, channels, data: Uint8Array.from(data) }))
    );

Deno.test({
  name: "canny() equals cv2.Canny pixel for pixel on ../shared/golden/canny (gray cases)",
  ignore: !hasShared,
  async fn() {
    const golden = readSharedJson<CannyGolden>("golden/canny/canny.json");
    let checked = 0;
    for (const [name, entry] of Object.entries(golden.cases)) {
      const rgb = await readRgb(`golden/canny/${golden.inputs[name]}`);
      const grayImage = rgbToGray(rgb);
      // The gray conversion is OpenCV's too: equal to the stored cvtColor output.
      const expectedGray = await readGray(`golden/canny/${entry.gray_png}`);
      let grayDiff = 0;
      for (let i = 0; i < expectedGray.length; i++) {
        grayDiff = Math.max(grayDiff, Math.abs(expectedGray[i]! - grayImage.data[i]!));
      }
      console.log(`${name}: rgbToGray maxdiff ${grayDiff}`);
      assert.equal(grayDiff, 0);
      for (const [key, value] of Object.entries(entry)) {
        const match = /^gray_(\d+)_(\d+)$/.exec(key);
        if (!match) continue;
        const expected = value as CannyCase;
        const edges = canny(grayImage, { low: Number(match[1]), high: Number(match[2]) });
        const got = edgeIndices(edges);
        const wanted = new Set(expected.edge_flat_indices);
        const differing = got.filter((i) => !wanted.has(i)).length +
          expected.edge_flat_indices.filter((i) => edges[i] !== 255).length;
        console.log(`${name} ${key}: ${got.length} edge pixels, ${differing} differ`);
        assert.equal(got.length, expected.n_edge_pixels);
        assert.deepEqual(got, expected.edge_flat_indices);
        const png = await readGray(`golden/canny/${expected.png}`);
        assert.deepEqual(edges, png);
        checked++;
      }
    }
    assert.equal(checked, 2);
  },
});

Deno.test("canny() marks the dark side of a step and keeps OpenCV's left/right asymmetry", () => {
  // 0 0 255 255: |dx| is 1020 at columns 1 and 2; NMS takes m > left and m >= right, so
  // column 1 wins. Mirrored (255 255 0 0) the edge stays at column 1, not at the mirror's 2.
  const step = gray(4, 3, [0, 0, 255, 255, 0, 0, 255, 255, 0, 0, 255, 255]);
  assert.deepEqual([...canny(step, { low: 100, high: 200 })], [
    ...[0, 255, 0, 0],
    ...[0, 255, 0, 0],
    ...[0, 255, 0, 0],
  ]);
  const mirrored = gray(4, 3, [255, 255, 0, 0, 255, 255, 0, 0, 255, 255, 0, 0]);
  assert.deepEqual([...canny(mirrored, { low: 100, high: 200 })], [
    ...[0, 255, 0, 0],
    ...[0, 255, 0, 0],
    ...[0, 255, 0, 0],
  ]);
  // Vertically: the edge is on the upper of the two rows (m > above, m >= below).
  const horizontal = transpose(step);
  assert.deepEqual(
    [...canny(horizontal, { low: 100, high: 200 })],
    [0, 0, 0, 255, 255, 255, 0, 0, 0, 0, 0, 0],
  );
});

Deno.test("canny() thresholds are strict: m > high seeds, m > low continues", () => {
  // A step of 50 gives |dx| = 4 * 50 = 200 on the edge column.
  const step = gray(4, 2, [0, 0, 50, 50, 0, 0, 50, 50]);
  const on = [0, 255, 0, 0, 0, 255, 0, 0];
  const off = new Array(8).fill(0);
  assert.deepEqual([...canny(step, { low: 100, high: 199.9 })], on);
  assert.deepEqual([...canny(step, { low: 100, high: 200 })], off);
  // cvFloor: 199.99 -> 199 < 200 seeds.
  assert.deepEqual([...canny(step, { low: 10, high: 199.99 })], on);
  // L2: 200² = 40000 > floor(199.99²) = 39996.
  assert.deepEqual([...canny(step, { low: 10, high: 199.99, l2Gradient: true })], on);
  assert.deepEqual([...canny(step, { low: 10, high: 200, l2Gradient: true })], off);
  // L2 thresholds are clamped to 32767 before squaring, so 40000 behaves like 32767.
  const strong = gray(4, 2, [0, 0, 255, 255, 0, 0, 255, 255]);
  assert.deepEqual(
    [...canny(strong, { low: 40000, high: 40000, l2Gradient: true })],
    [...canny(strong, { low: 32767, high: 32767, l2Gradient: true })],
  );
});

Deno.test("canny() grows weak edges only through 8-connected maxima (hysteresis)", () => {
  // Columns 2-3 hold 255 in the top two rows and 40 below: a strong corner above a weak step
  // (|dx| = 4 * 40 = 160 in column 1). With low 100 and high 500 the weak column survives only
  // because it is 8-connected to the strong part; with high 10000 nothing seeds it.
  const image = (rows: number[]) => gray(4, rows.length, rows.flatMap((v) => [0, 0, v, v]));
  const linked = canny(image([255, 255, 40, 40, 40, 40]), { low: 100, high: 500 });
  assert.deepEqual([...linked], [
    ...[0, 255, 0, 0],
    ...[0, 0, 255, 255],
    ...[0, 0, 255, 0],
    ...[0, 255, 0, 0],
    ...[0, 255, 0, 0],
    ...[0, 255, 0, 0],
  ]);
  assert.ok(canny(image([255, 255, 40, 40, 40, 40]), { low: 100, high: 10000 }).every((v) => !v));
  assert.ok(canny(image([40, 40, 40, 40, 40, 40]), { low: 100, high: 500 }).every((v) => !v));
  // Three flat rows between them leave a row of zero magnitude: the weak part is cut off.
  const cut = canny(image([255, 255, 0, 0, 0, 40, 40, 40]), { low: 100, high: 500 });
  assert.ok(cut.slice(0, 8).some((v) => v === 255));
  assert.ok(cut.slice(12).every((v) => v === 0));
});

Deno.test("canny() on colour keeps, per pixel, the channel with the largest gradient", () => {
  // Green steps by 30 (|dx| 120) and blue by 60 (|dx| 240): blue wins and passes high 200.
  const data: number[] = [];
  for (let y = 0; y < 3; y++) {
    for (let x = 0; x < 4; x++) data.push(0, x >= 2 ? 30 : 0, x >= 2 ? 60 : 0);
  }
  const rgb: RawImage = { width: 4, height: 3, channels: 3, data: Uint8Array.from(data) };
  assert.deepEqual([...canny(rgb, { low: 100, high: 200 })], [
    ...[0, 255, 0, 0],
    ...[0, 255, 0, 0],
    ...[0, 255, 0, 0],
  ]);
  // Each channel alone: green is too weak, blue is enough.
  const channel = (c: number) => gray(4, 3, data.filter((_, i) => i % 3 === c));
  assert.equal(canny(channel(1), { low: 100, high: 200 }).filter((v) => v).length, 0);
  assert.equal(canny(channel(2), { low: 100, high: 200 }).filter((v) => v).length, 3);
});

Deno.test("canny() on colour takes dx, dy from the winning channel (ties: the first)", () => {
  fc.assert(
    fc.property(arbitraryBlocky(1), (a) => {
      const { width, height } = a;
      const data = new Uint8Array(width * height * 3);
      for (let i = 0; i < width * height; i++) data.fill(a.data[i]!, i * 3, i * 3 + 3);
      // Identical channels: colour equals gray.
      assert.deepEqual(
        canny({ width, height, channels: 3, data }, { low: 20, high: 300 }),
        canny(a, { low: 20, high: 300 }),
      );
      // A zero channel first and a dimmed copy last never win: still gray.
      const mixed = new Uint8Array(width * height * 3);
      for (let i = 0; i < width * height; i++) {
        mixed[i * 3 + 1] = a.data[i]!;
        mixed[i * 3 + 2] = a.data[i]! >> 1;
      }
      assert.deepEqual(
        canny({ width, height, channels: 3, data: mixed }, { low: 20, high: 300 }),
        canny(a, { low: 20, high: 300 }),
      );
    }),
    { numRuns: 200 },
  );
  // Hand case where the tie decides: two channels whose magnitudes tie at some pixels with
  // different directions. Ties going to the last channel would give
  // 255,0,0,255,0,0,0,255,255 instead.
  const tie: RawImage = {
    width: 3,
    height: 3,
    channels: 2,
    data: Uint8Array.of(0, 0, 0, 100, 100, 0, 100, 0, 100, 100, 0, 0, 100, 0, 0, 0, 0, 100),
  };
  assert.deepEqual([...canny(tie, { low: 10, high: 50 })], [255, 0, 255, 0, 0, 0, 0, 255, 255]);
});

Deno.test("canny() output is only 0 and 255 and the size of the input", () => {
  fc.assert(
    fc.property(
      fc.oneof(arbitraryImage(1), arbitraryImage(3), arbitraryBlocky(3)),
      fc.double({ min: 0, max: 1200, noNaN: true }),
      fc.double({ min: 0, max: 1200, noNaN: true }),
      fc.boolean(),
      (image, low, high, l2) => {
        const edges = canny(image, { low, high, l2Gradient: l2 });
        assert.equal(edges.length, image.width * image.height);
        assert.ok(edges.every((v) => v === 0 || v === 255));
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("canny() swaps low and high as cv2 does", () => {
  fc.assert(
    fc.property(
      fc.oneof(arbitraryImage(1), arbitraryBlocky(3)),
      fc.integer({ min: 0, max: 1100 }),
      fc.integer({ min: 0, max: 1100 }),
      fc.boolean(),
      (image, a, b, l2) => {
        assert.deepEqual(
          canny(image, { low: a, high: b, l2Gradient: l2 }),
          canny(image, { low: b, high: a, l2Gradient: l2 }),
        );
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("canny() commutes with transposition (the NMS sectors and tie rules are symmetric)", () => {
  fc.assert(
    fc.property(
      fc.oneof(arbitraryImage(1), arbitraryBlocky(1), arbitraryImage(3), arbitraryBlocky(3)),
      fc.integer({ min: 0, max: 600 }),
      fc.integer({ min: 0, max: 600 }),
      fc.boolean(),
      (image, low, high, l2) => {
        const options = { low, high, l2Gradient: l2 };
        assert.deepEqual(
          canny(transpose(image), options),
          transposePlane(canny(image, options), image.width, image.height),
        );
      },
    ),
    { numRuns: 400 },
  );
});

Deno.test("canny() edges grow as thresholds fall (monotone in low and in high)", () => {
  fc.assert(
    fc.property(
      fc.oneof(arbitraryImage(1), arbitraryBlocky(3)),
      fc.integer({ min: 0, max: 500 }),
      fc.integer({ min: 0, max: 500 }),
      fc.integer({ min: 0, max: 300 }),
      (image, low, high, drop) => {
        const [lo, hi] = low <= high ? [low, high] : [high, low];
        const strict = canny(image, { low: lo, high: hi });
        const looser = canny(image, { low: Math.max(0, lo - drop), high: hi });
        const lower = canny(image, { low: lo, high: Math.max(lo, hi - drop) });
        strict.forEach((v, i) => {
          if (v) assert.equal(looser[i], 255);
          if (v) assert.equal(lower[i], 255);
        });
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("canny() finds nothing on a flat image and treats negative thresholds as 0", () => {
  const flat = gray(5, 4, new Array(20).fill(77));
  assert.ok(canny(flat, { low: 0, high: 0 }).every((v) => v === 0));
  fc.assert(
    fc.property(arbitraryImage(1), fc.double({ min: -1e6, max: 0, noNaN: true }), (image, t) => {
      assert.deepEqual(canny(image, { low: t, high: t }), canny(image, { low: 0, high: 0 }));
    }),
    { numRuns: 100 },
  );
});

Deno.test("canny() rejects bad thresholds and malformed images", () => {
  const image = gray(2, 2, [0, 1, 2, 3]);
  assert.throws(() => canny(image, { low: Number.NaN }), RangeError);
  assert.throws(() => canny(image, { high: Infinity }), RangeError);
  assert.throws(() => canny(image, { high: 2 ** 31 }), RangeError);
  assert.throws(() => canny(image, { low: -(2 ** 31) }), RangeError);
  // With L2 a huge threshold is clamped to 32767 (squared: 1073676289) and allowed.
  assert.deepEqual(
    canny(image, { low: 1e12, high: 1e12, l2Gradient: true }),
    canny(image, { low: 32767, high: 32767, l2Gradient: true }),
  );
  assert.throws(() => canny(image, { low: "1" as unknown as number }), TypeError);
  assert.throws(() => canny({ ...image, data: new Uint8Array(3) }), TypeError);
  assert.throws(() => canny({ ...image, width: 0 }), TypeError);
});

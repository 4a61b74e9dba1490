import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import type { RgbImage } from "../image/gray.ts";
import { hostTensor } from "../onnx/session.ts";
import {
  annotatorPicture,
  writeTinyHed,
  writeTinyLineart,
  writeTinyPidinet,
} from "../../tests/fixtures/preprocess_models.ts";
import { annotatorInput, openAnnotator, padEdge } from "./annotator_session.ts";
import { hedEdges, pidinetEdges, safeStep, softedgePreprocessor } from "./softedge.ts";
import {
  annotatorReference,
  bytesOf,
  floatsOf,
  grayDiff,
  maxDiff,
} from "./testdata/annotator_reference.ts";

const HED = annotatorReference("hed");
const PIDINET = annotatorReference("pidinet");

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denoise_softedge_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test(`HED side outputs match controlnet_aux's ControlNetHED_Apache2 (torch ${HED.versions.torch}) within 1e-4`, async () => {
  await withTemp(async (dir) => {
    const path = await writeTinyHed(join(dir, "ControlNetHED.pth"));
    const c = HED.cases[0]!;
    const picture = annotatorPicture(c.width, c.height);
    const { config, session } = await openAnnotator(path, "softedge", ["hed"], { cacheDir: dir });
    try {
      assert.equal(config.architecture, "hed");
      const input = annotatorInput(picture, { order: "rgb", scale: false });
      const out = await session.run({ image: hostTensor("float32", input.data, input.dims) });
      c.projections!.forEach((p, i) => {
        const ours = out[`projection${i + 1}`]!;
        assert.deepEqual(ours.dims, [1, 1, ...p.shape]);
        const d = maxDiff(ours.data as Float32Array, floatsOf(p.data));
        console.log(`projection${i + 1} [${p.shape}]: maxdiff ${d}`);
        assert.ok(d <= 1e-4, `projection${i + 1}: maxdiff ${d}`);
      });
    } finally {
      await session.release();
    }
  });
});

Deno.test(`softedge (HED) matches controlnet_aux's HEDdetector, plain, safe and scribble, with the extension's padding`, async () => {
  await withTemp(async (dir) => {
    const path = await writeTinyHed(join(dir, "ControlNetHED.pth"));
    for (const c of HED.cases) {
      for (const variant of ["plain", "safe", "scribble"] as const) {
        const picture = annotatorPicture(c.width, c.height);
        const options = { safe: variant === "safe", scribble: variant === "scribble" };
        const control = await softedgePreprocessor.run(picture, options, {
          models: { softedge: path },
          cacheDir: dir,
        });
        assert.deepEqual([control.width, control.height], [c.width, c.height]);
        const d = grayDiff(control.data, bytesOf(c[variant]!));
        console.log(`${c.width}x${c.height} ${variant}: ${d.count} pixels differ (max ${d.max})`);
        // A float32 sum one ulp away from torch's can move a truncation by one level, rarely.
        assert.ok(d.max <= 1 && d.count <= Math.ceil((c.width * c.height) / 500), `${d.count}`);
      }
    }
    // Built once: every run after the first reuses the cached graph.
    assert.equal(readdirSync(join(dir, "graphs")).filter((n) => n.startsWith("hed-")).length, 1);
  });
});

Deno.test(`softedge (PiDiNet) matches controlnet_aux's PidiNetDetector (torch ${PIDINET.versions.torch})`, async () => {
  await withTemp(async (dir) => {
    const path = await writeTinyPidinet(join(dir, "table5_pidinet.pth"));
    const first = PIDINET.cases[0]!;
    const { config, session } = await openAnnotator(path, "softedge", ["pidinet"], {
      cacheDir: dir,
    });
    try {
      assert.equal(config.architecture, "pidinet");
      const picture = annotatorPicture(first.width, first.height);
      const input = annotatorInput(picture, { order: "bgr", scale: true });
      const out = await session.run({ image: hostTensor("float32", input.data, input.dims) });
      const d = maxDiff(out.edge!.data as Float32Array, floatsOf(first.edge!));
      console.log(`PiDiNet edge: maxdiff ${d}`);
      assert.ok(d <= 1e-4, `maxdiff ${d}`);
    } finally {
      await session.release();
    }
    for (const c of PIDINET.cases) {
      for (const variant of ["plain", "safe", "scribble"] as const) {
        const options = { safe: variant === "safe", scribble: variant === "scribble" };
        const control = await softedgePreprocessor.run(
          annotatorPicture(c.width, c.height),
          options,
          { models: { softedge: path }, cacheDir: dir },
        );
        const d = grayDiff(control.data, bytesOf(c[variant]!));
        console.log(`${c.width}x${c.height} ${variant}: ${d.count} pixels differ (max ${d.max})`);
        assert.ok(d.max <= 1 && d.count <= Math.ceil((c.width * c.height) / 500), `${d.count}`);
      }
    }
  });
});

Deno.test("softedge refuses a line-art file and needs a cache folder", async () => {
  await withTemp(async (dir) => {
    const path = await writeTinyLineart(join(dir, "sk_model.pth"));
    const image = annotatorPicture(8, 8);
    await assert.rejects(
      () => softedgePreprocessor.run(image, {}, { models: { softedge: path }, cacheDir: dir }),
      /softedge: ".*sk_model.pth" holds the line-art Generator \(sk_model\), not ControlNetHED \(HED soft edges\) or PiDiNet/,
    );
    await assert.rejects(
      () => softedgePreprocessor.run(image, {}, { models: { softedge: path } }),
      /pass context.cacheDir/,
    );
    await assert.rejects(() => softedgePreprocessor.run(image, {}, {}), /context.models.softedge/);
  });
});

Deno.test("safeStep(), hedEdges() and pidinetEdges() follow the annotators' numpy arithmetic", () => {
  // safe_step: float32(int32(float32(x) * 3)) / 2
  assert.deepEqual([0, 0.3, 0.34, 0.66, 0.67, 1].map((x) => safeStep(x)), [0, 0, 0.5, 0.5, 1, 1.5]);
  // HED: mean of the resized sides, sigmoid, * 255 truncated; safe values above 1 clip to 255.
  const side = (v: number, w: number, h: number) => ({
    data: new Float32Array(w * h).fill(v),
    width: w,
    height: h,
  });
  assert.deepEqual([...hedEdges([side(2, 2, 2), side(-2, 1, 1)], 2, 2)], [127, 127, 127, 127]);
  assert.equal(hedEdges([side(1, 1, 1)], 1, 1)[0], Math.trunc(255 / (1 + Math.exp(-1))));
  assert.equal(hedEdges([side(10, 1, 1)], 1, 1, { safe: true })[0], 255);
  assert.equal(hedEdges([side(0, 1, 1)], 1, 1, { safe: true })[0], 127); // 0.5 * 3 -> 1 -> 0.5
  // PiDiNet: float32 product, truncated.
  assert.deepEqual([...pidinetEdges(Float32Array.of(0.999, 0.2), { safe: true })], [255, 0]);
  assert.deepEqual([...pidinetEdges(Float32Array.of(0.999, 0.2))], [254, 51]);
});

Deno.test("padEdge() repeats the last column and row up to multiples of 64", () => {
  const image = annotatorPicture(70, 50);
  const padded = padEdge(image);
  assert.deepEqual([padded.width, padded.height], [128, 64]);
  const at = (
    im: RgbImage,
    x: number,
    y: number,
  ) => [...im.data.subarray((y * im.width + x) * 3, (y * im.width + x) * 3 + 3)];
  assert.deepEqual(at(padded, 10, 10), at(image, 10, 10));
  assert.deepEqual(at(padded, 127, 20), at(image, 69, 20));
  assert.deepEqual(at(padded, 30, 63), at(image, 30, 49));
  assert.deepEqual(at(padded, 127, 63), at(image, 69, 49));
  const square = annotatorPicture(64, 64);
  assert.equal(padEdge(square), square);
});

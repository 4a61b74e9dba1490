import assert from "node:assert/strict";
import { join } from "node:path";
import { hostTensor } from "../onnx/session.ts";
import {
  annotatorPicture,
  writeTinyHed,
  writeTinyLineart,
} from "../../tests/fixtures/preprocess_models.ts";
import { annotatorInput, openAnnotator } from "./annotator_session.ts";
import { invertedLine, lineartPreprocessor } from "./lineart.ts";
import {
  annotatorReference,
  bytesOf,
  floatsOf,
  grayDiff,
  maxDiff,
} from "./testdata/annotator_reference.ts";

const LINEART = annotatorReference("lineart");

async function withTemp(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "denoise_lineart_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test(`the line-art Generator matches controlnet_aux's Generator(3, 1, 3) (torch ${LINEART.versions.torch}) within 1e-4`, async () => {
  await withTemp(async (dir) => {
    const path = await writeTinyLineart(join(dir, "sk_model.pth"));
    const c = LINEART.cases[0]!;
    const { config, session } = await openAnnotator(path, "lineart", ["lineart"], {
      cacheDir: dir,
    });
    try {
      assert.equal(config.architecture, "lineart");
      const input = annotatorInput(annotatorPicture(c.width, c.height), { scale: true });
      const out = await session.run({ image: hostTensor("float32", input.data, input.dims) });
      assert.deepEqual(out.line!.dims, [1, 1, c.height, c.width]);
      const d = maxDiff(out.line!.data as Float32Array, floatsOf(c.line!));
      console.log(`line: maxdiff ${d}`);
      assert.ok(d <= 1e-4, `maxdiff ${d}`);
    } finally {
      await session.release();
    }
  });
});

Deno.test("lineart matches controlnet_aux's LineartDetector, fine and coarse, with the extension's padding", async () => {
  await withTemp(async (dir) => {
    const fine = await writeTinyLineart(join(dir, "sk_model.pth"));
    const coarse = await writeTinyLineart(join(dir, "sk_model2.pth"), { coarse: true });
    for (const c of LINEART.cases) {
      for (const isCoarse of [false, true]) {
        const control = await lineartPreprocessor.run(
          annotatorPicture(c.width, c.height),
          { coarse: isCoarse },
          { models: isCoarse ? { coarse } : { fine }, cacheDir: dir },
        );
        assert.deepEqual([control.width, control.height], [c.width, c.height]);
        const d = grayDiff(control.data, bytesOf((isCoarse ? c.coarse : c.fine)!));
        console.log(
          `${c.width}x${c.height} coarse=${isCoarse}: ${d.count} pixels differ (max ${d.max})`,
        );
        assert.ok(d.max <= 1 && d.count <= Math.ceil((c.width * c.height) / 500), `${d.count}`);
      }
    }
  });
});

Deno.test("lineart refuses a HED file and names the missing role", async () => {
  await withTemp(async (dir) => {
    const path = await writeTinyHed(join(dir, "ControlNetHED.pth"));
    const image = annotatorPicture(8, 8);
    await assert.rejects(
      () => lineartPreprocessor.run(image, {}, { models: { fine: path }, cacheDir: dir }),
      /lineart: ".*ControlNetHED.pth" holds ControlNetHED \(HED soft edges\), not the line-art Generator/,
    );
    await assert.rejects(
      () => lineartPreprocessor.run(image, { coarse: true }, { models: { fine: path } }),
      /context.models.coarse/,
    );
  });
});

Deno.test("invertedLine() truncates float32 x * 255 and inverts", () => {
  assert.deepEqual([...invertedLine(Float32Array.of(1, 0.999, 0.5, 0.0039, -0.5, 2))], [
    0,
    1,
    128,
    255,
    255,
    0,
  ]);
});

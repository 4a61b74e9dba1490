import assert from "node:assert/strict";
import { edgeNms, fakeScribble } from "./fake_scribble.ts";
import { bytesOf } from "./testdata/annotator_reference.ts";

const REFERENCE = JSON.parse(
  Deno.readTextFileSync(new URL("./testdata/fake_scribble.json", import.meta.url)),
) as {
  versions: { opencv: string };
  cases: Array<{ size: [number, number]; map: string; nms: string; scribble: string }>;
};

Deno.test(`edgeNms() and fakeScribble() match controlnet_aux's nms and the A1111 scribble steps (OpenCV ${REFERENCE.versions.opencv})`, () => {
  for (const c of REFERENCE.cases) {
    const [w, h] = c.size;
    const map = bytesOf(c.map);
    for (
      const [what, ours, ref] of [
        ["nms", edgeNms(map, w, h), bytesOf(c.nms)],
        ["scribble", fakeScribble(map, w, h), bytesOf(c.scribble)],
      ] as const
    ) {
      let differ = 0;
      let on = 0;
      for (let i = 0; i < ref.length; i++) {
        differ += ours[i] !== ref[i] ? 1 : 0;
        on += ref[i] === 255 ? 1 : 0;
      }
      console.log(`${w}x${h} ${what}: ${on} strokes pixels, ${differ} differ`);
      assert.ok(on > 0 && on < ref.length / 2, "a discriminating case");
      assert.equal(differ, 0);
    }
  }
});

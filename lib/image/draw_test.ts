import assert from "node:assert/strict";
import { drawLine, ellipse2Poly, fillCircle, fillConvexPoly } from "./draw.ts";
import { differing, fromBase64, OPENCV_OPS } from "./testdata/opencv_ops.ts";

function canvas() {
  return { width: 48, height: 32, channels: 3 as const, data: new Uint8Array(48 * 32 * 3) };
}

Deno.test(`ellipse2Poly() and fillConvexPoly() match OpenCV ${OPENCV_OPS.versions.opencv}`, () => {
  for (const c of OPENCV_OPS.ellipses) {
    const points = ellipse2Poly(
      { x: c.center[0], y: c.center[1] },
      { width: c.axes[0], height: c.axes[1] },
      c.angle,
      0,
      360,
      1,
    );
    assert.deepEqual(points.map((p) => [p.x, p.y]), c.points, `points of ${JSON.stringify(c)}`);
    const image = canvas();
    fillConvexPoly(image, points, [255, 85, 0]);
    const d = differing(image.data, fromBase64(c.filled));
    console.log(
      `ellipse ${c.center} ${c.axes} ${c.angle}°: ${d.count} bytes differ (max ${d.max})`,
    );
    assert.equal(d.count, 0);
  }
});

Deno.test(`fillCircle() matches cv2.circle(thickness=-1), OpenCV ${OPENCV_OPS.versions.opencv}`, () => {
  for (const c of OPENCV_OPS.circles) {
    const image = canvas();
    fillCircle(image, { x: c.center[0], y: c.center[1] }, c.radius, [0, 0, 255]);
    const d = differing(image.data, fromBase64(c.image));
    console.log(`circle ${c.center} r${c.radius}: ${d.count} bytes differ (max ${d.max})`);
    assert.equal(d.count, 0);
  }
});

Deno.test(`drawLine() matches cv2.line, colours rounded half to even, OpenCV ${OPENCV_OPS.versions.opencv}`, () => {
  for (const c of OPENCV_OPS.lines) {
    const channels = c.color.length as 1 | 3;
    const image = { width: 48, height: 32, channels, data: new Uint8Array(48 * 32 * channels) };
    drawLine(image, { x: c.p1[0], y: c.p1[1] }, { x: c.p2[0], y: c.p2[1] }, c.color, c.thickness);
    const d = differing(image.data, fromBase64(c.image));
    console.log(`line ${c.p1} ${c.p2} t${c.thickness}: ${d.count} bytes differ (max ${d.max})`);
    assert.equal(d.count, 0);
  }
});

Deno.test("drawing primitives reject bad arguments with a hint", () => {
  assert.throws(
    () => ellipse2Poly({ x: 0, y: 0 }, { width: 1, height: 1 }, 0, 0, 360, 0),
    RangeError,
  );
  assert.throws(() => fillCircle(canvas(), { x: 0, y: 0 }, -1, [1]), RangeError);
  assert.throws(() => drawLine(canvas(), { x: 0, y: 0 }, { x: 1, y: 1 }, [1], 0), RangeError);
});

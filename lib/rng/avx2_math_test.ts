import assert from "node:assert/strict";
import { fmaf, log256Lane, sincos256Lane } from "./avx2_math.ts";

const f = Math.fround;

Deno.test("fmaf() rounds once where a double sum would land on a float midpoint", () => {
  // a*b = 2^-24 - 2^-60 exactly; a*b + c is just below the midpoint between c and its upper
  // neighbour, but in a double it rounds onto the midpoint, which ties to the even neighbour.
  const a = 2 ** -12 * (1 + 2 ** -18);
  const b = 2 ** -12 * (1 - 2 ** -18);
  const c = 1 + 2 ** -23;
  assert.equal(f(a), a);
  assert.equal(f(b), b);
  assert.equal(f(a * b + c), 1 + 2 ** -22, "the double-rounded result this test guards against");
  assert.equal(fmaf(a, b, c), 1 + 2 ** -23);
  assert.equal(fmaf(-a, b, -c), -(1 + 2 ** -23));
  // just above the midpoint rounds up
  assert.equal(fmaf(2 ** -12 * (1 + 2 ** -18), 2 ** -12 * (1 + 2 ** -18), c), 1 + 2 ** -22);
  assert.equal(fmaf(3, 0.5, 1), 2.5);
});

Deno.test("log256Lane() stays within 2 float ulps of ln(x) on (0, 1]", () => {
  let worst = 0;
  for (let k = 0; k < 1 << 24; k += 997) {
    const x = f(1 - k * 2 ** -24);
    const got = log256Lane(x);
    assert.equal(f(got), got);
    const want = Math.log(x);
    const ulp = want === 0 ? 2 ** -149 : 2 ** (Math.floor(Math.log2(Math.abs(want))) - 23);
    worst = Math.max(worst, Math.abs(got - want) / ulp);
  }
  assert.ok(worst <= 2, `max error ${worst} ulp`);
  assert.equal(log256Lane(1), 0);
  assert.ok(Number.isNaN(log256Lane(0)));
});

Deno.test("sincos256Lane() stays within 2e-7 of sin and cos on [0, 2*pi)", () => {
  const sc = { sin: 0, cos: 0 };
  let maxDiff = 0;
  for (let k = 0; k < 100000; k++) {
    const theta = f(f(2 * Math.PI) * f(k / 100000));
    sincos256Lane(theta, sc);
    maxDiff = Math.max(
      maxDiff,
      Math.abs(sc.sin - Math.sin(theta)),
      Math.abs(sc.cos - Math.cos(theta)),
    );
  }
  assert.ok(maxDiff <= 2e-7, `maxdiff ${maxDiff}`);
});

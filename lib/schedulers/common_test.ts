import assert from "node:assert/strict";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import {
  alphasCumprodFromBetas,
  betaPpf,
  img2imgSlice,
  karrasSigmas,
  makeBetas,
  numpyArange,
  parseSchedulerConfig,
  rescaleZeroTerminalSnr,
  roundHalfEven,
  sigmaToT,
  spacedTimesteps,
  torchLinspaceF32,
} from "./common.ts";

interface Golden {
  sd15_scheduler_config: Record<string, unknown>;
  betas: number[];
  alphas_cumprod: number[];
}

function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i]! - b[i]!) / Math.max(Math.abs(b[i]!), 1e-12));
  }
  return m;
}

Deno.test({
  name: "makeBetas() and alphasCumprodFromBetas() match Diffusers for the SD 1.5 config",
  ignore: !hasShared,
  fn() {
    // Python's json writes -Infinity (lambda_min_clipped), which JSON.parse rejects.
    const text = Deno.readTextFileSync(sharedPath("golden/schedulers.json"));
    const g = JSON.parse(text.replace(/:-Infinity/g, ':"-inf"')) as Golden;
    const c = parseSchedulerConfig(g.sd15_scheduler_config);
    const betas = makeBetas(c);
    const ac = alphasCumprodFromBetas(betas);
    const rb = maxRel(betas, g.betas);
    const ra = maxRel(ac, g.alphas_cumprod);
    // Golden values carry 7 significant digits: 5e-7 relative is their rounding.
    assert.ok(rb < 6e-7, `betas maxdiff (relative) ${rb}`);
    assert.ok(ra < 6e-7, `alphas_cumprod maxdiff (relative) ${ra}`);
  },
});

Deno.test("parseSchedulerConfig() ignores unknown keys and rejects bad values", () => {
  const c = parseSchedulerConfig({ foo: 1, use_karras_sigmas: true, trained_betas: null }, {
    timestepSpacing: "leading",
  });
  assert.equal(c.sigmaSchedule, "karras");
  assert.equal(c.timestepSpacing, "leading");
  assert.equal(
    parseSchedulerConfig({ sigma_schedule: "sgm-uniform" }).sigmaSchedule,
    "sgm_uniform",
  );
  assert.throws(() => parseSchedulerConfig({ beta_schedule: "cubic" }), RangeError);
  assert.throws(() => parseSchedulerConfig({ beta_start: "0.1" }), TypeError);
});

Deno.test("torchLinspaceF32() counts from both ends like torch", () => {
  const v = torchLinspaceF32(0, 1, 5);
  assert.deepEqual(Array.from(v), [0, 0.25, 0.5, 0.75, 1]);
  assert.equal(torchLinspaceF32(0.1, 0.9, 3)[2], Math.fround(0.9));
});

Deno.test("spacedTimesteps() follows numpy for leading / linspace / trailing", () => {
  assert.deepEqual(Array.from(spacedTimesteps("leading", 1000, 4, 1)), [751, 501, 251, 1]);
  assert.deepEqual(Array.from(spacedTimesteps("linspace", 1000, 4, 0)), [999, 666, 333, 0]);
  assert.deepEqual(Array.from(spacedTimesteps("trailing", 1000, 4, 0)), [999, 749, 499, 249]);
  // 1000 / 16 = 62.5: numpy rounds 937.5 to 938 and 812.5 to 812 (half to even).
  const t16 = spacedTimesteps("trailing", 1000, 16, 0);
  assert.deepEqual(Array.from(t16.slice(0, 4)), [999, 937, 874, 811]);
  assert.equal(roundHalfEven(2.5), 2);
  assert.equal(roundHalfEven(-0.5), -0);
  assert.deepEqual(Array.from(numpyArange(10, 0, -2.5)), [10, 7.5, 5, 2.5]);
});

Deno.test("rescaleZeroTerminalSnr() gives zero terminal alpha_bar", () => {
  const c = parseSchedulerConfig({
    beta_schedule: "scaled_linear",
    beta_start: 0.00085,
    beta_end: 0.012,
  });
  const ac = alphasCumprodFromBetas(rescaleZeroTerminalSnr(makeBetas(c)));
  assert.ok(Math.abs(ac[999]!) < 1e-9, `last alpha_bar ${ac[999]}`);
  assert.ok(Math.abs(ac[0]! - 0.99915) < 1e-6);
});

Deno.test("karrasSigmas() and sigmaToT() invert the training schedule", () => {
  const k = karrasSigmas(0.1, 10, 3);
  assert.ok(Math.abs(k[0]! - 10) < 1e-12 && Math.abs(k[2]! - 0.1) < 1e-12);
  const logs = [Math.log(0.1), Math.log(1), Math.log(10)];
  assert.equal(sigmaToT(1, logs), 1);
  assert.ok(Math.abs(sigmaToT(Math.sqrt(10), logs) - 1.5) < 1e-12);
  assert.equal(sigmaToT(100, logs), 2);
  assert.equal(sigmaToT(0.01, logs), 0);
});

Deno.test("betaPpf() inverts the beta(0.6, 0.6) distribution", () => {
  assert.ok(Math.abs(betaPpf(0.5, 0.6, 0.6) - 0.5) < 1e-12);
  // scipy.stats.beta.ppf(0.25, 2, 2) = 0.3263518223330697
  assert.ok(Math.abs(betaPpf(0.25, 2, 2) - 0.3263518223330697) < 1e-12);
});

Deno.test("img2imgSlice() equals get_timesteps", () => {
  const ts = new Float64Array([9, 8, 8, 7, 7, 6]);
  const r = img2imgSlice(ts, 3, 0.75, 2);
  assert.equal(r.startIndex, 2);
  assert.deepEqual(Array.from(r.timesteps), [8, 7, 7, 6]);
  assert.throws(() => img2imgSlice(ts, 3, 1.5, 2), RangeError);
});

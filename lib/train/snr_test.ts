import assert from "node:assert/strict";
import { computeSnr, minSnrWeights } from "./snr.ts";
import { trainingSchedule } from "./noising.ts";

Deno.test("computeSnr() and minSnrWeights() follow Diffusers' compute_snr and the min-SNR weights", () => {
  const { alphasCumprod } = trainingSchedule({
    beta_schedule: "scaled_linear",
    beta_start: 0.00085,
    beta_end: 0.012,
  });
  const ts = [0, 10, 500, 999];
  const snr = computeSnr(alphasCumprod, ts);
  ts.forEach((t, i) => {
    const a = alphasCumprod[t]!;
    const want = a / (1 - a);
    const rel = Math.abs(snr[i]! - want) / want;
    assert.ok(rel < 1e-5, `snr(${t}) ${snr[i]} vs ${want}`);
  });
  const eps = minSnrWeights(alphasCumprod, ts, 5, "epsilon");
  const v = minSnrWeights(alphasCumprod, ts, 5, "v_prediction");
  ts.forEach((_, i) => {
    const s = snr[i]!;
    assert.ok(Math.abs(eps[i]! - Math.min(s, 5) / s) < 1e-6);
    assert.ok(Math.abs(v[i]! - Math.min(s, 5) / (s + 1)) < 1e-6);
  });
  // Low-noise steps (high SNR) are down-weighted; t=999 (SNR << 5) keeps weight 1 for epsilon.
  assert.ok(eps[0]! < 0.01 && eps[3] === 1);
});

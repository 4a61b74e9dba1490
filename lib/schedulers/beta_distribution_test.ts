import assert from "node:assert/strict";
import { betaPpf } from "./beta_distribution.ts";

Deno.test("betaPpf() inverts the beta(0.6, 0.6) distribution", () => {
  assert.ok(Math.abs(betaPpf(0.5, 0.6, 0.6) - 0.5) < 1e-12);
  // scipy.stats.beta.ppf(0.25, 2, 2) = 0.3263518223330697
  assert.ok(Math.abs(betaPpf(0.25, 2, 2) - 0.3263518223330697) < 1e-12);
});

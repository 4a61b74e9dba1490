import assert from "node:assert/strict";
import { karrasSigmas } from "./sigma_schedules.ts";
import { sigmaToT } from "./training_sigmas.ts";

Deno.test("karrasSigmas() and sigmaToT() invert the training schedule", () => {
  const k = karrasSigmas(0.1, 10, 3);
  assert.ok(Math.abs(k[0]! - 10) < 1e-12 && Math.abs(k[2]! - 0.1) < 1e-12);
  const logs = [Math.log(0.1), Math.log(1), Math.log(10)];
  assert.equal(sigmaToT(1, logs), 1);
  assert.ok(Math.abs(sigmaToT(Math.sqrt(10), logs) - 1.5) < 1e-12);
  assert.equal(sigmaToT(100, logs), 2);
  assert.equal(sigmaToT(0.01, logs), 0);
});

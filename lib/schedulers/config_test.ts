import assert from "node:assert/strict";
import { parseSchedulerConfig } from "./config.ts";

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

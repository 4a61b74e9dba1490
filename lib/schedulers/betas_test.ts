import assert from "node:assert/strict";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { alphasCumprodFromBetas, makeBetas, rescaleZeroTerminalSnr } from "./betas.ts";
import { parseSchedulerConfig } from "./config.ts";

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

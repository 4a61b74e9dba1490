/**
 * Learning-rate schedules with the semantics of Diffusers' `get_scheduler`
 * (diffusers/optimization.py, a `torch.optim.lr_scheduler.LambdaLR` over the optimiser): optimiser
 * step k (0-based) runs at `lr * lambda(k)`.
 *
 * @module
 */

/** The schedule names `--lr-scheduler` accepts (Diffusers' names). */
export const LR_SCHEDULERS = ["constant", "constant_with_warmup", "cosine", "linear"] as const;

/** One of {@linkcode LR_SCHEDULERS}. */
export type LrSchedulerName = typeof LR_SCHEDULERS[number];

/** A schedule: its name, the base rate, warm-up and total steps. */
export interface LrSchedule {
  name: LrSchedulerName;
  /** Base learning rate. */
  lr: number;
  /** Linear warm-up steps (ignored by `constant`). */
  warmupSteps: number;
  /** Total optimiser steps (cosine and linear decay over them). */
  totalSteps: number;
}

/**
 * The multiplier of step `step` (Diffusers' `lr_lambda`): warm-up `step / max(1, warmup)`, then
 * 1 (constant), a half cosine to 0 (`0.5 * (1 + cos(pi * progress))`, num_cycles = 0.5) or a
 * line to 0 over the remaining steps.
 *
 * @example
 * ```ts
 * import { lrFactor } from "./lr_schedule.ts";
 * const s = { name: "cosine", lr: 1e-4, warmupSteps: 10, totalSteps: 110 } as const;
 * console.assert(lrFactor(s, 5) === 0.5 && lrFactor(s, 10) === 1 && Math.abs(lrFactor(s, 60) - 0.5) < 1e-12);
 * ```
 */
export function lrFactor(schedule: LrSchedule, step: number): number {
  const { name, warmupSteps: warmup, totalSteps: total } = schedule;
  if (name === "constant") return 1;
  if (step < warmup) return step / Math.max(1, warmup);
  switch (name) {
    case "constant_with_warmup":
      return 1;
    case "cosine": {
      const progress = (step - warmup) / Math.max(1, total - warmup);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * 0.5 * 2 * progress)));
    }
    case "linear":
      return Math.max(0, (total - step) / Math.max(1, total - warmup));
  }
}

/**
 * The learning rate of optimiser step `step` (0-based): `lr * lrFactor(schedule, step)`.
 *
 * @example
 * ```ts
 * import { learningRateAt } from "./lr_schedule.ts";
 * const s = { name: "constant_with_warmup", lr: 1e-4, warmupSteps: 4, totalSteps: 100 } as const;
 * console.assert(learningRateAt(s, 2) === 5e-5);
 * ```
 */
export function learningRateAt(schedule: LrSchedule, step: number): number {
  return schedule.lr * lrFactor(schedule, step);
}

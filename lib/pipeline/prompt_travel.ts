/**
 * Prompt travel: a clip whose prompt changes from keyframe to keyframe
 * (`--prompt-map '{"0": "a cat", "8": "a dog"}'`). Each keyframe prompt is encoded once; every
 * frame between two keyframes gets the linear interpolation of their encoded embeddings (the
 * `encoder_hidden_states`, and SDXL's pooled `text_embeds` likewise), as FizzleDorf's
 * ComfyUI_FizzNodes BatchPromptSchedule does (BatchFuncs.py `interpolate_prompt_series` and
 * `BatchPoolAnimConditioning`, with ComfyUI's `addWeighted`): at frame f between keyframes
 * k0 < k1, with `w = 1 - (f - k0) / (k1 - k0)`, `cond = cond(k0) * w + cond(k1) * (1 - w)`.
 * Frames before the first keyframe hold its prompt and frames after the last hold the last
 * (FizzNodes adds a keyframe 0 and a keyframe at the end with those prompts). The negative prompt
 * does not travel.
 *
 * Unlike FizzNodes (which cuts long prompts to one chunk and pads with zeros), keyframe prompts
 * must encode to the same number of 77-token chunks and AND parts, so the interpolation is between
 * tensors of one shape.
 *
 * @module
 */
import { UsageError } from "../errors.ts";
import type { Cond, StepConditioning } from "./denoise.ts";
import type { FrameConds, VideoStepConditioning } from "./video_loop.ts";

/** A prompt map as a Job stores it: frame number (decimal string) -> prompt. */
export type PromptMap = Readonly<Record<string, string>>;

/** One keyframe. */
export interface Keyframe {
  frame: number;
  prompt: string;
}

/**
 * The keyframes of a prompt map, in frame order. Throws a UsageError for a key that is not a
 * frame number, a frame at or beyond `frames`, or an empty map.
 *
 * @example
 * ```ts
 * import { keyframes } from "./prompt_travel.ts";
 * const k = keyframes({ "8": "a dog", "0": "a cat" }, 16);
 * console.assert(k[0]!.frame === 0 && k[1]!.prompt === "a dog");
 * ```
 */
export function keyframes(map: PromptMap, frames: number): Keyframe[] {
  const out: Keyframe[] = [];
  for (const [key, prompt] of Object.entries(map)) {
    if (!/^\d+$/.test(key)) {
      throw new UsageError(`--prompt-map key "${key}" is not a frame number`, {
        hint: `use keys 0 to ${frames - 1}, e.g. '{"0": "a cat", "8": "a dog"}'`,
      });
    }
    const frame = Number(key);
    if (frame >= frames) {
      throw new UsageError(
        `--prompt-map has a prompt for frame ${frame}, but the clip has ${frames} frames ` +
          `(0 to ${frames - 1})`,
        { hint: `raise --frames above ${frame} or move the keyframe` },
      );
    }
    if (out.some((k) => k.frame === frame)) {
      throw new UsageError(`--prompt-map names frame ${frame} twice ("${key}")`);
    }
    out.push({ frame, prompt });
  }
  if (out.length === 0) {
    throw new UsageError("--prompt-map is empty", {
      hint: `give at least one keyframe, e.g. '{"0": "a cat"}'`,
    });
  }
  return out.sort((a, b) => a.frame - b.frame);
}

/** Where frame `f` lies between keyframes: indexes into the keyframes and the weight of `from`. */
export interface FrameBlend {
  from: number;
  to: number;
  /** Weight of the `from` keyframe, 1 at a keyframe (FizzNodes' `current_weight`). */
  weight: number;
}

/**
 * For each frame, the keyframes it is blended from and the weight of the earlier one.
 *
 * @example
 * ```ts
 * import { frameBlends } from "./prompt_travel.ts";
 * const b = frameBlends([0, 4], 6);
 * console.assert(b[2]!.from === 0 && b[2]!.to === 1 && b[2]!.weight === 0.5 && b[5]!.from === 1);
 * ```
 */
export function frameBlends(keys: readonly number[], frames: number): FrameBlend[] {
  const out: FrameBlend[] = [];
  for (let f = 0; f < frames; f++) {
    let k = 0;
    while (k + 1 < keys.length && keys[k + 1]! <= f) k++;
    if (f <= keys[0]! || k + 1 >= keys.length) {
      out.push({ from: k, to: k, weight: 1 });
      continue;
    }
    // FizzNodes: weight_step = 1 / (next - current); current_weight = 1 - weight_step * (f - current)
    const step = 1 / (keys[k + 1]! - keys[k]!);
    out.push({ from: k, to: k + 1, weight: 1 - step * (f - keys[k]!) });
  }
  return out;
}

/** `a * w + b * (1 - w)` elementwise in float32 (ComfyUI's `addWeighted`). */
function lerp(a: Float32Array, b: Float32Array, w: number): Float32Array {
  const f = Math.fround;
  const wa = f(w);
  const wb = f(1 - w);
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f(f(a[i]! * wa) + f(b[i]! * wb));
  return out;
}

function blendCond(a: Cond, b: Cond, w: number, what: () => string): Cond {
  if (a === b || w === 1) return a;
  if (a.embedding.tokens !== b.embedding.tokens || a.embedding.dim !== b.embedding.dim) {
    throw new UsageError(
      `Cannot blend the prompts of ${what()}: they encode to ${a.embedding.tokens} and ` +
        `${b.embedding.tokens} tokens`,
      { hint: "keep every --prompt-map prompt within 75 tokens, or give each the same BREAKs" },
    );
  }
  const out: Cond = {
    embedding: { ...a.embedding, data: lerp(a.embedding.data, b.embedding.data, w) },
  };
  if (a.added !== undefined) {
    const added: Record<string, Float32Array> = {};
    for (const [name, rowA] of Object.entries(a.added)) {
      const rowB = b.added?.[name];
      if (rowB === undefined || rowB.length !== rowA.length) {
        throw new TypeError(`Cannot blend "${name}" of ${what()}: the rows differ in shape`);
      }
      added[name] = lerp(rowA, rowB, w);
    }
    out.added = added;
  }
  return out;
}

/**
 * The per-frame conditioning of a clip from the per-step conditioning of each keyframe prompt
 * (`perKeyframe[k]` for `keys[k]`). Blends are computed once per distinct set of keyframe
 * conditionings (prompt-editing schedules change them between steps). Throws a UsageError when
 * keyframes differ in AND parts or chunk count.
 *
 * @example
 * ```ts
 * import { travelConditioning } from "./prompt_travel.ts";
 * const cond = (v: number) => ({ embedding: { data: Float32Array.of(v), tokens: 1, dim: 1 } });
 * const at = (v: number) => () => ({ uncond: cond(0), conds: [{ cond: cond(v), weight: 1 }] });
 * const step = travelConditioning([0, 2], [at(0), at(4)], 3)(0);
 * console.assert(step.conds[0]!.frames[1]!.embedding.data[0] === 2);
 * ```
 */
export function travelConditioning(
  keys: readonly number[],
  perKeyframe: ReadonlyArray<(i: number) => StepConditioning>,
  frames: number,
): (i: number) => VideoStepConditioning {
  if (keys.length !== perKeyframe.length || keys.length === 0) {
    throw new TypeError(`Expected one conditioning per keyframe (${keys.length})`);
  }
  const blends = frameBlends(keys, frames);
  let last: { inputs: StepConditioning[]; out: VideoStepConditioning } | undefined;
  return (i: number): VideoStepConditioning => {
    const inputs = perKeyframe.map((c) => c(i));
    if (
      last !== undefined &&
      inputs.every((s, k) =>
        s.uncond === last!.inputs[k]!.uncond &&
        s.conds.every((c, j) => c.cond === last!.inputs[k]!.conds[j]?.cond)
      )
    ) {
      return last.out;
    }
    const parts = inputs[0]!.conds.length;
    inputs.forEach((s, k) => {
      const same = s.conds.length === parts &&
        s.conds.every((c, j) => c.weight === inputs[0]!.conds[j]!.weight);
      if (!same) {
        throw new UsageError(
          `The --prompt-map prompts of frames ${keys[0]} and ${keys[k]} have different AND parts`,
          { hint: "give every keyframe prompt the same AND parts and weights" },
        );
      }
    });
    const conds: FrameConds[] = [];
    for (let j = 0; j < parts; j++) {
      const perFrame = blends.map((b, f) =>
        blendCond(
          inputs[b.from]!.conds[j]!.cond,
          inputs[b.to]!.conds[j]!.cond,
          b.weight,
          () => `frames ${keys[b.from]} and ${keys[b.to]} (at frame ${f})`,
        )
      );
      conds.push({ weight: inputs[0]!.conds[j]!.weight, frames: perFrame });
    }
    // The negative prompt is the same for every keyframe; its chunk count must match too.
    const uncond = inputs[0]!.uncond;
    inputs.forEach((s, k) => {
      if (s.uncond.embedding.tokens !== uncond.embedding.tokens) {
        throw new UsageError(
          `The --prompt-map prompts of frames ${keys[0]} and ${keys[k]} encode to different ` +
            `lengths (${uncond.embedding.tokens} and ${s.uncond.embedding.tokens} tokens)`,
          { hint: "keep every --prompt-map prompt within 75 tokens, or give each the same BREAKs" },
        );
      }
    });
    const out: VideoStepConditioning = { uncond, conds };
    last = { inputs, out };
    return out;
  };
}

/**
 * A plain (non-travelling) step conditioning as a video one: every frame shares it.
 *
 * @example
 * ```ts
 * import { sharedConditioning } from "./prompt_travel.ts";
 * const cond = { embedding: { data: Float32Array.of(1), tokens: 1, dim: 1 } };
 * const step = sharedConditioning(() => ({ uncond: cond, conds: [{ cond, weight: 1 }] }))(0);
 * console.assert(step.conds[0]!.frames.length === 1);
 * ```
 */
export function sharedConditioning(
  conditioning: (i: number) => StepConditioning,
): (i: number) => VideoStepConditioning {
  return (i) => {
    const step = conditioning(i);
    return {
      uncond: step.uncond,
      conds: step.conds.map((c) => ({ weight: c.weight, frames: [c.cond] })),
    };
  };
}

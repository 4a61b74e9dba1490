/**
 * Training checkpoints: everything a run needs to continue exactly where it stopped, in one
 * folder per step (`<dir>/step-000050/`), each written under a temporary name and renamed into
 * place when complete, so a run killed at any moment (even with SIGKILL) leaves the previous
 * checkpoints intact and at worst a `.tmp-*` folder that the next save removes.
 *
 * A checkpoint holds the LoRA (`lora.safetensors`, training names), the AdamW state
 * (`optimizer.safetensors`: `exp_avg` / `exp_avg_sq` per parameter, the step counters in its
 * metadata) and `state.json` (the step, the Job that started the run and the fingerprints of its
 * model and dataset). The data order and every random draw derive from the seed and the step
 * (seeds.ts), so no generator state needs saving.
 *
 * @module
 */
import { join } from "node:path";
import { InputError } from "../errors.ts";
import { SafetensorsFile, type TensorToWrite, writeSafetensors } from "../weights/safetensors.ts";
import type { AdamWParameterState } from "./adamw.ts";

/** The JSON part of a checkpoint. */
export interface CheckpointState {
  /** Format of this file. */
  format: "denoise-lora-train-checkpoint";
  version: 1;
  /** Optimiser steps done. */
  step: number;
  /** What the run trains: model, network, data; a resumed run must match these. */
  fingerprint: Record<string, unknown>;
  /** The Job that started the run (replayed by `--resume`). */
  job: Record<string, unknown>;
  /** `ss_training_started_at` and `ss_session_id` of the run, kept across resumes. */
  startedAt: string;
  sessionId: string;
}

/** A checkpoint's contents. */
export interface Checkpoint {
  /** Its folder. */
  path: string;
  state: CheckpointState;
  /** LoRA matrices by training name. */
  lora: Record<string, Float32Array>;
  /** Shapes of the LoRA matrices. */
  shapes: Record<string, number[]>;
  /** AdamW state per parameter. */
  optimizer: Record<string, AdamWParameterState>;
}

const STEP_DIR = /^step-(\d+)$/;
const STATE = "state.json";

/** The folder name of step `step`. */
export function checkpointName(step: number): string {
  return `step-${String(step).padStart(6, "0")}`;
}

/**
 * Writes a checkpoint into `dir` atomically and keeps only the newest `keep` there.
 *
 * @example
 * ```ts ignore
 * await saveCheckpoint("out-checkpoints", { state, lora, shapes, optimizer: adam.stateDict() }, 2);
 * ```
 */
export async function saveCheckpoint(
  dir: string,
  checkpoint: Omit<Checkpoint, "path">,
  keep = 2,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const name = checkpointName(checkpoint.state.step);
  const tmp = join(dir, `.${name}.tmp-${crypto.randomUUID().slice(0, 8)}`);
  await Deno.mkdir(tmp);
  try {
    const lora: TensorToWrite[] = Object.entries(checkpoint.lora).map(([n, data]) => ({
      name: n,
      dtype: "F32",
      shape: checkpoint.shapes[n]!,
      data,
    }));
    await writeSafetensors(join(tmp, "lora.safetensors"), lora, { format: "pt" });
    const moments: TensorToWrite[] = [];
    const steps: Record<string, number> = {};
    for (const [n, s] of Object.entries(checkpoint.optimizer)) {
      steps[n] = s.step;
      moments.push(
        { name: `${n}.exp_avg`, dtype: "F32", shape: [s.expAvg.length], data: s.expAvg },
        { name: `${n}.exp_avg_sq`, dtype: "F32", shape: [s.expAvgSq.length], data: s.expAvgSq },
      );
    }
    await writeSafetensors(join(tmp, "optimizer.safetensors"), moments, {
      format: "pt",
      steps: JSON.stringify(steps),
    });
    const file = await Deno.open(join(tmp, STATE), { write: true, createNew: true });
    try {
      await file.write(new TextEncoder().encode(JSON.stringify(checkpoint.state, null, 2) + "\n"));
      await file.sync();
    } finally {
      file.close();
    }
    const final = join(dir, name);
    let old: string | undefined;
    try {
      await Deno.stat(final);
      old = join(dir, `.${name}.old-${crypto.randomUUID().slice(0, 8)}`);
      await Deno.rename(final, old);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    await Deno.rename(tmp, final);
    if (old !== undefined) await Deno.remove(old, { recursive: true });
  } catch (error) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw error;
  }
  await prune(dir, keep);
  return join(dir, name);
}

async function prune(dir: string, keep: number): Promise<void> {
  const steps: Array<[number, string]> = [];
  for await (const e of Deno.readDir(dir)) {
    const m = STEP_DIR.exec(e.name);
    if (m !== null && e.isDirectory) steps.push([Number(m[1]), e.name]);
    // Leftovers of a save that was killed half-way.
    else if (/^\.step-\d+\.(tmp|old)-/.test(e.name)) {
      await Deno.remove(join(dir, e.name), { recursive: true }).catch(() => {});
    }
  }
  steps.sort((a, b) => b[0] - a[0]);
  for (const [, name] of steps.slice(Math.max(1, keep))) {
    await Deno.remove(join(dir, name), { recursive: true }).catch(() => {});
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/**
 * Reads a checkpoint: `path` is a `step-N` folder or a checkpoint folder, whose newest complete
 * checkpoint is taken. Throws an {@linkcode InputError} naming what is missing.
 *
 * @example
 * ```ts ignore
 * const checkpoint = await loadCheckpoint("out-checkpoints");
 * console.log(checkpoint.state.step);
 * ```
 */
export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  let folder = path;
  if (!(await isFile(join(path, STATE)))) {
    let best: [number, string] | undefined;
    try {
      for await (const e of Deno.readDir(path)) {
        const m = STEP_DIR.exec(e.name);
        if (m === null || !e.isDirectory || !(await isFile(join(path, e.name, STATE)))) continue;
        if (best === undefined || Number(m[1]) > best[0]) best = [Number(m[1]), e.name];
      }
    } catch (error) {
      if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) {
        throw new InputError(`Cannot resume: "${path}" is not a checkpoint folder`, {
          hint: "pass the folder --save-every wrote (or one of its step-N folders)",
        });
      }
      throw error;
    }
    if (best === undefined) {
      throw new InputError(`Cannot resume: "${path}" holds no complete checkpoint`, {
        hint: "pass the folder --save-every wrote (or one of its step-N folders)",
      });
    }
    folder = join(path, best[1]);
  }
  let state: CheckpointState;
  try {
    state = JSON.parse(await Deno.readTextFile(join(folder, STATE)));
  } catch (error) {
    throw new InputError(`Cannot resume from "${folder}": its ${STATE} is unreadable`, {
      cause: error,
    });
  }
  if (state.format !== "denoise-lora-train-checkpoint" || state.version !== 1) {
    throw new InputError(
      `Cannot resume from "${folder}": it is not a denoise lora-train checkpoint`,
    );
  }
  const lora: Record<string, Float32Array> = {};
  const shapes: Record<string, number[]> = {};
  {
    using file = await SafetensorsFile.open(join(folder, "lora.safetensors"));
    for (const [name, info] of file.tensors) {
      lora[name] = await file.readFloat32(name);
      shapes[name] = [...info.shape];
    }
  }
  const optimizer: Record<string, AdamWParameterState> = {};
  {
    using file = await SafetensorsFile.open(join(folder, "optimizer.safetensors"));
    const steps = JSON.parse(file.metadata.steps ?? "{}") as Record<string, number>;
    for (const [name, step] of Object.entries(steps)) {
      optimizer[name] = {
        step,
        expAvg: await file.readFloat32(`${name}.exp_avg`),
        expAvgSq: await file.readFloat32(`${name}.exp_avg_sq`),
      };
    }
  }
  return { path: folder, state, lora, shapes, optimizer };
}

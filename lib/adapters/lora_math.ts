/**
 * The weight change each LoRA-family module makes, as a dense `[out, in, (kh, kw)]` tensor:
 * plain LoRA / LoCon `up @ down` (with LoCon's Tucker `mid`), LoHa `(w1a @ w1b) ⊙ (w2a @ w2b)`,
 * LoKr `kron(w1, w2)`, full diffs, and A1111's DoRA weight decomposition. Semantics follow
 * A1111 extensions-builtin/Lora (network_lora.py, network_hada.py, network_lokr.py,
 * network_full.py, network.py `apply_weight_decompose`) and LyCORIS `lycoris/functional/`
 * (`rebuild_tucker`); written from reading them, not copied.
 *
 * Accumulation is in float64; results are float32. Tensors that do not fit together throw a
 * {@linkcode WeightsError} (bad input, exit 3) naming the module and the shapes.
 *
 * @module
 */
import { WeightsError } from "../errors.ts";

/** A float32 tensor read from a file. */
export interface DenseTensor {
  data: Float32Array;
  shape: readonly number[];
}

function product(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/** `a [m, k] @ b [k, n]` -> `[m, n]` (row-major), accumulated in float64. */
export function matmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number) {
  const out = new Float32Array(m * n);
  const row = new Float64Array(n);
  for (let i = 0; i < m; i++) {
    row.fill(0);
    for (let r = 0; r < k; r++) {
      const s = a[i * k + r]!;
      if (s === 0) continue;
      const off = r * n;
      for (let j = 0; j < n; j++) row[j]! += s * b[off + j]!;
    }
    out.set(row, i * n);
  }
  return out;
}

/**
 * LyCORIS `rebuild_tucker`: `einsum("i j k l, j r, i p -> p r k l", mid, down, up)` with
 * `mid [R1, R2, kh, kw]`, `down [R2, in]`, `up [out, R1]` -> `[out, in, kh, kw]`.
 */
export function tucker(
  mid: DenseTensor,
  down: Float32Array,
  up: Float32Array,
  out: number,
  inFeatures: number,
): Float32Array {
  const [r1, r2] = [mid.shape[0]!, mid.shape[1]!];
  const k = product(mid.shape.slice(2));
  // t[i, r, kk] = sum_j mid[i, j, kk] * down[j, r]  -> [R1, in, k]
  const t = new Float64Array(r1 * inFeatures * k);
  for (let i = 0; i < r1; i++) {
    for (let j = 0; j < r2; j++) {
      for (let r = 0; r < inFeatures; r++) {
        const d = down[j * inFeatures + r]!;
        if (d === 0) continue;
        const tOff = (i * inFeatures + r) * k;
        const mOff = (i * r2 + j) * k;
        for (let kk = 0; kk < k; kk++) t[tOff + kk]! += mid.data[mOff + kk]! * d;
      }
    }
  }
  // out[p, r, kk] = sum_i up[p, i] * t[i, r, kk]
  const size = inFeatures * k;
  const result = new Float32Array(out * size);
  const row = new Float64Array(size);
  for (let p = 0; p < out; p++) {
    row.fill(0);
    for (let i = 0; i < r1; i++) {
      const u = up[p * r1 + i]!;
      if (u === 0) continue;
      const off = i * size;
      for (let c = 0; c < size; c++) row[c]! += u * t[off + c]!;
    }
    result.set(row, p * size);
  }
  return result;
}

/** Kronecker product of `a [m, n]` and `b [p, q, (k)]` -> `[m*p, n*q, (k)]`. */
export function kron(a: DenseTensor, b: DenseTensor): DenseTensor {
  const [m, n] = [a.shape[0]!, product(a.shape.slice(1))];
  const [p, q] = [b.shape[0]!, b.shape[1] ?? 1];
  const k = product(b.shape.slice(2));
  const out = new Float32Array(m * p * n * q * k);
  const cols = n * q * k;
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      const s = a.data[i * n + j]!;
      for (let x = 0; x < p; x++) {
        const dst = (i * p + x) * cols + j * q * k;
        const src = x * q * k;
        for (let c = 0; c < q * k; c++) out[dst + c] = s * b.data[src + c]!;
      }
    }
  }
  return { data: out, shape: [m * p, n * q, ...b.shape.slice(2)] };
}

/** A module's tensors, read, by role (see lora_file.ts). */
export type ModuleTensors = Record<string, DenseTensor>;

/** The weight change of one module before scaling, and its rank for the `alpha / rank` scale. */
export interface ModuleDelta {
  /** The change, row-major, `shape[0]` output rows. */
  delta: DenseTensor;
  /** The rank `alpha` is divided by; undefined means no `alpha / rank` scaling (factor 1). */
  rank: number | undefined;
}

function need(t: ModuleTensors, role: string, key: string): DenseTensor {
  const v = t[role];
  if (v === undefined) throw new WeightsError(`LoRA module "${key}" has no "${role}" tensor`);
  return v;
}

/**
 * Why `up`, `down` and `mid` shapes cannot make a low-rank product, or undefined when they can:
 * `up [out, R1, (1, 1)]`, `down [R2, rest...]`, R1 = R2 without `mid`, else `mid [R1, R2, ...]`.
 */
export function lowRankMisfit(
  up: readonly number[],
  down: readonly number[],
  mid?: readonly number[],
): string | undefined {
  const fmt = (s: readonly number[]) => `[${s.join(", ")}]`;
  if (up.length < 2 || down.length < 1) {
    return `up ${fmt(up)} and down ${fmt(down)} are not matrices`;
  }
  const rank = mid === undefined ? down[0]! : mid[0]!;
  if (product(up) !== up[0]! * rank) {
    return mid === undefined
      ? `up ${fmt(up)} does not fit down ${fmt(down)}`
      : `up ${fmt(up)} does not fit mid ${fmt(mid)}`;
  }
  if (mid !== undefined && (mid.length < 2 || mid[1] !== down[0])) {
    return `mid ${fmt(mid)} does not fit down ${fmt(down)}`;
  }
  return undefined;
}

/** `up [out, r, (1, 1)] @ down [r, rest...]`, or Tucker with `mid`. */
function lowRank(
  key: string,
  up: DenseTensor,
  down: DenseTensor,
  mid: DenseTensor | undefined,
): DenseTensor {
  const misfit = lowRankMisfit(up.shape, down.shape, mid?.shape);
  if (misfit !== undefined) throw new WeightsError(`LoRA module "${key}": ${misfit}`);
  const out = up.shape[0]!;
  const rank = down.shape[0]!;
  if (mid !== undefined) {
    const inFeatures = product(down.shape.slice(1));
    const data = tucker(mid, down.data, up.data, out, inFeatures);
    return { data, shape: [out, inFeatures, ...mid.shape.slice(2)] };
  }
  const rest = down.shape.slice(1);
  const data = matmul(up.data, down.data, out, rank, product(rest));
  return { data, shape: [out, ...rest] };
}

/**
 * The unscaled weight change of a module and its rank. `key` and `algorithm` come from
 * lora_file.ts; the tensors must be float32.
 */
export function moduleDelta(
  key: string,
  algorithm: "lora" | "loha" | "lokr" | "full",
  t: ModuleTensors,
): ModuleDelta {
  switch (algorithm) {
    case "lora": {
      const down = need(t, "down", key);
      return { delta: lowRank(key, need(t, "up", key), down, t.mid), rank: down.shape[0]! };
    }
    case "loha": {
      // network_hada.py: w1 = w1a @ w1b (or Tucker with t1), same for w2; delta = w1 * w2.
      const w1b = need(t, "hada_w1_b", key);
      const w1 = lowRank(key, need(t, "hada_w1_a", key), w1b, t.hada_t1);
      const w2 = lowRank(key, need(t, "hada_w2_a", key), need(t, "hada_w2_b", key), t.hada_t2);
      if (w1.data.length !== w2.data.length) {
        throw new WeightsError(
          `LoHa module "${key}": its two halves have different sizes ` +
            `([${w1.shape.join(", ")}] and [${w2.shape.join(", ")}])`,
        );
      }
      const data = new Float32Array(w1.data.length);
      for (let i = 0; i < data.length; i++) data[i] = w1.data[i]! * w2.data[i]!;
      return {
        delta: { data, shape: w2.shape.length > w1.shape.length ? w2.shape : w1.shape },
        rank: w1b.shape[0]!,
      };
    }
    case "lokr": {
      // network_lokr.py: w1 = lokr_w1 or w1a @ w1b; w2 = lokr_w2 or w2a @ w2b (Tucker with t2);
      // delta = kron(w1, w2); the rank is w1b's, else w2b's, else there is no alpha scaling.
      const w1 = t.lokr_w1 ??
        lowRank(key, need(t, "lokr_w1_a", key), need(t, "lokr_w1_b", key), undefined);
      const w2 = t.lokr_w2 ??
        lowRank(key, need(t, "lokr_w2_a", key), need(t, "lokr_w2_b", key), t.lokr_t2);
      const rank = t.lokr_w1_b?.shape[0] ?? t.lokr_w2_b?.shape[0];
      return { delta: kron(w1, w2), rank };
    }
    case "full":
      return { delta: need(t, "diff", key), rank: undefined };
  }
}

/** The shape a module's change will have, from tensor shapes alone (for early checks). */
export function deltaShape(
  algorithm: "lora" | "loha" | "lokr" | "full",
  shapes: Record<string, readonly number[]>,
): number[] | undefined {
  const lowRankShape = (
    up?: readonly number[],
    down?: readonly number[],
    mid?: readonly number[],
  ) =>
    up && down && lowRankMisfit(up, down, mid) === undefined
      ? mid ? [up[0]!, product(down.slice(1)), ...mid.slice(2)] : [up[0]!, ...down.slice(1)]
      : undefined;
  switch (algorithm) {
    case "lora":
      return lowRankShape(shapes.up, shapes.down, shapes.mid);
    case "loha": {
      const w1 = lowRankShape(shapes.hada_w1_a, shapes.hada_w1_b, shapes.hada_t1);
      const w2 = lowRankShape(shapes.hada_w2_a, shapes.hada_w2_b, shapes.hada_t2);
      return w1 && w2 && product(w1) === product(w2) ? w2 : undefined;
    }
    case "lokr": {
      const w1 = shapes.lokr_w1 ?? lowRankShape(shapes.lokr_w1_a, shapes.lokr_w1_b);
      const w2 = shapes.lokr_w2 ?? lowRankShape(shapes.lokr_w2_a, shapes.lokr_w2_b, shapes.lokr_t2);
      if (!w1 || !w2) return undefined;
      return [w1[0]! * w2[0]!, product(w1.slice(1)) * (w2[1] ?? 1), ...w2.slice(2)];
    }
    case "full":
      return shapes.diff ? [...shapes.diff] : undefined;
  }
}

/**
 * True when a change of shape `delta` can be added to a weight of shape `target`: the same
 * output rows and element count (a Linear LoRA on a 1x1 conv, or `[out, in*k*k]` on a k×k conv).
 */
export function fitsShape(delta: readonly number[], target: readonly number[]): boolean {
  return delta[0] === target[0] && product(delta) === product(target);
}

/**
 * A1111 network.py `apply_weight_decompose` (DoRA): with `merged = weight + change`, returns
 * `merged * magnitude / norm(merged) - weight`, the norm taken over every axis except the one the
 * magnitude runs along (LyCORIS stores `[1, in, ...]`, per input column; PEFT stores `[out]`,
 * per output row).
 */
export function doraChange(
  weight: Float32Array,
  change: Float32Array,
  shape: readonly number[],
  magnitude: DenseTensor,
): Float32Array {
  const out = shape[0]!;
  const inner = product(shape.slice(1));
  const perRow = magnitude.data.length === out && (magnitude.shape[0] === out);
  const perColumn = !perRow && magnitude.data.length === (shape[1] ?? 1);
  if (!perRow && !perColumn) {
    throw new WeightsError(
      `DoRA magnitude ${JSON.stringify(magnitude.shape)} fits neither the rows nor the ` +
        `columns of a ${JSON.stringify(shape)} weight`,
    );
  }
  const cols = shape[1] ?? 1;
  const k = inner / cols;
  const sums = new Float64Array(perRow ? out : cols);
  for (let o = 0; o < out; o++) {
    for (let c = 0; c < inner; c++) {
      const v = weight[o * inner + c]! + change[o * inner + c]!;
      sums[perRow ? o : Math.floor(c / k)]! += v * v;
    }
  }
  const result = new Float32Array(weight.length);
  for (let o = 0; o < out; o++) {
    for (let c = 0; c < inner; c++) {
      const axis = perRow ? o : Math.floor(c / k);
      const i = o * inner + c;
      const merged = weight[i]! + change[i]!;
      result[i] = merged * magnitude.data[axis]! / Math.sqrt(sums[axis]!) - weight[i]!;
    }
  }
  return result;
}

/**
 * Reading onnxruntime's profiler output (a Chrome trace: a JSON array of events, written by a
 * session created with `profilePrefix`) into time per op type, for benches and
 * docs/performance.md.
 *
 * ORT records one `"Session"` event named `"model_run"` per `run()` and, inside it, one
 * `"Node"` event named `<node>_kernel_time` per node executed, whose `args.op_name` is the op
 * type after ORT's graph optimisations (fused nodes such as `FusedConv` or `NchwcConv` appear
 * under their own names).
 *
 * @module
 */

/** Element type and dims of one input or output, as ORT records them (`{ float: [2, 4] }`). */
export type TypeShape = Record<string, number[]>;

/** One event of the trace (only the fields read here). */
export interface TraceEvent {
  cat?: string;
  name?: string;
  ts?: number;
  dur?: number;
  args?: {
    op_name?: string;
    input_type_shape?: TypeShape[];
    output_type_shape?: TypeShape[];
    [key: string]: unknown;
  };
}

/** Time spent in one op type during one run. */
export interface OpTypeTime {
  /** ORT's op type after optimisation (`Conv`, `FusedConv`, `MultiHeadAttention`, ...). */
  opType: string;
  /** Summed kernel time in milliseconds. */
  ms: number;
  /** Nodes of this type executed. */
  count: number;
  /** Share of the run's summed kernel time (0..1). */
  share: number;
  /** Floating-point (or integer) operations of these nodes, from their shapes (see {@linkcode nodeFlops}). */
  flops: number;
}

/** What {@linkcode summariseProfile} found. */
export interface ProfileSummary {
  /** Runs found in the trace. */
  runs: number;
  /** Wall time of the summarised run in milliseconds (the `model_run` event). */
  runMs: number;
  /** Summed kernel time of the summarised run in milliseconds. */
  kernelMs: number;
  /** Operations of the run's matrix products, convolutions and attentions ({@linkcode nodeFlops}). */
  flops: number;
  /** Op types by decreasing time. */
  opTypes: OpTypeTime[];
}

/**
 * Sums the kernel time per op type of one run of a trace (default the last run, so a warm-up
 * run before it is not counted).
 *
 * @example
 * ```ts
 * import { summariseProfile } from "./profile.ts";
 * const s = summariseProfile([
 *   { cat: "Session", name: "model_run", ts: 0, dur: 10 },
 *   { cat: "Node", name: "a_kernel_time", ts: 1, dur: 6000, args: { op_name: "Conv" } },
 *   { cat: "Node", name: "b_kernel_time", ts: 2, dur: 2000, args: { op_name: "Add" } },
 * ]);
 * console.assert(s.opTypes[0]?.opType === "Conv" && s.opTypes[0]?.ms === 6);
 * ```
 */
export function summariseProfile(
  events: readonly TraceEvent[],
  options: { run?: number } = {},
): ProfileSummary {
  const runs = events.filter((e) => e.cat === "Session" && e.name === "model_run")
    .sort((a, b) => (a.ts ?? 0) - (b.ts ?? 0));
  const index = options.run ?? runs.length - 1;
  const run = runs[index];
  if (runs.length > 0 && run === undefined) {
    throw new RangeError(`Cannot summarise run ${index}: the trace holds ${runs.length} runs`);
  }
  const start = run?.ts ?? -Infinity;
  const end = run === undefined ? Infinity : (run.ts ?? 0) + (run.dur ?? 0);
  const byType = new Map<string, { us: number; count: number; flops: number }>();
  let total = 0;
  let flops = 0;
  for (const e of events) {
    if (e.cat !== "Node" || !e.name?.endsWith("_kernel_time")) continue;
    const ts = e.ts ?? 0;
    if (ts < start || ts > end) continue;
    const type = e.args?.op_name ?? "?";
    const entry = byType.get(type) ?? { us: 0, count: 0, flops: 0 };
    const f = nodeFlops(type, e.args?.input_type_shape ?? [], e.args?.output_type_shape ?? []);
    entry.us += e.dur ?? 0;
    entry.count++;
    entry.flops += f;
    byType.set(type, entry);
    total += e.dur ?? 0;
    flops += f;
  }
  const opTypes = [...byType].map(([opType, { us, count, flops }]) => ({
    opType,
    ms: us / 1000,
    count,
    share: total > 0 ? us / total : 0,
    flops,
  })).sort((a, b) => b.ms - a.ms);
  return {
    runs: runs.length,
    runMs: (run?.dur ?? 0) / 1000,
    kernelMs: total / 1000,
    flops,
    opTypes,
  };
}

function dimsOf(ts: TypeShape | undefined): number[] {
  if (ts === undefined) return [];
  return Object.values(ts)[0] ?? [];
}

function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/**
 * Operations of one node (2 per multiply-add) from the shapes ORT recorded: convolutions
 * (`2 * output elements * in-channels per group * kernel area`), matrix products, plain or
 * quantised or fused (`2 * output elements * K`, K the left operand's last axis) and
 * `MultiHeadAttention` (`4 * B * S * L * D`: the two products of each head). Other ops count 0:
 * their cost is memory traffic, not arithmetic.
 *
 * @example
 * ```ts
 * import { nodeFlops } from "./profile.ts";
 * console.assert(nodeFlops("Gemm", [{ float: [8, 3] }], [{ float: [8, 5] }]) === 2 * 8 * 5 * 3);
 * ```
 */
export function nodeFlops(
  opType: string,
  inputs: readonly TypeShape[],
  outputs: readonly TypeShape[],
): number {
  const out = dimsOf(outputs[0]);
  switch (opType) {
    case "Conv":
    case "FusedConv":
    case "NhwcFusedConv": {
      const w = dimsOf(inputs[1]);
      return w.length < 3 ? 0 : 2 * product(out) * product(w.slice(1));
    }
    case "Gemm":
    case "FusedGemm":
    case "MatMul":
    case "FusedMatMul":
    case "MatMulInteger":
    case "MatMulIntegerToFloat":
    case "DynamicQuantizeMatMul": {
      const a = dimsOf(inputs[0]);
      return a.length === 0 ? 0 : 2 * product(out) * a[a.length - 1]!;
    }
    case "MultiHeadAttention": {
      // query [B, S, D]; key [B, L, D] or [B, N, L, H]
      const q = dimsOf(inputs[0]);
      const k = dimsOf(inputs[1]);
      if (q.length !== 3 || k.length < 3) return 0;
      const l = k.length === 3 ? k[1]! : k[2]!;
      return 4 * q[0]! * q[1]! * l * q[2]!;
    }
    default:
      return 0;
  }
}

/**
 * Reads the newest trace file whose name starts with `prefix` (ORT appends `_<date>.json`) and
 * returns its events.
 */
export async function readProfile(prefix: string): Promise<TraceEvent[]> {
  const slash = prefix.lastIndexOf("/");
  const dir = slash >= 0 ? prefix.slice(0, slash) || "/" : ".";
  const base = prefix.slice(slash + 1);
  let newest: { path: string; mtime: number } | undefined;
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile || !entry.name.startsWith(base) || !entry.name.endsWith(".json")) continue;
    const path = `${dir}/${entry.name}`;
    const mtime = (await Deno.stat(path)).mtime?.getTime() ?? 0;
    if (newest === undefined || mtime >= newest.mtime) newest = { path, mtime };
  }
  if (newest === undefined) {
    throw new RangeError(`Cannot find an ORT profile "${prefix}_*.json" in "${dir}"`);
  }
  return JSON.parse(await Deno.readTextFile(newest.path)) as TraceEvent[];
}

/** A Markdown table of a summary's op types (`limit` rows, the rest summed as "other"). */
export function profileTable(summary: ProfileSummary, limit = 12): string {
  const rows = summary.opTypes.slice(0, limit);
  const rest = summary.opTypes.slice(limit);
  const gflop = (flops: number) => flops > 0 ? (flops / 1e9).toFixed(1) : "";
  const rate = (flops: number, ms: number) => flops > 0 ? (flops / ms / 1e6).toFixed(0) : "";
  const lines = [
    "| op type | ms | share | nodes | GFLOP | GFLOP/s |",
    "|---|---:|---:|---:|---:|---:|",
  ];
  const row = (name: string, ms: number, share: number, count: number | string, flops: number) =>
    lines.push(
      `| ${name} | ${ms.toFixed(1)} | ${(share * 100).toFixed(1)}% | ${count} | ${
        gflop(flops)
      } | ` +
        `${rate(flops, ms)} |`,
    );
  for (const r of rows) row(r.opType, r.ms, r.share, r.count, r.flops);
  if (rest.length > 0) {
    const sum = (f: (r: OpTypeTime) => number) => rest.reduce((a, r) => a + f(r), 0);
    row(
      `other (${rest.length} types)`,
      sum((r) => r.ms),
      sum((r) => r.share),
      sum((r) => r.count),
      sum((r) => r.flops),
    );
  }
  row("**all kernels**", summary.kernelMs, 1, "", summary.flops);
  return lines.join("\n");
}

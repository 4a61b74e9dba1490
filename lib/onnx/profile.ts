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

/** One event of the trace (only the fields read here). */
export interface TraceEvent {
  cat?: string;
  name?: string;
  ts?: number;
  dur?: number;
  args?: { op_name?: string; [key: string]: unknown };
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
}

/** What {@linkcode summariseProfile} found. */
export interface ProfileSummary {
  /** Runs found in the trace. */
  runs: number;
  /** Wall time of the summarised run in milliseconds (the `model_run` event). */
  runMs: number;
  /** Summed kernel time of the summarised run in milliseconds. */
  kernelMs: number;
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
  const byType = new Map<string, { us: number; count: number }>();
  let total = 0;
  for (const e of events) {
    if (e.cat !== "Node" || !e.name?.endsWith("_kernel_time")) continue;
    const ts = e.ts ?? 0;
    if (ts < start || ts > end) continue;
    const type = e.args?.op_name ?? "?";
    const entry = byType.get(type) ?? { us: 0, count: 0 };
    entry.us += e.dur ?? 0;
    entry.count++;
    byType.set(type, entry);
    total += e.dur ?? 0;
  }
  const opTypes = [...byType].map(([opType, { us, count }]) => ({
    opType,
    ms: us / 1000,
    count,
    share: total > 0 ? us / total : 0,
  })).sort((a, b) => b.ms - a.ms);
  return { runs: runs.length, runMs: (run?.dur ?? 0) / 1000, kernelMs: total / 1000, opTypes };
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
  const lines = ["| op type | ms | share | nodes |", "|---|---:|---:|---:|"];
  for (const r of rows) {
    lines.push(
      `| ${r.opType} | ${r.ms.toFixed(1)} | ${(r.share * 100).toFixed(1)}% | ${r.count} |`,
    );
  }
  if (rest.length > 0) {
    const ms = rest.reduce((a, r) => a + r.ms, 0);
    const share = rest.reduce((a, r) => a + r.share, 0);
    const count = rest.reduce((a, r) => a + r.count, 0);
    lines.push(
      `| other (${rest.length} types) | ${ms.toFixed(1)} | ${
        (share * 100).toFixed(1)
      }% | ${count} |`,
    );
  }
  lines.push(`| **all kernels** | ${summary.kernelMs.toFixed(1)} | 100% | |`);
  return lines.join("\n");
}

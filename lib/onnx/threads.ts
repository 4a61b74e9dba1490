/**
 * How many cores this process may really use: the CPUs its affinity mask allows, capped by a
 * cgroup CPU quota (containers, CI runners), never more than the machine has. onnxruntime's own
 * default picks one thread on some machines (it counts physical cores from a topology it cannot
 * always read), so sessions default to this number instead.
 *
 * @module
 */
import { readFileSync } from "node:fs";

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

/** CPUs in a Linux CPU list such as `0-3,8,10-11`. */
export function countCpuList(list: string): number {
  let n = 0;
  for (const part of list.trim().split(",")) {
    if (part === "") continue;
    const [a, b] = part.split("-").map((v) => Number(v));
    if (!Number.isInteger(a)) continue;
    n += b === undefined ? 1 : Number.isInteger(b) && b >= a! ? b - a! + 1 : 1;
  }
  return n;
}

/**
 * The CPU quota of a cgroup, in CPUs (rounded up), from cgroup v2's `cpu.max` ("max 100000" or
 * "200000 100000") or v1's `cpu.cfs_quota_us` / `cpu.cfs_period_us`; undefined when unlimited.
 *
 * @example
 * ```ts
 * import { cgroupCpuLimit } from "./threads.ts";
 * console.assert(cgroupCpuLimit({ v2: "150000 100000\n" }) === 2);
 * console.assert(cgroupCpuLimit({ v2: "max 100000\n" }) === undefined);
 * ```
 */
export function cgroupCpuLimit(files: {
  v2?: string | undefined;
  v1Quota?: string | undefined;
  v1Period?: string | undefined;
}): number | undefined {
  if (files.v2 !== undefined) {
    const [quota, period] = files.v2.trim().split(/\s+/);
    if (quota === undefined || quota === "max") return undefined;
    const q = Number(quota);
    const p = Number(period ?? 100000);
    return q > 0 && p > 0 ? Math.max(1, Math.ceil(q / p)) : undefined;
  }
  if (files.v1Quota !== undefined && files.v1Period !== undefined) {
    const q = Number(files.v1Quota.trim());
    const p = Number(files.v1Period.trim());
    return q > 0 && p > 0 ? Math.max(1, Math.ceil(q / p)) : undefined;
  }
  return undefined;
}

let cached: number | undefined;

/** The cores this process may use (at least 1); computed once. */
export function availableCores(): number {
  if (cached !== undefined) return cached;
  let n = Math.max(1, navigator.hardwareConcurrency || 1);
  const status = readText("/proc/self/status");
  const allowed = status?.match(/^Cpus_allowed_list:\s*(.+)$/m)?.[1];
  if (allowed !== undefined) {
    const count = countCpuList(allowed);
    if (count > 0) n = Math.min(n, count);
  }
  const limit = cgroupCpuLimit({
    v2: readText("/sys/fs/cgroup/cpu.max"),
    v1Quota: readText("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") ??
      readText("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"),
    v1Period: readText("/sys/fs/cgroup/cpu/cpu.cfs_period_us") ??
      readText("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us"),
  });
  if (limit !== undefined) n = Math.min(n, limit);
  cached = n;
  return n;
}

/** What {@linkcode resolveThreads} decided. */
export interface ResolvedThreads {
  threads: number;
  /** Set when the request was above the usable cores and was lowered to them. */
  cappedFrom?: number;
}

/**
 * The intra-op thread count for a request: the usable cores when none is given, and never more
 * than them (more threads than cores only make every op wait; 1,000 threads on 2 cores ran 100x
 * slower).
 *
 * @example
 * ```ts
 * import { availableCores, resolveThreads } from "./threads.ts";
 * console.assert(resolveThreads(undefined).threads === availableCores());
 * console.assert(resolveThreads(1000).cappedFrom === 1000);
 * ```
 */
export function resolveThreads(requested: number | undefined): ResolvedThreads {
  const cores = availableCores();
  if (requested === undefined) return { threads: cores };
  if (!Number.isInteger(requested) || requested < 1) {
    throw new RangeError(`Threads must be a positive integer, got ${requested}`);
  }
  return requested > cores ? { threads: cores, cappedFrom: requested } : { threads: requested };
}

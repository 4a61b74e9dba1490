/**
 * Property-based fuzzing of the readers of untrusted bytes (docs/fuzzing.md). Every input must
 * end in a value or a typed error: an error that lib/errors.ts maps to an exit code other than
 * 1 ("bug"), and not one of the engine's own errors (stack overflow, a failed allocation, an
 * out-of-range typed array or DataView access). Each case must also finish within a time
 * limit and leave the process below a memory cap.
 *
 * Counts and seeds come from the environment:
 * - `DENOISE_FUZZ_RUNS`: cases per reader (default 300; `deno task fuzz` runs 10,000);
 * - `DENOISE_FUZZ_SEED`: fast-check's seed (default a fixed one, so the normal test run is
 *   deterministic; "random" picks one and prints it, as `deno task fuzz` does);
 * - `DENOISE_FUZZ_MAX_MS`: the slowest a case may be (default 5000 ms);
 * - `DENOISE_FUZZ_MAX_RSS_MB`: the resident-memory cap (default 3072 MB).
 *
 * @module
 */
import fc from "fast-check";
import { ExitCode, exitCodeFor } from "../../lib/errors.ts";

function envNumber(name: string, fallback: number): number {
  const text = Deno.env.get(name);
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`${name} must be a positive number, got "${text}"`);
  }
  return value;
}

/** Cases per reader. */
export const RUNS: number = Math.floor(envNumber("DENOISE_FUZZ_RUNS", 300));
/** fast-check's seed. */
export const SEED: number = Deno.env.get("DENOISE_FUZZ_SEED") === "random"
  ? Math.floor(Math.random() * 2 ** 31)
  : Math.floor(envNumber("DENOISE_FUZZ_SEED", 20241117));
if (Deno.env.get("DENOISE_FUZZ_SEED") === "random") {
  console.log(`fuzz: DENOISE_FUZZ_SEED=${SEED} replays this run`);
}
const MAX_MS = envNumber("DENOISE_FUZZ_MAX_MS", 5000);
const MAX_RSS = envNumber("DENOISE_FUZZ_MAX_RSS_MB", 3072) * 2 ** 20;

/** Messages of errors thrown by the JavaScript engine itself, never on purpose by a reader. */
const ENGINE_ERRORS = [
  /^Maximum call stack size exceeded/,
  /^Invalid (typed )?array length/,
  /^Invalid string length/,
  /^Array buffer allocation failed/,
  /^Invalid DataView length/,
  /^Offset is outside the bounds of the DataView/,
  /^Start offset -?\d+ is outside the bounds of the buffer/,
  /^Invalid typed array length/,
  /^Invalid count value/,
  /^Cannot convert .* to a BigInt/,
  /^The number .* cannot be converted to a BigInt/,
  /^Invalid time value/,
  /^Invalid code point/,
  /^Out of memory/,
];

/**
 * Why a thrown value is a crash rather than a typed error, or undefined when it is fine.
 *
 * @example
 * ```ts
 * import { crashOf } from "./harness.ts";
 * console.assert(crashOf(new SyntaxError("bad PNG")) === undefined);
 * console.assert(crashOf(new TypeError("Cannot read properties of undefined")) !== undefined);
 * ```
 */
export function crashOf(error: unknown): string | undefined {
  if (!(error instanceof Error)) return `threw a non-Error value: ${String(error)}`;
  const what = `${error.name}: ${error.message}`;
  if (ENGINE_ERRORS.some((re) => re.test(error.message))) return `engine error ${what}`;
  if (exitCodeFor(error) === ExitCode.failure) return `untyped error (exit 1) ${what}`;
  return undefined;
}

/**
 * A crash found in a file this suite may not fix, reported to its owner: matching cases are
 * counted and printed instead of failing the run. Remove the entry once it is fixed.
 */
export interface KnownCrash {
  /** Matches the crash description from {@linkcode crashOf}. */
  pattern: RegExp;
  /** Where it comes from and what fixes it. */
  where: string;
}

/** Runs one case: a value or a typed error, in time, within the memory cap. */
export async function checkCase<T>(
  input: T,
  reader: (input: T) => unknown,
  known: readonly KnownCrash[] = [],
  seen: Map<KnownCrash, number> = new Map(),
): Promise<void> {
  const start = performance.now();
  let crash: string | undefined;
  let stack: string | undefined;
  try {
    await reader(input);
  } catch (error) {
    crash = crashOf(error);
    stack = error instanceof Error ? error.stack : undefined;
  }
  const knownCrash = crash === undefined ? undefined : known.find((k) => k.pattern.test(crash!));
  if (knownCrash !== undefined) {
    seen.set(knownCrash, (seen.get(knownCrash) ?? 0) + 1);
    crash = undefined;
  }
  const ms = performance.now() - start;
  if (crash !== undefined) throw new Error(`${crash}\n${stack ?? ""}`);
  if (ms > MAX_MS) throw new Error(`the case took ${ms.toFixed(0)} ms (limit ${MAX_MS} ms)`);
  const rss = Deno.memoryUsage().rss;
  if (rss > MAX_RSS) {
    throw new Error(`resident memory reached ${(rss / 2 ** 20).toFixed(0)} MB after the case`);
  }
}

/** A short printable description of a fuzz input. */
export function describeInput(input: unknown): string {
  if (input instanceof Uint8Array) {
    const hex = Array.from(input.subarray(0, 96), (b) => b.toString(16).padStart(2, "0")).join("");
    return `${input.length} bytes: ${hex}${input.length > 96 ? "..." : ""}`;
  }
  const text = typeof input === "string" ? input : JSON.stringify(input) ?? String(input);
  return `${text.length} chars: ${JSON.stringify(text.slice(0, 300))}${
    text.length > 300 ? "..." : ""
  }`;
}

/**
 * Runs `reader` on `runs` inputs from `arbitrary`. A failure names the (shrunk) input, the seed
 * and the path that replays it: `DENOISE_FUZZ_SEED=<seed>` with fast-check's `path`.
 */
export async function fuzz<T>(
  arbitrary: fc.Arbitrary<T>,
  reader: (input: T) => unknown,
  options: { runs?: number; known?: readonly KnownCrash[] } = {},
): Promise<void> {
  const seen = new Map<KnownCrash, number>();
  const property = fc.asyncProperty(
    arbitrary,
    (input) => checkCase(input, reader, options.known, seen),
  );
  const details = await fc.check(property, { numRuns: options.runs ?? RUNS, seed: SEED });
  for (const [k, count] of seen) {
    console.warn(`known crash, ${count} case(s), not counted as a failure: ${k.where}`);
  }
  if (!details.failed) return;
  const cause = details.errorInstance;
  throw new Error(
    `fuzz case failed after ${details.numRuns} cases (seed ${details.seed}, path ` +
      `"${details.counterexamplePath}"), input ${describeInput(details.counterexample?.[0])}: ` +
      (cause instanceof Error ? cause.message : String(cause)),
  );
}

/** One edit of a byte string. Offsets are taken modulo the length when applied. */
export type Mutation =
  | { kind: "truncate"; at: number }
  | { kind: "flip"; at: number; bit: number }
  | { kind: "set"; at: number; value: number }
  | { kind: "u32"; at: number; value: number; littleEndian: boolean }
  | { kind: "u64"; at: number; value: bigint; littleEndian: boolean }
  | { kind: "insert"; at: number; bytes: Uint8Array }
  | { kind: "delete"; at: number; length: number }
  | { kind: "repeat"; at: number; length: number; times: number };

/** Field values that break naive length and offset arithmetic. */
const HOSTILE_U32 = [
  0,
  1,
  0x7f,
  0x80,
  0xff,
  0x7fff,
  0xffff,
  0x10000,
  0x7fffffff,
  0x80000000,
  0xfffffff0,
  0xffffffff,
];
const HOSTILE_U64 = [
  0n,
  1n,
  0x7fffffffn,
  0xffffffffn,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 63n - 1n,
  2n ** 64n - 1n,
];

/** fast-check arbitrary of one {@linkcode Mutation}. */
export const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("flip" as const),
      at: fc.nat(),
      bit: fc.integer({ min: 0, max: 7 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("set" as const),
      at: fc.nat(),
      value: fc.integer({ min: 0, max: 255 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("u32" as const),
      at: fc.nat(),
      value: fc.oneof(fc.constantFrom(...HOSTILE_U32), fc.nat({ max: 0xffffffff })),
      littleEndian: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("u64" as const),
      at: fc.nat(),
      value: fc.constantFrom(...HOSTILE_U64),
      littleEndian: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("insert" as const),
      at: fc.nat(),
      bytes: fc.uint8Array({ minLength: 1, maxLength: 32 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("delete" as const),
      at: fc.nat(),
      length: fc.integer({ min: 1, max: 64 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("repeat" as const),
      at: fc.nat(),
      length: fc.integer({ min: 1, max: 16 }),
      times: fc.integer({ min: 2, max: 200 }),
    }),
  },
);

/**
 * Applies mutations to a copy of `seed`.
 *
 * @example
 * ```ts
 * import { applyMutations } from "./harness.ts";
 * const out = applyMutations(Uint8Array.of(1, 2, 3), [{ kind: "truncate", at: 2 }]);
 * console.assert(out.length === 2);
 * ```
 */
export function applyMutations(seed: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let bytes = seed.slice();
  for (const m of mutations) {
    const n = bytes.length;
    const at = n === 0 ? 0 : m.at % n;
    switch (m.kind) {
      case "truncate":
        bytes = bytes.slice(0, at);
        break;
      case "flip":
        if (n > 0) bytes[at]! ^= 1 << m.bit;
        break;
      case "set":
        if (n > 0) bytes[at] = m.value;
        break;
      case "u32":
        if (n >= 4) {
          new DataView(bytes.buffer).setUint32(Math.min(at, n - 4), m.value, m.littleEndian);
        }
        break;
      case "u64":
        if (n >= 8) {
          new DataView(bytes.buffer).setBigUint64(Math.min(at, n - 8), m.value, m.littleEndian);
        }
        break;
      case "insert": {
        const out = new Uint8Array(n + m.bytes.length);
        out.set(bytes.subarray(0, at));
        out.set(m.bytes, at);
        out.set(bytes.subarray(at), at + m.bytes.length);
        bytes = out;
        break;
      }
      case "delete": {
        const out = new Uint8Array(Math.max(0, n - Math.min(m.length, n - at)));
        out.set(bytes.subarray(0, at));
        out.set(bytes.subarray(at + m.length), at);
        bytes = out;
        break;
      }
      case "repeat": {
        const piece = bytes.slice(at, at + m.length);
        const out = new Uint8Array(n + piece.length * (m.times - 1));
        out.set(bytes.subarray(0, at));
        for (let i = 0; i < m.times; i++) out.set(piece, at + i * piece.length);
        out.set(bytes.subarray(at + piece.length), at + m.times * piece.length);
        bytes = out;
        break;
      }
    }
  }
  return bytes;
}

/**
 * Byte inputs for a reader: its valid seeds mutated 1-6 times (most cases), the seeds as they
 * are, and some random bytes.
 */
export function mutatedBytes(seeds: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  if (seeds.length === 0) throw new RangeError("mutatedBytes() needs at least one seed");
  const mutated = fc.tuple(
    fc.integer({ min: 0, max: seeds.length - 1 }),
    fc.array(mutation, { minLength: 1, maxLength: 6 }),
  ).map(([i, ms]) => applyMutations(seeds[i]!, ms));
  return fc.oneof(
    { weight: 16, arbitrary: mutated },
    { weight: 1, arbitrary: fc.constantFrom(...seeds).map((s) => s.slice()) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 2048 }) },
  );
}

/** Writes `bytes` to a file in `dir` and returns its path (for readers that take paths). */
export async function asFile(dir: string, bytes: Uint8Array, name = "input"): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeFile(path, bytes);
  return path;
}

/**
 * Option schemas of the preprocessors, and their validation: each preprocessor declares its
 * options as data (name, type, default, range, help), so a CLI can list them and turn flags into
 * values, and {@linkcode resolveOptions} fills in defaults and rejects bad values with a hint.
 *
 * @module
 */

/** A value an option takes. */
export type OptionValue = number | boolean;

/** The options a preprocessor run gets: every declared option, defaults filled in. */
export type ResolvedOptions = Readonly<Record<string, OptionValue>>;

/** One option of a preprocessor. */
export interface OptionSpec {
  /** camelCase key in the options object (a CLI flag is its kebab-case form). */
  readonly name: string;
  /** `integer` is a number that must be a whole number. */
  readonly type: "number" | "integer" | "boolean";
  readonly default: OptionValue;
  /** Smallest allowed value (numbers). */
  readonly min?: number;
  /** Largest allowed value (numbers). */
  readonly max?: number;
  /** One line of help. */
  readonly description: string;
}

/**
 * Checks `given` against `specs` and returns every option with defaults filled in. Throws
 * RangeError for an unknown option name or a number out of range, TypeError for a value of the
 * wrong type; messages name the preprocessor, the option and what to pass instead.
 *
 * @example
 * ```ts
 * import { type OptionSpec, resolveOptions } from "./options.ts";
 * const specs: OptionSpec[] = [
 *   { name: "low", type: "number", default: 100, min: 0, description: "lower threshold" },
 * ];
 * console.assert(resolveOptions("canny", specs, {}).low === 100);
 * console.assert(resolveOptions("canny", specs, { low: 50 }).low === 50);
 * ```
 */
export function resolveOptions(
  kind: string,
  specs: readonly OptionSpec[],
  given: Readonly<Record<string, unknown>> = {},
): ResolvedOptions {
  if (given === null || typeof given !== "object" || Array.isArray(given)) {
    throw new TypeError(`${kind}: options must be an object, got ${JSON.stringify(given)}`);
  }
  const known = new Set(specs.map((s) => s.name));
  for (const key of Object.keys(given)) {
    if (!known.has(key)) {
      const names = specs.map((s) => s.name).join(", ");
      throw new RangeError(
        `${kind} has no option "${key}": ${names ? `use ${names}` : "it takes no options"}`,
      );
    }
  }
  const out: Record<string, OptionValue> = {};
  for (const spec of specs) {
    const value = given[spec.name] ?? spec.default;
    out[spec.name] = checkValue(kind, spec, value);
  }
  return out;
}

function checkValue(kind: string, spec: OptionSpec, value: unknown): OptionValue {
  const where = `${kind} option ${spec.name}`;
  if (spec.type === "boolean") {
    if (typeof value !== "boolean") {
      throw new TypeError(`${where} must be true or false, got ${JSON.stringify(value)}`);
    }
    return value;
  }
  if (typeof value !== "number") {
    throw new TypeError(`${where} must be a number, got ${JSON.stringify(value)}`);
  }
  const range = rangeText(spec);
  if (!Number.isFinite(value)) {
    throw new RangeError(`${where} is ${value}: use a finite number ${range}`);
  }
  if (spec.type === "integer" && !Number.isInteger(value)) {
    throw new RangeError(`${where} is ${value}: use a whole number ${range}`);
  }
  if (
    (spec.min !== undefined && value < spec.min) || (spec.max !== undefined && value > spec.max)
  ) {
    throw new RangeError(`${where} is ${value}, out of range: use a value ${range}`);
  }
  return value;
}

function rangeText(spec: OptionSpec): string {
  if (spec.min !== undefined && spec.max !== undefined) return `from ${spec.min} to ${spec.max}`;
  if (spec.min !== undefined) return `of at least ${spec.min}`;
  if (spec.max !== undefined) return `of at most ${spec.max}`;
  return "";
}

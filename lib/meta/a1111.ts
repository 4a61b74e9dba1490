/**
 * AUTOMATIC1111 "infotext": the `parameters` text that A1111, Forge, SD.Next and many other
 * tools write into images. Layout:
 *
 * ```
 * prompt (any number of lines)
 * Negative prompt: negative prompt (any number of lines)
 * Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Lora hashes: "a: 1, b: 2"
 * (optional extra lines added by extensions, e.g. sd-dynamic-prompts' "Template: ...")
 * ```
 *
 * Semantics follow A1111's `modules/infotext_utils.py` (`parse_generation_parameters`, its
 * `re_param` regex, `quote`/`unquote`), with two deliberate differences so that
 * `parseInfotext(formatInfotext(x))` equals `x`: prompt lines are kept exactly (A1111 strips
 * each line), and lines after the parameters line are kept as `extraLines` (A1111 folds them
 * into the prompt).
 *
 * @module
 */

/** A parsed infotext. */
export interface Infotext {
  /** Positive prompt, lines joined with "\n". */
  prompt: string;
  /** Negative prompt ("" when absent). */
  negativePrompt: string;
  /** The `Key: value` pairs of the parameters line, in order, values unquoted. */
  params: Record<string, string>;
  /** Lines that follow the parameters line (kept verbatim). */
  extraLines: string[];
}

// A1111 re_param: key = a word char then word chars, spaces, "-" or "/"; value = a JSON-style
// quoted string or anything up to the next comma. Python's \w is Unicode-aware, hence \p{..}.
const PARAM_RE = /\s*([\p{L}\p{N}_][\p{L}\p{N}_ \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/gu;
const KEY_RE = /^[\p{L}\p{N}_][\p{L}\p{N}_ \-/]+$/u;
const NEGATIVE = "Negative prompt:";

function findParams(line: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const m of line.matchAll(PARAM_RE)) out.push([m[1]!, m[2]!]);
  return out;
}

/**
 * A1111's test (3 or more `Key: value` pairs), widened to accept a shorter line that starts with
 * "Steps:" and consists of nothing but pairs, so infotexts with 1-2 parameters round-trip.
 */
function isParamsLine(line: string): boolean {
  const found = [...line.matchAll(PARAM_RE)];
  if (found.length >= 3) return true;
  if (found.length === 0 || !/^\s*Steps:/.test(line)) return false;
  return found.reduce((n, m) => n + m[0].length, 0) === line.length;
}

/** A1111 `unquote`: JSON-decodes a value that starts and ends with a double quote. */
export function unquoteValue(value: string): string {
  if (value.length < 2 || value[0] !== '"' || value[value.length - 1] !== '"') return value;
  try {
    const parsed: unknown = JSON.parse(value);
    return typeof parsed === "string" ? parsed : value;
  } catch {
    return value;
  }
}

/**
 * A1111 `quote`, widened so every value survives a round trip: a value containing a comma,
 * colon, double quote, line break or other control character, or with leading or trailing
 * whitespace, becomes a JSON string; anything else is written as is.
 */
export function quoteValue(value: string): string {
  // deno-lint-ignore no-control-regex
  if (/[,:"\u0000-\u001f\u2028\u2029]|^\s|\s$/u.test(value)) return JSON.stringify(value);
  return value;
}

/**
 * Parses an A1111 infotext. Never throws: text without a parameters line is all prompt.
 *
 * @example
 * ```ts
 * import { parseInfotext } from "./a1111.ts";
 * const info = parseInfotext('a cat\nNegative prompt: dog\nSteps: 20, Seed: 1, Size: 512x768');
 * console.assert(info.prompt === "a cat" && info.params["Seed"] === "1");
 * ```
 */
export function parseInfotext(text: string): Infotext {
  const lines = text.split("\n");
  // Ignore trailing empty lines (A1111 strips the whole text first).
  let last = lines.length - 1;
  while (last > 0 && lines[last]!.trim() === "") last--;
  let paramsAt = -1;
  if (isParamsLine(lines[last]!)) {
    paramsAt = last;
  } else {
    // Extensions append lines after the parameters line; A1111's params line starts "Steps:".
    for (let i = last - 1; i >= 0; i--) {
      const line = lines[i]!;
      if (/^\s*Steps:/.test(line) && isParamsLine(line)) {
        paramsAt = i;
        break;
      }
    }
  }
  const promptLines = paramsAt >= 0 ? lines.slice(0, paramsAt) : lines;
  const extraLines = paramsAt >= 0 ? lines.slice(paramsAt + 1, last + 1) : [];
  const positive: string[] = [];
  const negative: string[] = [];
  let inNegative = false;
  for (const line of promptLines) {
    if (!inNegative && line.startsWith(NEGATIVE)) {
      inNegative = true;
      const rest = line.slice(NEGATIVE.length);
      negative.push(rest.startsWith(" ") ? rest.slice(1) : rest);
    } else if (inNegative) {
      negative.push(line);
    } else {
      positive.push(line);
    }
  }
  const params: Record<string, string> = {};
  if (paramsAt >= 0) {
    for (const [key, value] of findParams(lines[paramsAt]!)) params[key] = unquoteValue(value);
  }
  return { prompt: positive.join("\n"), negativePrompt: negative.join("\n"), params, extraLines };
}

/**
 * Formats an infotext the way A1111 writes it. Throws `RangeError` for a key A1111's parser
 * cannot read back (it must start with a letter, digit or "_" and hold only those, spaces,
 * "-" and "/") or for input that would not parse back to itself.
 *
 * @example
 * ```ts
 * import { formatInfotext, parseInfotext } from "./a1111.ts";
 * const info = { prompt: "a cat", negativePrompt: "", params: { Steps: "20", Note: "a, b" }, extraLines: [] };
 * console.assert(formatInfotext(info) === 'a cat\nSteps: 20, Note: "a, b"');
 * console.assert(parseInfotext(formatInfotext(info)).params["Note"] === "a, b");
 * ```
 */
export function formatInfotext(info: Infotext): string {
  const entries = Object.entries(info.params);
  for (const [key] of entries) {
    if (!KEY_RE.test(key) || /\s$/.test(key)) {
      throw new RangeError(
        `Infotext key "${key}" cannot be read back: use letters, digits, "_", "-", "/" and ` +
          `inner spaces, at least 2 characters`,
      );
    }
  }
  const out: string[] = [];
  if (info.prompt !== "" || info.negativePrompt === "" && entries.length === 0) {
    out.push(info.prompt);
  }
  if (info.negativePrompt !== "") out.push(`${NEGATIVE} ${info.negativePrompt}`);
  if (entries.length > 0) {
    out.push(entries.map(([k, v]) => `${k}: ${quoteValue(v)}`).join(", "));
  }
  out.push(...info.extraLines);
  const text = out.join("\n");
  checkRoundTrip(info, text);
  return text;
}

function checkRoundTrip(info: Infotext, text: string): void {
  const back = parseInfotext(text);
  const same = back.prompt === info.prompt && back.negativePrompt === info.negativePrompt &&
    back.extraLines.length === info.extraLines.length &&
    back.extraLines.every((line, i) => line === info.extraLines[i]) &&
    sameRecord(back.params, info.params);
  if (!same) {
    throw new RangeError(
      "Infotext would not read back as written: a prompt line looks like a parameters line, " +
        "the parameters need 3 or more entries starting with Steps when extra lines follow, " +
        'or a prompt line starts with "Negative prompt:"',
    );
  }
}

function sameRecord(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

/** Typed view of the well-known infotext fields. Absent fields are left out. */
export interface InfotextSummary {
  steps?: number;
  sampler?: string;
  scheduleType?: string;
  cfgScale?: number;
  seed?: number;
  width?: number;
  height?: number;
  model?: string;
  modelHash?: string;
  vae?: string;
  vaeHash?: string;
  denoisingStrength?: number;
  clipSkip?: number;
  version?: string;
  /** "Hires ..." fields, e.g. { upscale: 2, steps: 10, upscaler: "Latent" }. */
  hires?: Record<string, string | number>;
  /** "Lora hashes": LoRA name -> short hash. */
  loraHashes?: Record<string, string>;
  /** "TI hashes": embedding name -> short hash. */
  tiHashes?: Record<string, string>;
  /** ControlNet units, from "ControlNet N" (v1.1 style) or the older "ControlNet Xxx" keys. */
  controlNet?: Array<Record<string, string>>;
}

function num(value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === "") return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

/** Parses "name: hash, name2: hash2" (Lora hashes, TI hashes). */
export function parseHashList(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of value.split(",")) {
    const colon = part.lastIndexOf(":");
    if (colon < 0) continue;
    const name = part.slice(0, colon).trim();
    if (name !== "") out[name] = part.slice(colon + 1).trim();
  }
  return out;
}

/**
 * Extracts typed, well-known fields from parsed infotext parameters: numbers become numbers,
 * `Size: WxH` becomes width and height, and list-valued fields are split.
 *
 * @example
 * ```ts
 * import { parseInfotext, summarizeInfotext } from "./a1111.ts";
 * const s = summarizeInfotext(parseInfotext("x\nSteps: 20, Size: 512x768, Seed: 7").params);
 * console.assert(s.width === 512 && s.height === 768 && s.seed === 7);
 * ```
 */
export function summarizeInfotext(params: Record<string, string>): InfotextSummary {
  const s: InfotextSummary = {};
  const set = <K extends keyof InfotextSummary>(k: K, v: InfotextSummary[K] | undefined) => {
    if (v !== undefined) s[k] = v;
  };
  set("steps", num(params["Steps"]));
  set("sampler", params["Sampler"]);
  set("scheduleType", params["Schedule type"]);
  set("cfgScale", num(params["CFG scale"]));
  set("seed", num(params["Seed"]));
  const size = /^(\d+)x(\d+)$/.exec(params["Size"] ?? "");
  if (size) {
    s.width = Number(size[1]);
    s.height = Number(size[2]);
  }
  set("model", params["Model"]);
  set("modelHash", params["Model hash"]);
  set("vae", params["VAE"]);
  set("vaeHash", params["VAE hash"]);
  set("denoisingStrength", num(params["Denoising strength"] ?? params["Denoising Strength"]));
  set("clipSkip", num(params["Clip skip"]));
  set("version", params["Version"]);
  const hires: Record<string, string | number> = {};
  for (const [key, value] of Object.entries(params)) {
    if (!key.startsWith("Hires ")) continue;
    const name = camel(key.slice(6));
    const resize = /^(\d+)x(\d+)$/.exec(value);
    if (name === "resize" && resize) {
      hires["resizeX"] = Number(resize[1]);
      hires["resizeY"] = Number(resize[2]);
    } else {
      hires[name] = num(value) ?? value;
    }
  }
  if (Object.keys(hires).length > 0) s.hires = hires;
  if (params["Lora hashes"] !== undefined) s.loraHashes = parseHashList(params["Lora hashes"]);
  if (params["TI hashes"] !== undefined) s.tiHashes = parseHashList(params["TI hashes"]);
  const units: Array<Record<string, string>> = [];
  const legacy: Record<string, string> = {};
  for (const [key, value] of Object.entries(params)) {
    const unit = /^ControlNet(?: (\d+))?$/.exec(key);
    if (unit) {
      const fields: Record<string, string> = {};
      for (const [k, v] of findParams(value)) fields[k] = unquoteValue(v);
      units.push(fields);
    } else if (key.startsWith("ControlNet ")) {
      legacy[key.slice(11)] = value;
    }
  }
  if (Object.keys(legacy).length > 0) units.unshift(legacy);
  if (units.length > 0) s.controlNet = units;
  return s;
}

function camel(words: string): string {
  const parts = words.trim().split(/\s+/).map((w) => w.toLowerCase());
  return parts.map((w, i) => i === 0 ? w : w.charAt(0).toUpperCase() + w.slice(1)).join("");
}

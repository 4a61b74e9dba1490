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
 * {@linkcode parseInfotext} reads it as A1111 v1.10's `parse_generation_parameters`
 * (`modules/infotext_utils.py`) does: the whole text is stripped and split at "\n"; the last
 * line is the parameters line when its `re_param` regex finds 3 or more `Key: value` pairs;
 * every other line is stripped (Python's `str.strip`, so Unicode whitespace too); the first line
 * starting with "Negative prompt:" begins the negative prompt, and that prefix is removed from
 * any line that starts with it; lines are joined with "\n", leading empty lines dropped; a value
 * that starts and ends with `"` is JSON-decoded (A1111's `unquote`) and a pair with an empty
 * value is skipped. Two readings go further, only where A1111 finds no parameters line at all:
 * a last line of 1-2 pairs that starts with "Steps:" and holds nothing else, and a "Steps:"
 * parameters line followed by extension lines (kept as `extraLines`, where A1111 folds them and
 * the parameters into the prompt). A1111's paste-time extras (styles, hypernet tags, defaults,
 * "Size" split into "Size-1"/"Size-2") are not applied; `summarizeInfotext` types the fields.
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

/** What {@linkcode parseInfotext} returns: the reading plus the text it was read from. */
export interface ParsedInfotext extends Infotext {
  /** The infotext exactly as found, before any stripping. */
  raw: string;
}

// Python's str.isspace() / re `\s` on str: JS `\s` lacks U+001C-U+001F and U+0085 and adds
// U+FEFF, so the class is spelt out.
const PY_SPACE =
  "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
// A1111 re_param: key = a word char then word chars, spaces, "-" or "/"; value = a JSON-style
// quoted string or anything up to the next comma. Python's \w is Unicode-aware, hence \p{..};
// its "." matches anything but "\n" (JS "." also stops at "\r", U+2028 and U+2029).
const PARAM_RE = new RegExp(
  `[${PY_SPACE}]*([\\p{L}\\p{N}_][\\p{L}\\p{N}_ \\-/]+):[${PY_SPACE}]*` +
    `("(?:\\\\[^\\n]|[^\\\\"])+"|[^,]*)(?:,|$)`,
  "gu",
);
const KEY_RE = /^[\p{L}\p{N}_][\p{L}\p{N}_ \-/]+$/u;
const STRIP_RE = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "gu");
const NEGATIVE = "Negative prompt:";

/** Python's `str.strip()` with no argument. */
function pyStrip(text: string): string {
  return text.replace(STRIP_RE, "");
}

function findParams(line: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const m of line.matchAll(PARAM_RE)) out.push([m[1]!, m[2]!]);
  return out;
}

/** Sets `key` on a plain record, "__proto__" included. */
function setField(record: Record<string, string>, key: string, value: string): void {
  Object.defineProperty(record, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

/** The widened test for a last line of 1-2 pairs: starts with "Steps:" and holds only pairs. */
function isShortStepsLine(line: string): boolean {
  if (!pyStrip(line).startsWith("Steps:")) return false;
  const found = [...line.matchAll(PARAM_RE)];
  return found.length > 0 && found.reduce((n, m) => n + m[0].length, 0) === line.length;
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
 * A1111 `quote`, widened so every value survives a round trip: an empty value, or one
 * containing a comma, colon, double quote, line break or other control character, or with
 * leading or trailing whitespace, becomes a JSON string; anything else is written as is.
 */
export function quoteValue(value: string): string {
  // deno-lint-ignore no-control-regex
  if (value === "" || /[,:"\u0000-\u001f\u0085\u2028\u2029]|^\s|\s$/u.test(value)) {
    return JSON.stringify(value);
  }
  return value;
}

/**
 * A1111's prompt reading of some lines: each stripped, the first one starting with
 * "Negative prompt:" (and that prefix on any later line) switching to the negative prompt,
 * joined with "\n" with leading empty lines dropped.
 */
function readPromptLines(lines: string[]): { prompt: string; negativePrompt: string } {
  let prompt = "";
  let negativePrompt = "";
  let inNegative = false;
  for (const raw of lines) {
    let line = pyStrip(raw);
    if (line.startsWith(NEGATIVE)) {
      inNegative = true;
      line = pyStrip(line.slice(NEGATIVE.length));
    }
    if (inNegative) negativePrompt += (negativePrompt === "" ? "" : "\n") + line;
    else prompt += (prompt === "" ? "" : "\n") + line;
  }
  return { prompt, negativePrompt };
}

/**
 * Parses an A1111 infotext as A1111 v1.10 does (see the module notes). Never throws: text
 * without a parameters line is all prompt.
 *
 * @example
 * ```ts
 * import { parseInfotext } from "./a1111.ts";
 * const info = parseInfotext('a cat \nNegative prompt: dog\nSteps: 20, Seed: 1, Size: 512x768');
 * console.assert(info.prompt === "a cat" && info.params["Seed"] === "1");
 * console.assert(info.raw.startsWith("a cat \n"));
 * ```
 */
export function parseInfotext(text: string): ParsedInfotext {
  const lines = pyStrip(text).split("\n");
  const last = lines.length - 1;
  let paramsAt = -1;
  if (findParams(lines[last]!).length >= 3 || isShortStepsLine(lines[last]!)) {
    paramsAt = last;
  } else {
    // Extensions append lines after the parameters line; A1111's params line starts "Steps:".
    for (let i = last - 1; i >= 0; i--) {
      const line = pyStrip(lines[i]!);
      if (line.startsWith("Steps:") && findParams(line).length >= 3) {
        paramsAt = i;
        break;
      }
    }
  }
  const { prompt, negativePrompt } = readPromptLines(
    paramsAt >= 0 ? lines.slice(0, paramsAt) : lines,
  );
  const extraLines = paramsAt >= 0 ? lines.slice(paramsAt + 1) : [];
  const params: Record<string, string> = {};
  if (paramsAt >= 0) {
    for (const [key, value] of findParams(pyStrip(lines[paramsAt]!))) {
      // A1111 indexes value[0] inside a try block: an empty value raises and is skipped.
      if (value !== "") setField(params, key, unquoteValue(value));
    }
  }
  return { prompt, negativePrompt, params, extraLines, raw: text };
}

/**
 * Formats an infotext the way A1111 writes it. Reading the result back gives `info` with each
 * prompt line stripped, as A1111 reads it. Throws `RangeError` for a key A1111's parser cannot
 * read back (it must start with a letter, digit or "_" and hold only those, spaces, "-" and "/")
 * or for input that would read back differently.
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

/** A1111's reading of prompt text on its own: lines stripped, leading empty lines dropped. */
function strippedLines(text: string): string {
  let out = "";
  for (const line of text.split("\n")) out += (out === "" ? "" : "\n") + pyStrip(line);
  return out;
}

function checkRoundTrip(info: Infotext, text: string): void {
  const back = parseInfotext(text);
  const same = back.prompt === strippedLines(info.prompt) &&
    back.negativePrompt === strippedLines(info.negativePrompt) &&
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

/**
 * A reader for the small YAML subset that original-LDM inference configs use
 * (`v1-inference.yaml`, `v2-inference-v.yaml`, `sd_xl_base.yaml`): nested block mappings by
 * indentation, block and flow sequences of scalars, numbers, booleans, null, quoted and plain
 * strings, and `#` comments. Anchors, multi-line strings and other YAML features are refused
 * with a SyntaxError rather than misread.
 *
 * @module
 */

/** A parsed YAML value. */
export type YamlValue = string | number | boolean | null | YamlValue[] | YamlMap;
/** A parsed YAML mapping. */
export interface YamlMap {
  [key: string]: YamlValue;
}

interface Line {
  indent: number;
  text: string;
  number: number;
}

function stripComment(line: string): string {
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === '"' || c === "'") {
      quote = c;
    } else if (c === "#" && (i === 0 || /\s/.test(line[i - 1]!))) {
      return line.slice(0, i);
    }
  }
  return line;
}

function scalar(raw: string, where: string): YamlValue {
  const s = raw.trim();
  if (s === "" || s === "~" || s === "null" || s === "Null" || s === "NULL") return null;
  if (/^(true|True|TRUE)$/.test(s)) return true;
  if (/^(false|False|FALSE)$/.test(s)) return false;
  if (/^[-+]?(\d[\d_]*)?\.?\d*([eE][-+]?\d+)?$/.test(s) && /\d/.test(s)) {
    const n = Number(s.replaceAll("_", ""));
    if (Number.isFinite(n)) return n;
  }
  if (s.startsWith("[")) {
    if (!s.endsWith("]")) throw new SyntaxError(`Cannot read the YAML ${where}: unclosed "["`);
    const inner = s.slice(1, -1).trim();
    return inner === "" ? [] : inner.split(",").map((p) => scalar(p, where));
  }
  if (s.startsWith('"') || s.startsWith("'")) {
    if (s.length < 2 || !s.endsWith(s[0]!)) {
      throw new SyntaxError(`Cannot read the YAML ${where}: unclosed quote`);
    }
    return s.slice(1, -1);
  }
  if (/^[&*!|>{]/.test(s)) {
    throw new SyntaxError(`Cannot read the YAML ${where}: "${s[0]}" syntax is not supported`);
  }
  return s;
}

/**
 * Parses an LDM inference YAML into plain objects.
 *
 * @example
 * ```ts
 * import { parseLdmYaml } from "./ldm_yaml.ts";
 * const y = parseLdmYaml("model:\n  params:\n    channel_mult: [ 1, 2 ]  # widths\n");
 * console.assert(JSON.stringify(y) === '{"model":{"params":{"channel_mult":[1,2]}}}');
 * ```
 */
export function parseLdmYaml(text: string): YamlMap {
  const lines: Line[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    if (raw.includes("\t")) {
      throw new SyntaxError(`Cannot read the YAML line ${i + 1}: tabs are not allowed`);
    }
    const body = stripComment(raw).trimEnd();
    if (body.trim() === "" || body.trim() === "---") return;
    lines.push({ indent: body.length - body.trimStart().length, text: body.trim(), number: i + 1 });
  });
  let pos = 0;

  function block(indent: number): YamlValue {
    const first = lines[pos];
    if (first === undefined || first.indent < indent) return null;
    if (first.text.startsWith("- ") || first.text === "-") {
      const list: YamlValue[] = [];
      while (pos < lines.length && lines[pos]!.indent === first.indent) {
        const l = lines[pos]!;
        if (!(l.text.startsWith("- ") || l.text === "-")) break;
        pos++;
        list.push(scalar(l.text.slice(1), `line ${l.number}`));
      }
      return list;
    }
    const map: YamlMap = {};
    while (pos < lines.length && lines[pos]!.indent === first.indent) {
      const l = lines[pos]!;
      const m = /^("[^"]*"|'[^']*'|[^:]+?)\s*:(\s+(.*))?$/.exec(l.text);
      if (!m) throw new SyntaxError(`Cannot read the YAML line ${l.number}: expected "key: value"`);
      const key = m[1]!.replace(/^["']|["']$/g, "");
      pos++;
      const rest = m[3]?.trim() ?? "";
      if (rest !== "") {
        map[key] = scalar(rest, `line ${l.number}`);
      } else {
        const next = lines[pos];
        const nestedList = next !== undefined && next.indent === l.indent &&
          next.text.startsWith("-");
        map[key] = next !== undefined && (next.indent > l.indent || nestedList)
          ? block(next.indent)
          : null;
      }
    }
    if (pos < lines.length && lines[pos]!.indent > first.indent) {
      throw new SyntaxError(`Cannot read the YAML line ${lines[pos]!.number}: bad indentation`);
    }
    return map;
  }

  const root = block(0);
  if (pos < lines.length) {
    throw new SyntaxError(`Cannot read the YAML line ${lines[pos]!.number}: bad indentation`);
  }
  if (root === null) return {};
  if (typeof root !== "object" || Array.isArray(root)) {
    throw new SyntaxError("Cannot read the YAML: the top level must be a mapping");
  }
  return root;
}

/** The value at a dotted path of nested mappings, or undefined. */
export function yamlGet(root: YamlValue, path: string): YamlValue | undefined {
  let v: YamlValue | undefined = root;
  for (const part of path.split(".")) {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return undefined;
    v = (v as YamlMap)[part];
  }
  return v;
}

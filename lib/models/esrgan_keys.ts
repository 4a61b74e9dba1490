/**
 * Key layouts of ESRGAN-family weight files, normalised once to the Real-ESRGAN / BasicSR names
 * that {@linkcode buildUpscaler} reads:
 *
 * - `"real-esrgan"`: BasicSR names (`conv_first`, `body.N.rdbK.convJ`, `conv_body`, `conv_upU`,
 *   `conv_hr`, `conv_last`; SRVGGNetCompact's `body.N`), often wrapped as `{'params_ema': ...}`
 *   or `{'params': ...}` by BasicSR's `save_network`;
 * - `"esrgan"`: the original ESRGAN `nn.Sequential` (xinntao/ESRGAN `RRDB_ESRGAN_x4.pth` and
 *   most community models, e.g. 4x-UltraSharp): `model.0` = conv_first,
 *   `model.1.sub.N.RDBk.convj.0` = the RRDBs, `model.1.sub.<blocks>` = conv_body, then per
 *   upsample stage u = 1..U an (Upsample, conv, LeakyReLU) triple with the conv at
 *   `model.<3u>`, then `model.<3U+2>` = conv_hr and `model.<3U+4>` = conv_last;
 * - `"bsrgan"`: BSRGAN / RealSR (`RRDB_trunk.N.RDBk.convj`, `trunk_conv`, `upconvU`, `HRconv`).
 *
 * @module
 */

/** Which naming a file uses; see the module documentation. */
export type UpscalerKeyLayout = "real-esrgan" | "esrgan" | "bsrgan";

/** How a file's tensor names map to Real-ESRGAN names. */
export interface UpscalerKeys {
  layout: UpscalerKeyLayout;
  /**
   * Stored name -> Real-ESRGAN name, for every tensor that is used. Names no table knows keep
   * their (unwrapped) name, so the builder reports them as unused; `params.*` copies next to
   * `params_ema.*` are left out (Real-ESRGAN loads the EMA weights).
   */
  rename: Map<string, string>;
}

const PARAMS = ["weight", "bias"] as const;

/**
 * The table from original ESRGAN names to Real-ESRGAN names for a network with `blocks` RRDBs
 * and `upsamples` upsample stages (2 for x4).
 *
 * @example
 * ```ts
 * import { esrganKeyTable } from "./esrgan_keys.ts";
 * const table = esrganKeyTable(23, 2);
 * console.assert(table.get("model.1.sub.23.weight") === "conv_body.weight");
 * console.assert(table.get("model.10.bias") === "conv_last.bias");
 * ```
 */
export function esrganKeyTable(blocks: number, upsamples: number): Map<string, string> {
  const table = new Map<string, string>();
  const last = 3 * upsamples;
  for (const p of PARAMS) {
    table.set(`model.0.${p}`, `conv_first.${p}`);
    for (let i = 0; i < blocks; i++) {
      for (let k = 1; k <= 3; k++) {
        for (let j = 1; j <= 5; j++) {
          table.set(`model.1.sub.${i}.RDB${k}.conv${j}.0.${p}`, `body.${i}.rdb${k}.conv${j}.${p}`);
        }
      }
    }
    table.set(`model.1.sub.${blocks}.${p}`, `conv_body.${p}`);
    for (let u = 1; u <= upsamples; u++) table.set(`model.${3 * u}.${p}`, `conv_up${u}.${p}`);
    table.set(`model.${last + 2}.${p}`, `conv_hr.${p}`);
    table.set(`model.${last + 4}.${p}`, `conv_last.${p}`);
  }
  return table;
}

/**
 * The table from BSRGAN / RealSR names to Real-ESRGAN names.
 *
 * @example
 * ```ts
 * import { bsrganKeyTable } from "./esrgan_keys.ts";
 * console.assert(bsrganKeyTable(23, 2).get("HRconv.weight") === "conv_hr.weight");
 * ```
 */
export function bsrganKeyTable(blocks: number, upsamples: number): Map<string, string> {
  const table = new Map<string, string>();
  for (const p of PARAMS) {
    table.set(`conv_first.${p}`, `conv_first.${p}`);
    for (let i = 0; i < blocks; i++) {
      for (let k = 1; k <= 3; k++) {
        for (let j = 1; j <= 5; j++) {
          table.set(`RRDB_trunk.${i}.RDB${k}.conv${j}.${p}`, `body.${i}.rdb${k}.conv${j}.${p}`);
        }
      }
    }
    table.set(`trunk_conv.${p}`, `conv_body.${p}`);
    for (let u = 1; u <= upsamples; u++) table.set(`upconv${u}.${p}`, `conv_up${u}.${p}`);
    table.set(`HRconv.${p}`, `conv_hr.${p}`);
    table.set(`conv_last.${p}`, `conv_last.${p}`);
  }
  return table;
}

/** 1 + the largest capture of `pattern`'s first group over `names`, or 0 when none matches. */
function countBy(names: readonly string[], pattern: RegExp): number {
  let n = 0;
  for (const name of names) {
    const m = pattern.exec(name);
    if (m !== null) n = Math.max(n, Number(m[1]) + 1);
  }
  return n;
}

/**
 * Works out a file's key layout from its tensor names and maps every name to the Real-ESRGAN
 * name (see {@linkcode UpscalerKeys}). The counts the tables need (blocks, upsample stages) are
 * read from the names themselves.
 *
 * @example
 * ```ts
 * import { normalizeUpscalerKeys } from "./esrgan_keys.ts";
 * const keys = normalizeUpscalerKeys(["params_ema.conv_first.weight", "params.conv_first.weight"]);
 * console.assert(keys.layout === "real-esrgan");
 * console.assert(keys.rename.get("params_ema.conv_first.weight") === "conv_first.weight");
 * console.assert(!keys.rename.has("params.conv_first.weight"));
 * ```
 */
export function normalizeUpscalerKeys(names: Iterable<string>): UpscalerKeys {
  // 1. Unwrap BasicSR's {'params_ema': state_dict} / {'params': state_dict}.
  const all = [...names];
  const wrapper = all.some((n) => n.startsWith("params_ema."))
    ? "params_ema."
    : all.some((n) => n.startsWith("params."))
    ? "params."
    : "";
  const unwrapped = new Map<string, string>();
  for (const name of all) {
    if (name.startsWith(wrapper)) unwrapped.set(name, name.slice(wrapper.length));
    else if (!(wrapper === "params_ema." && name.startsWith("params."))) unwrapped.set(name, name);
  }
  const plain = [...unwrapped.values()];

  // 2. Pick the layout and its table.
  let layout: UpscalerKeyLayout = "real-esrgan";
  let table: Map<string, string> | null = null;
  if (plain.includes("model.0.weight")) {
    layout = "esrgan";
    const blocks = countBy(plain, /^model\.1\.sub\.(\d+)\.RDB\d\.conv\d\.0\.weight$/);
    const last = countBy(plain, /^model\.(\d+)\.weight$/) - 1;
    const upsamples = (last - 4) / 3;
    if (!Number.isInteger(upsamples) || upsamples < 0) {
      throw new TypeError(
        `Cannot read an ESRGAN model whose last layer is "model.${last}": the original layout ` +
          `ends with model.(3u+4) for u upsample stages (model.10 for x4); the file is not a ` +
          `plain RRDBNet (ESRGAN+ and other variants are not supported)`,
      );
    }
    table = esrganKeyTable(blocks, upsamples);
  } else if (plain.some((n) => n.startsWith("RRDB_trunk.") || n.startsWith("trunk_conv."))) {
    layout = "bsrgan";
    const blocks = countBy(plain, /^RRDB_trunk\.(\d+)\.RDB\d\.conv\d\.weight$/);
    const upsamples = countBy(plain, /^upconv(\d+)\.weight$/) - 1;
    table = bsrganKeyTable(blocks, Math.max(0, upsamples));
  }

  // 3. Rename.
  const rename = new Map<string, string>();
  for (const [stored, name] of unwrapped) rename.set(stored, table?.get(name) ?? name);
  return { layout, rename };
}

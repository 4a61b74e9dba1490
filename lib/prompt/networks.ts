/**
 * Extra-network tags (`<lora:name:0.8>`, `<lora:name:te:unet>`, `<lyco:...>`, `<hypernet:...>`)
 * as A1111's modules/extra_networks.py `parse_prompt` and `ExtraNetworkParams` read them, and
 * the LoRA multipliers as extensions-builtin/Lora/extra_networks_lora.py derives them
 * (AUTOMATIC1111/stable-diffusion-webui). Written from reading that code, not copied.
 *
 * @module
 */
import { PY_WORD } from "../tokenizer/python_re.ts";
import { pythonFloat } from "./python_float.ts";

/** One extra-network tag found in a prompt. */
export interface ExtraNetwork {
  /** The tag kind: "lora", "lyco", "hypernet", or any other word. */
  kind: string;
  /** The first positional argument: the network's name. */
  name: string;
  /** The positional arguments after the name, read as numbers (NaN where one is not a number). */
  weights: number[];
  /** All `:`-separated arguments as written. */
  args: string[];
  /** `key=value` arguments, e.g. `te=0.5`, `unet=1`, `dyn=16`. */
  named: Record<string, string>;
}

/** What {@linkcode extractNetworks} returns. */
export interface ExtractedNetworks {
  /** The prompt with every tag removed (nothing else changed). */
  prompt: string;
  /** The tags, in order of appearance. */
  networks: ExtraNetwork[];
}

const TAG_RE = new RegExp(`<([${PY_WORD}]+):([^>]+)>`, "gu");

/**
 * Removes extra-network tags from a prompt and returns them, like A1111's
 * `extra_networks.parse_prompt`. Never throws.
 *
 * @example
 * ```ts
 * import { extractNetworks } from "./networks.ts";
 * const { prompt, networks } = extractNetworks("a castle <lora:foo_v2:0.7>, sunset");
 * console.assert(prompt === "a castle , sunset");
 * console.assert(networks[0]?.name === "foo_v2" && networks[0]?.weights[0] === 0.7);
 * ```
 */
export function extractNetworks(prompt: string): ExtractedNetworks {
  const networks: ExtraNetwork[] = [];
  const stripped = prompt.replace(TAG_RE, (_all, kind: string, body: string) => {
    const args = body.split(":");
    const positional: string[] = [];
    const named: Record<string, string> = {};
    for (const item of args) {
      // ExtraNetworkParams: item.split("=", 2) with exactly two parts is a named argument.
      const parts = item.split("=");
      if (parts.length === 2) named[parts[0] as string] = parts[1] as string;
      else positional.push(item);
    }
    networks.push({
      kind,
      name: positional[0] ?? "",
      weights: positional.slice(1).map((p) => pythonFloat(p) ?? NaN),
      args,
      named,
    });
    return "";
  });
  return { prompt: stripped, networks };
}

/** LoRA strengths for the text encoder and the UNet. */
export interface LoraMultipliers {
  /** Text-encoder multiplier. */
  te: number;
  /** UNet multiplier. */
  unet: number;
  /** Dynamic rank limit (`dyn`), when given. */
  dynDim?: number;
}

/**
 * A LoRA tag's multipliers with A1111's defaults: te = 2nd positional or `te=`, else 1; unet =
 * 3rd positional or `unet=`, else te; dyn = 4th positional or `dyn=`.
 *
 * @example
 * ```ts
 * import { extractNetworks, loraMultipliers } from "./networks.ts";
 * const [net] = extractNetworks("<lora:x:0.5:0.8>").networks;
 * console.assert(net !== undefined && loraMultipliers(net).unet === 0.8);
 * ```
 */
export function loraMultipliers(network: ExtraNetwork): LoraMultipliers {
  const positional = network.args.filter((a) => a.split("=").length !== 2);
  const num = (text: string, what: string): number => {
    const v = pythonFloat(text);
    if (v === undefined) {
      throw new RangeError(
        `Cannot read <${network.kind}:${
          network.args.join(":")
        }>: ${what} "${text}" is not a number`,
      );
    }
    return v;
  };
  let te = positional[1] !== undefined ? num(positional[1], "te multiplier") : 1.0;
  if (network.named["te"] !== undefined) te = num(network.named["te"], "te");
  let unet = positional[2] !== undefined ? num(positional[2], "unet multiplier") : te;
  if (network.named["unet"] !== undefined) unet = num(network.named["unet"], "unet");
  const dynText = network.named["dyn"] ?? positional[3];
  const out: LoraMultipliers = { te, unet };
  if (dynText !== undefined) {
    const dyn = num(dynText, "dyn");
    if (!Number.isInteger(dyn)) {
      throw new RangeError(`Cannot read dyn "${dynText}": not an integer`);
    }
    out.dynDim = dyn;
  }
  return out;
}

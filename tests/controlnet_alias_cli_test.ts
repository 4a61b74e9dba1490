/**
 * ControlNet aliases of models.lock.json end to end against a local hub: `models pull` fetches an
 * original-layout `.pth` and its yaml at the pinned revision, `controlnet --control ALIAS:IMAGE`
 * runs it, and a shuffle net's `global_pool_conditions` comes from its yaml or file name, as
 * A1111's extension reads it (the tensors cannot tell).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import builtin from "../models.lock.json" with { type: "json" };
import { readAllTensors, writeTorchCheckpoint } from "../lib/convert/testing.ts";
import type { LockedModel } from "../lib/hub/lock.ts";
import { decodeImage, encodeImage } from "../lib/image/codec.ts";
import { readMetadata } from "../lib/meta/read.ts";
import { createRandomControlnet } from "../lib/models/random.ts";
import { runCli } from "./cli.ts";
import { TINY_SD15_UNET } from "./fixtures/configs.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";

const WORK = await Deno.makeTempDir({ prefix: "denoise-cn-alias-" });
const TOKENIZER = await writeByteTokenizer(join(WORK, "tok"));
const SD15 = await makeTinyModel("sd15", { seed: 3, tokenizerDir: TOKENIZER });

/** A tiny random SD 1.5-shaped ControlNet folder with `global_pool_conditions` as given. */
async function makeNet(name: string, pool: boolean): Promise<string> {
  const { sample_size: _s, ...json } = TINY_SD15_UNET;
  const dir = join(WORK, name);
  await createRandomControlnet(
    {
      ...json,
      conditioning_embedding_out_channels: [8, 16, 16, 32],
      global_pool_conditions: pool,
    },
    dir,
    { seed: 7 },
  );
  return dir;
}

const POOLED = await makeNet("pooled", true);
const PLAIN = await makeNet("plain", false);

/** The same weights as a single .pth file (Diffusers names, config detected from shapes). */
const PTH = new Uint8Array(
  await (async () => {
    const path = join(WORK, "net.pth");
    await writeTorchCheckpoint(
      path,
      await readAllTensors(join(PLAIN, "diffusion_pytorch_model.safetensors")),
    );
    return await Deno.readFile(path);
  })(),
);
/** A yaml in the layout of lllyasviel's: the pooling flag among ControlLDM's params. */
const YAML = new TextEncoder().encode(
  "model:\n  target: cldm.cldm.ControlLDM\n  params:\n    only_mid_control: False\n" +
    "    global_average_pooling: True\n\n    control_stage_config:\n" +
    "      target: cldm.cldm.ControlNet\n",
);

const EDGES = join(WORK, "edges.png");
{
  const data = new Uint8Array(64 * 64 * 3);
  for (let i = 0; i < 64 * 64; i++) {
    if (i % 9 === 0 || i % 64 === 5) data.fill(255, i * 3, i * 3 + 3);
  }
  await Deno.writeFile(
    EDGES,
    await encodeImage({ width: 64, height: 64, channels: 3, data }, "png"),
  );
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** A lock holding the built-in entry of `alias`, its files' sizes and hashes those served. */
async function localLock(alias: string, files: Record<string, Uint8Array>): Promise<string> {
  const models = builtin.models as unknown as Record<string, LockedModel>;
  const entry = structuredClone(models[alias]!);
  entry.files = entry.files.map((f) => {
    const bytes = files[f.path]!;
    return { path: f.path, size: bytes.length, sha256: sha(bytes) };
  });
  const path = join(WORK, `${alias}.lock.json`);
  await Deno.writeTextFile(path, JSON.stringify({ version: 1, models: { [alias]: entry } }));
  return path;
}

async function pixels(bytes: Uint8Array): Promise<Uint8Array> {
  return (await decodeImage(bytes, { channels: 3 })).data;
}

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

Deno.test("models pull + controlnet --control ALIAS: the shuffle .pth and yaml from a local hub", async () => {
  const alias = "control_v11e_sd15_shuffle";
  const served: Record<string, Uint8Array<ArrayBuffer>> = {
    [`${alias}.pth`]: PTH,
    [`${alias}.yaml`]: YAML,
  };
  const lock = await localLock(alias, served);
  const paths: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    paths.push(path);
    const name = path.split("/").at(-1)!;
    const bytes = served[name];
    return bytes ? new Response(new Uint8Array(bytes)) : new Response("no", { status: 404 });
  });
  const env = {
    DENOISE_HOME: join(WORK, "home"),
    DENOISE_MODELS_LOCK: lock,
    HF_ENDPOINT: `http://127.0.0.1:${server.addr.port}`,
  };
  try {
    const args = ["controlnet", "a cat", "-m", SD15, "--steps", "2", "--seed", "4", "-q"];
    const before = await runCli([...args, "--control", `${alias}:${EDGES}`], { env });
    assert.equal(before.code, 4, before.stderr);
    assert.match(before.stderr, /denoise models pull control_v11e_sd15_shuffle/);

    const pull = await runCli(["models", "pull", alias, "-q"], { env });
    assert.equal(pull.code, 0, pull.stderr);
    const rev = builtin.models[alias].source.revision;
    assert.deepEqual(paths.sort(), [
      `/lllyasviel/ControlNet-v1-1/resolve/${rev}/${alias}.pth`,
      `/lllyasviel/ControlNet-v1-1/resolve/${rev}/${alias}.yaml`,
    ]);

    const r = await runCli([...args, "--control", `${alias}:${EDGES}`], { env });
    assert.equal(r.code, 0, r.stderr);
    const params = readMetadata(r.stdout).a1111!.params;
    assert.match(params["ControlNet 0"]!, /^Module: none, Model: control_v11e_sd15_shuffle, /);
    // Pooled as the Diffusers folder with global_pool_conditions: true (which also turns guess
    // mode on), not as the same weights without it.
    const pooled = await runCli([...args, "--control", `${POOLED}:${EDGES}`], { env });
    const plain = await runCli([...args, "--control", `${PLAIN}:${EDGES}`], { env });
    const [got, want, not] = await Promise.all([r, pooled, plain].map((x) => pixels(x.stdout)));
    const same = maxDiff(got!, want!);
    const other = maxDiff(got!, not!);
    console.log(`alias vs pooled folder: ${same}/255; vs the folder without pooling: ${other}/255`);
    assert.equal(same, 0);
    assert.ok(other > 1, "pooling changes the image");
  } finally {
    await server.shutdown();
  }
});

Deno.test("global_pool_conditions of a single file: its yaml, else 'shuffle' in its name", async () => {
  const { globalPoolFromFile } = await import("../lib/models/controlnet_loader.ts");
  const dir = await Deno.makeTempDir({ dir: WORK });
  const write = async (name: string, text?: string) => {
    await Deno.writeFile(join(dir, `${name}.pth`), PTH);
    if (text !== undefined) await Deno.writeTextFile(join(dir, `${name}.yaml`), text);
    return join(dir, `${name}.pth`);
  };
  const cases: Array<[string, string | undefined, boolean, RegExp]> = [
    ["control_v11e_sd15_shuffle", undefined, true, /file name/],
    ["my_Shuffle_net", undefined, true, /file name/],
    ["control_v11p_sd15_canny", undefined, false, /file name/],
    ["renamed", new TextDecoder().decode(YAML), true, /renamed\.yaml/],
    ["shuffle_but_yaml_says_no", "    global_average_pooling: False\n", false, /yaml/],
    ["shuffle_yaml_without_flag", "model:\n  params: {}\n", true, /file name/],
  ];
  for (const [name, yaml, value, from] of cases) {
    const pool = await globalPoolFromFile(await write(name, yaml));
    assert.equal(pool.value, value, name);
    assert.match(pool.from, from, name);
  }
});

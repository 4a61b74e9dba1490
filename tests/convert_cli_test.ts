import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { zipSync } from "fflate";
import { runCli } from "./cli.ts";
import { hasShared, sharedPath } from "./shared.ts";
import { writeByteTokenizer } from "./fixtures/tokenizer.ts";
import { makeTinyModel } from "./fixtures/random_model.ts";
import { diffSafetensors } from "../lib/convert/testing.ts";
import { decodeImage } from "../lib/image/codec.ts";

const enc = new TextEncoder();

function bytes(...parts: Array<string | number[]>): Uint8Array {
  const chunks = parts.map((p) => typeof p === "string" ? enc.encode(p) : Uint8Array.from(p));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** SHORT_BINUNICODE of an ASCII string. */
function sbu(text: string): number[] {
  return [0x8c, text.length, ...enc.encode(text)];
}

/** A torch.save-shaped ZIP whose data.pkl is `pickle` (plus any extra entries). */
function ckpt(pickle: Uint8Array, extra: Record<string, Uint8Array> = {}): Uint8Array {
  return zipSync({
    "archive/data.pkl": pickle,
    "archive/version": enc.encode("3\n"),
    "archive/byteorder": enc.encode("little"),
    ...extra,
  }, { level: 0 });
}

/**
 * Checkpoints that would each create MARKER under Python's torch.load (weights_only=False).
 * `expect` is a word the one-line refusal must contain.
 */
function hostile(marker: string): Array<{ name: string; file: Uint8Array; expect: RegExp }> {
  const cmd = `touch ${marker}`;
  return [
    {
      name: "os.system via GLOBAL + REDUCE",
      file: ckpt(bytes("cos\nsystem\n(S'", cmd, "'\ntR.")),
      expect: /os\.system/,
    },
    {
      name: "builtins.eval via STACK_GLOBAL",
      file: ckpt(bytes(
        [0x80, 4],
        sbu("builtins"),
        sbu("eval"),
        [0x93],
        sbu(`__import__('os').system('${cmd}')`),
        [0x85],
        "R.",
      )),
      expect: /builtins\.eval/,
    },
    {
      name: "subprocess.Popen",
      file: ckpt(
        bytes([0x80, 2], "csubprocess\nPopen\n](", sbu("touch"), sbu(marker), "e", [0x85], "R."),
      ),
      expect: /subprocess\.Popen/,
    },
    {
      // What pickle.dumps writes for an object whose __reduce__ returns (posix.system, (cmd,)).
      name: "a __reduce__ payload",
      file: ckpt(bytes(
        [0x80, 2],
        "cposix\nsystem\nq\x00X",
        [cmd.length, 0, 0, 0],
        cmd,
        "q\x01",
        [0x85],
        "q\x02Rq\x03.",
      )),
      expect: /posix\.system/,
    },
    {
      // A harmless pickle, but the ZIP also holds an entry that would escape the folder.
      name: "a zip entry with ../ in its path",
      file: ckpt(bytes([0x80, 2], "}."), { "archive/../../evil.sh": enc.encode(cmd) }),
      expect: /\.\.\//,
    },
  ];
}

Deno.test("convert-ckpt refuses malicious .ckpt files with one line and runs nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tok = await writeByteTokenizer(join(dir, "tok"));
    const marker = join(dir, "PWNED");
    for (const h of hostile(marker)) {
      const path = join(dir, "evil.ckpt");
      await Deno.writeFile(path, h.file);
      const out = join(dir, "out");
      const r = await runCli(["convert-ckpt", path, "-o", out, "--tokenizer", tok]);
      assert.notEqual(r.code, 0, `${h.name}: exit 0`);
      assert.equal(r.code, 3, `${h.name}: exit ${r.code}, stderr ${r.stderr}`);
      const lines = r.stderr.trim().split("\n");
      assert.match(lines[0]!, /^denoise: /, h.name);
      assert.match(r.stderr, h.expect, `${h.name}: ${r.stderr}`);
      assert.ok(!r.stderr.includes("    at "), `${h.name}: stack trace printed`);
      assert.ok(!existsSync(marker), `${h.name}: the payload ran`);
      assert.ok(!existsSync(out), `${h.name}: output written`);
      assert.ok(!existsSync(join(dir, "..", "evil.sh")) && !existsSync(join(dir, "evil.sh")));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("convert-ckpt --to single-file and back round-trips a tiny SDXL model exactly", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tok = await writeByteTokenizer(join(dir, "tok"));
    const model = await makeTinyModel("sdxl", { seed: 5, tokenizerDir: tok });
    const single = join(dir, "xl.safetensors");
    let r = await runCli(["convert-ckpt", model, "--to", "single-file", "-o", single]);
    assert.equal(r.code, 0, r.stderr);
    r = await runCli(["convert-ckpt", single, "-o", join(dir, "back"), "--tokenizer", tok]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /detected: SDXL base, epsilon/);
    for (
      const f of [
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
        "text_encoder/model.safetensors",
        "text_encoder_2/model.safetensors",
      ]
    ) {
      const d = await diffSafetensors(join(dir, "back", f), join(model, f));
      assert.deepEqual([d.onlyA, d.onlyB, d.different], [[], [], []], `${f}: maxdiff ${d.maxAbs}`);
    }
    // A second run into the same folder is refused; usage errors exit 2.
    r = await runCli(["convert-ckpt", single, "-o", join(dir, "back"), "--tokenizer", tok]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /not empty/);
    r = await runCli(["convert-ckpt", single, "-o", join(dir, "x"), "--config", "sd2"]);
    assert.notEqual(r.code, 0);
    r = await runCli([
      "convert-ckpt",
      single,
      "-o",
      join(dir, "y"),
      "--tokenizer",
      tok,
      "--config",
      "sd1",
    ]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /--config sd1.*SDXL base/);
    await Deno.remove(join(model, ".."), { recursive: true });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "convert-ckpt and generate --model FILE.safetensors reproduce the tiny_sd folder exactly",
  ignore: !hasShared,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      // The single file with its YAML and a tokenizer/ folder beside it.
      const m = join(dir, "m");
      await Deno.mkdir(join(m, "tokenizer"), { recursive: true });
      for (const f of ["tiny_sd_ldm_fp16.safetensors", "v1-inference-tiny.yaml"]) {
        await Deno.copyFile(sharedPath(`golden/models/tiny_sd/ldm/${f}`), join(m, f));
      }
      for (
        const f of ["vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"]
      ) {
        await Deno.copyFile(
          sharedPath(`golden/models/tiny_sd/pipeline/tokenizer/${f}`),
          join(m, "tokenizer", f),
        );
      }
      const env = { DENOISE_HOME: join(dir, "home") };
      // convert-ckpt finds the YAML and the tokenizer beside the file; fp32 equals the folder.
      const conv = await runCli(
        [
          "convert-ckpt",
          join(m, "tiny_sd_ldm_fp16.safetensors"),
          "-o",
          join(dir, "conv"),
          "--dtype",
          "fp32",
        ],
        { env },
      );
      assert.equal(conv.code, 0, conv.stderr);
      assert.match(conv.stderr, /detected: SD 1\.x, epsilon/);
      assert.match(conv.stderr, /v1-inference-tiny\.yaml/);
      for (
        const f of [
          "unet/diffusion_pytorch_model.safetensors",
          "vae/diffusion_pytorch_model.safetensors",
          "text_encoder/model.safetensors",
        ]
      ) {
        const d = await diffSafetensors(
          join(dir, "conv", f),
          sharedPath(`golden/models/tiny_sd/pipeline/${f}`),
        );
        assert.deepEqual(
          [d.onlyA, d.onlyB, d.different],
          [[], [], []],
          `${f}: maxdiff ${d.maxAbs}`,
        );
      }
      const args = ["a photo of a cat", "--seed", "0", "--steps", "4"];
      const file = join(m, "tiny_sd_ldm_fp16.safetensors");
      let r = await runCli(["generate", ...args, "--model", file, "-o", join(dir, "a.png")], {
        env,
      });
      assert.equal(r.code, 0, r.stderr);
      r = await runCli([
        "generate",
        ...args,
        "--model",
        sharedPath("golden/models/tiny_sd/pipeline"),
        "-o",
        join(dir, "b.png"),
      ], { env });
      assert.equal(r.code, 0, r.stderr);
      const a = await decodeImage(await Deno.readFile(join(dir, "a.png")));
      const b = await decodeImage(await Deno.readFile(join(dir, "b.png")));
      let max = 0;
      for (let i = 0; i < a.data.length; i++) {
        max = Math.max(max, Math.abs(a.data[i]! - b.data[i]!));
      }
      assert.equal(a.data.length, b.data.length);
      assert.equal(max, 0, `pixel maxdiff ${max}`);
      // The conversion is cached by file key and reused.
      const converted = [...Deno.readDirSync(join(dir, "home", "converted"))];
      assert.equal(converted.length, 1);
      r = await runCli(["generate", ...args, "--model", file, "-o", join(dir, "c.png")], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.equal([...Deno.readDirSync(join(dir, "home", "converted"))].length, 1);

      // Without a tokenizer anywhere (a bare file, an empty cache, offline): the vocabulary
      // shipped with denoise, the same image.
      await Deno.remove(join(m, "tokenizer"), { recursive: true });
      const bare = { DENOISE_HOME: join(dir, "home2"), DENOISE_OFFLINE: "1" };
      r = await runCli(
        [
          "generate",
          ...args,
          "--model",
          join(m, "tiny_sd_ldm_fp16.safetensors"),
          "-o",
          join(
            dir,
            "e.png",
          ),
        ],
        { env: bare },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(
        (await decodeImage(await Deno.readFile(join(dir, "e.png")))).data,
        (await decodeImage(await Deno.readFile(join(dir, "a.png")))).data,
      );
      // DENOISE_TOKENIZER names one; a folder without the files is a usage error.
      r = await runCli(["generate", ...args, "--model", file, "-o", join(dir, "d.png")], {
        env: { ...bare, DENOISE_TOKENIZER: sharedPath("golden/models/tiny_sd/pipeline/tokenizer") },
      });
      assert.equal(r.code, 0, r.stderr);
      const copy = join(dir, "copy.safetensors");
      await Deno.copyFile(file, copy);
      r = await runCli(["generate", ...args, "--model", copy], {
        env: { DENOISE_HOME: join(dir, "home3"), DENOISE_TOKENIZER: dir },
      });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /tokenizer folder/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("convert-ckpt --dry-run prints its Job and --job replays it; a missing -o is a usage error", async () => {
  const r = await runCli([
    "convert-ckpt",
    "model.safetensors",
    "-o",
    "out",
    "--dtype",
    "fp16",
    "--dry-run",
  ]);
  assert.equal(r.code, 0, r.stderr);
  const job = JSON.parse(r.text);
  assert.deepEqual(job, {
    command: "convert-ckpt",
    version: 1,
    input: "model.safetensors",
    output: "out",
    to: "diffusers",
    dtype: "fp16",
    config: "auto",
    extractEma: false,
    overwrite: false,
  });
  const again = await runCli(["convert-ckpt", "--job", "-", "--dry-run"], { stdin: r.text });
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(JSON.parse(again.text), job);
  const bad = await runCli(["convert-ckpt", "model.safetensors"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /output/);
});

Deno.test("a bad single file is refused for what it is, before any tokenizer question", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denoise-badckpt-" });
  try {
    const env = { DENOISE_HOME: join(dir, "home"), DENOISE_TOKENIZER: join(dir, "no-such") };
    const cases: Array<[string, Uint8Array]> = [
      ["empty.safetensors", new Uint8Array()],
      ["garbage.safetensors", new TextEncoder().encode("this is not a checkpoint at all")],
      ["garbage.ckpt", new Uint8Array(64).fill(7)],
    ];
    for (const [name, bytes] of cases) {
      const path = join(dir, name);
      await Deno.writeFile(path, bytes);
      for (
        const args of [["convert-ckpt", path, "-o", join(dir, "out")], [
          "generate",
          "x",
          "-m",
          path,
        ]]
      ) {
        const r = await runCli(args, { env });
        assert.equal(r.code, 3, `${args.join(" ")}: ${r.stderr}`);
        assert.doesNotMatch(r.stderr, /tokenizer/, r.stderr);
        assert.equal(r.stderr.trim().split("\n").filter((l) => l.startsWith("denoise:")).length, 1);
      }
    }
    // A valid safetensors file that is no SD checkpoint (a LoRA-like file).
    const lora = join(dir, "lora.safetensors");
    const header = JSON.stringify({
      "lora_unet_x.lora_down.weight": { dtype: "F32", shape: [1], data_offsets: [0, 4] },
    });
    const head = new Uint8Array(8);
    new DataView(head.buffer).setBigUint64(0, BigInt(header.length), true);
    await Deno.writeFile(
      lora,
      new Uint8Array([...head, ...new TextEncoder().encode(header), 0, 0, 0, 0]),
    );
    const r = await runCli(["convert-ckpt", lora, "-o", join(dir, "out2")], { env });
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, /UNet|Stable Diffusion|checkpoint/i);
    assert.doesNotMatch(r.stderr, /tokenizer/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

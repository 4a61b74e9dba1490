/**
 * Weight I/O benchmarks: opening a 500 MB safetensors file and reading one tensor from it (only
 * that range is read), and fp16/bf16 <-> fp32 conversion throughput.
 *
 * Run: deno bench --allow-all bench/weights_bench.ts
 */
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "../lib/tensor/dtype.ts";
import { SafetensorsFile } from "../lib/weights/safetensors.ts";

const MB = 2 ** 20;
const TENSORS = 125; // 125 x 4 MB = 500 MB
const path = await Deno.makeTempFile({ prefix: "denoise-bench-", suffix: ".safetensors" });

// Header by hand so the 500 MB never sits in memory: 125 F16 tensors of 2M elements each.
{
  const entries = Array.from(
    { length: TENSORS },
    (_, i) =>
      `"layer.${i}.weight":{"dtype":"F16","shape":[2048,1024],"data_offsets":[${i * 4 * MB},${
        (i + 1) * 4 * MB
      }]}`,
  );
  let json = `{${entries.join(",")}}`;
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const head = new Uint8Array(8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(json.length), true);
  head.set(new TextEncoder().encode(json), 8);
  const file = await Deno.open(path, { write: true, truncate: true });
  await file.write(head);
  const chunk = f32ToF16(Float32Array.from({ length: 2 * MB }, (_, i) => Math.sin(i)));
  for (let i = 0; i < TENSORS; i++) {
    const bytes = new Uint8Array(chunk.buffer);
    let done = 0;
    while (done < bytes.length) done += await file.write(bytes.subarray(done));
  }
  file.close();
}
globalThis.addEventListener("unload", () => Deno.removeSync(path));

Deno.bench("SafetensorsFile.open() of a 500 MB file (header only)", async () => {
  const f = await SafetensorsFile.open(path);
  f.close();
});

Deno.bench("SafetensorsFile.read() of one 4 MB tensor from a 500 MB file", async (b) => {
  const f = await SafetensorsFile.open(path);
  b.start();
  const bytes = await f.read("layer.97.weight");
  b.end();
  if (bytes.byteLength !== 4 * MB) throw new Error("short read");
  f.close();
});

Deno.bench("SafetensorsFile.readFloat32() of one 2M-element F16 tensor", async (b) => {
  const f = await SafetensorsFile.open(path);
  b.start();
  await f.readFloat32("layer.3.weight");
  b.end();
  f.close();
});

const N = 16 * MB; // 16M elements: 32 MB of halves, 64 MB of floats
const floats = Float32Array.from({ length: N }, (_, i) => Math.sin(i) * 100);
const halves = f32ToF16(floats);
const brains = f32ToBf16(floats);

Deno.bench("f16ToF32() 16M elements", { group: "convert" }, () => {
  f16ToF32(halves);
});
Deno.bench("f32ToF16() 16M elements", { group: "convert" }, () => {
  f32ToF16(floats);
});
Deno.bench("bf16ToF32() 16M elements", { group: "convert" }, () => {
  bf16ToF32(brains);
});
Deno.bench("f32ToBf16() 16M elements", { group: "convert" }, () => {
  f32ToBf16(floats);
});

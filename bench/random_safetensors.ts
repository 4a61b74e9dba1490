/**
 * Random-weight safetensors files for the full-size benches, written without holding them in
 * memory (a full SD 1.5 UNet is 3.4 GB of fp32).
 *
 * @module
 */

/**
 * Writes a model with random weights as a safetensors file without holding it in
 * memory: the header first, then each tensor generated in 4M-value chunks. Values: uniform with
 * std 1/sqrt(fan_in) for matrices and kernels, 1 +- 0.1 for norm scales, +-0.1 for biases.
 */
export async function writeRandomSafetensors(
  path: string,
  shapes: Map<string, number[]>,
): Promise<number> {
  const names = [...shapes.keys()].sort();
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const name of names) {
    const n = shapes.get(name)!.reduce((a, b) => a * b, 1);
    header[name] = {
      dtype: "F32",
      shape: shapes.get(name),
      data_offsets: [offset, offset + n * 4],
    };
    offset += n * 4;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((json.length + 8) % 8)) % 8);
  const head = new Uint8Array(8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(json.length), true);
  head.set(new TextEncoder().encode(json), 8);
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  await writeAll(file, head);
  const chunk = new Float32Array(1 << 22);
  let state = 0x9e3779b9;
  for (const name of names) {
    const shape = shapes.get(name)!;
    const n = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length >= 2 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
    const scale = shape.length >= 2 ? Math.sqrt(3 / fanIn) : 0.1 * Math.sqrt(3);
    const base = shape.length < 2 && name.endsWith(".weight") ? 1 : 0;
    for (let done = 0; done < n; done += chunk.length) {
      const m = Math.min(chunk.length, n - done);
      for (let i = 0; i < m; i++) {
        // xorshift32 -> uniform [-1, 1)
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        chunk[i] = base + scale * ((state >>> 0) / 2 ** 31 - 1);
      }
      await writeAll(file, new Uint8Array(chunk.buffer, 0, m * 4));
    }
  }
  return head.length + offset;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) done += await file.write(bytes.subarray(done));
}

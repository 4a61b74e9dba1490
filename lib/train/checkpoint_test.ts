import assert from "node:assert/strict";
import { join } from "node:path";
import { AdamW } from "./adamw.ts";
import { type CheckpointState, loadCheckpoint, saveCheckpoint } from "./checkpoint.ts";

function state(step: number): CheckpointState {
  return {
    format: "denoise-lora-train-checkpoint",
    version: 1,
    step,
    fingerprint: { model: "m" },
    job: { command: "lora-train" },
    startedAt: "1.0",
    sessionId: "1",
  };
}

Deno.test("saveCheckpoint() / loadCheckpoint() round-trip the LoRA, AdamW state and step; old ones are pruned", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denoise-ckpt-" });
  try {
    const lora = {
      "lora_unet_a.lora_down.weight": Float32Array.of(1, 2),
      "lora_unet_a.lora_up.weight": Float32Array.of(3, 4),
    };
    const shapes = { "lora_unet_a.lora_down.weight": [1, 2], "lora_unet_a.lora_up.weight": [2, 1] };
    const adam = new AdamW({ lr: 0.1 });
    adam.step(lora, { "lora_unet_a.lora_down.weight": Float32Array.of(0.5, -0.5) });
    // A save killed half-way leaves a temporary folder: ignored by load, removed by the next save.
    await Deno.mkdir(join(dir, ".step-000009.tmp-dead"));
    for (const step of [1, 2, 3]) {
      await saveCheckpoint(
        dir,
        { state: state(step), lora, shapes, optimizer: adam.stateDict() },
        2,
      );
    }
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names.sort(), ["step-000002", "step-000003"]);
    const c = await loadCheckpoint(dir);
    assert.equal(c.state.step, 3);
    assert.equal(c.path, join(dir, "step-000003"));
    assert.deepEqual(c.lora, lora);
    assert.deepEqual(c.shapes, shapes);
    const restored = new AdamW({ lr: 0.1 });
    restored.loadStateDict(c.optimizer);
    assert.deepEqual(restored.stateDict(), adam.stateDict());
    assert.equal((await loadCheckpoint(join(dir, "step-000002"))).state.step, 2);
    await assert.rejects(() => loadCheckpoint(join(dir, "nope")), /is not a checkpoint folder/);
    const empty = await Deno.makeTempDir();
    await assert.rejects(() => loadCheckpoint(empty), /holds no complete checkpoint/);
    await Deno.remove(empty);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

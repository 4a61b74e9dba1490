import assert from "node:assert/strict";
import { extractNetworks, loraMultipliers } from "./networks.ts";

Deno.test("extractNetworks() removes A1111 extra-network tags and reads their arguments", () => {
  const { prompt, networks } = extractNetworks(
    "<lora:foo_v2:0.7> a castle, <lyco:bar:0.5:0.8> <hypernet:h:1>, <lora:n:te=0.3:unet=1>",
  );
  assert.equal(prompt, " a castle,  , ");
  assert.deepEqual(networks.map((n) => [n.kind, n.name, n.weights]), [
    ["lora", "foo_v2", [0.7]],
    ["lyco", "bar", [0.5, 0.8]],
    ["hypernet", "h", [1]],
    ["lora", "n", []],
  ]);
  assert.deepEqual(networks[3]?.named, { te: "0.3", unet: "1" });
  // Not a tag: no word before the colon, or no closing ">".
  assert.deepEqual(extractNetworks("a <:x> <lora:y").networks, []);
  const bad = extractNetworks("<lora:z:strong>").networks[0];
  assert.ok(bad !== undefined && Number.isNaN(bad.weights[0]));
});

Deno.test("loraMultipliers() applies A1111's defaults for te, unet and dyn", () => {
  const get = (tag: string) => {
    const net = extractNetworks(tag).networks[0];
    assert.ok(net);
    return loraMultipliers(net);
  };
  assert.deepEqual(get("<lora:a>"), { te: 1, unet: 1 });
  assert.deepEqual(get("<lora:a:0.6>"), { te: 0.6, unet: 0.6 });
  assert.deepEqual(get("<lora:a:0.6:0.2>"), { te: 0.6, unet: 0.2 });
  assert.deepEqual(get("<lora:a:0.6:0.2:8>"), { te: 0.6, unet: 0.2, dynDim: 8 });
  assert.deepEqual(get("<lora:a:0.6:unet=0.1:dyn=4>"), { te: 0.6, unet: 0.1, dynDim: 4 });
  assert.throws(() => get("<lora:a:strong>"), /te multiplier "strong" is not a number/);
});

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { isTuple, PickleGlobal, plainGlobals, unpickle, UnsafePickleError } from "./pickle.ts";

const enc = new TextEncoder();

/** Concatenates opcode bytes and latin-1/ASCII text into one pickle. */
function pk(...parts: Array<string | number[]>): Uint8Array {
  const chunks = parts.map((p) =>
    typeof p === "string" ? Uint8Array.from(p, (c) => c.charCodeAt(0)) : Uint8Array.from(p)
  );
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** SHORT_BINUNICODE (0x8c) of an ASCII string. */
function sbu(text: string): number[] {
  return [0x8c, text.length, ...enc.encode(text)];
}

function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g)!, (h) => parseInt(h, 16));
}

// `pickle.dumps(v, protocol=p).hex()` in CPython 3.11 for
// v = {'a': [1, -2, 300, 70000, -(2**40), 2**70, 1.5, 'é\n', b'\x00\x01', (True, None, False),
//            {3}, frozenset([4])], 'b': (), 'c': 'xxx'}
const PLAIN: Record<number, string> = {
  0: "286470300a56610a70310a286c70320a49310a61492d320a61493330300a614937303030300a614c2d313039393531313632373737364c0a614c313138303539313632303731373431313330333432344c0a6146312e350a6156e95c75303030610a70330a61635f636f646563730a656e636f64650a70340a28565c7530303030010a70350a566c6174696e310a70360a7470370a5270380a61284930310a4e4930300a7470390a61635f5f6275696c74696e5f5f0a7365740a7031300a28286c7031310a49330a61747031320a527031330a61635f5f6275696c74696e5f5f0a66726f7a656e7365740a7031340a28286c7031350a49340a61747031360a527031370a617356620a7031380a28747356630a7031390a567878780a7032300a732e",
  2: "80027d71002858010000006171015d7102284b014afeffffff4d2c014a701101008a060000000000ff8a09000000000000000040473ff80000000000005803000000c3a90a7103635f636f646563730a656e636f64650a710458020000000001710558060000006c6174696e317106867107527108884e89877109635f5f6275696c74696e5f5f0a7365740a710a5d710b4b036185710c52710d635f5f6275696c74696e5f5f0a66726f7a656e7365740a710e5d710f4b046185711052711165580100000062711229580100000063711358030000007878787114752e",
  4: "80049562000000000000007d94288c0161945d94284b014afeffffff4d2c014a701101008a060000000000ff8a09000000000000000040473ff80000000000008c03c3a90a944302000194884e8987948f94284b0390284b049194658c016294298c0163948c0378787894752e",
  5: "80059562000000000000007d94288c0161945d94284b014afeffffff4d2c014a701101008a060000000000ff8a09000000000000000040473ff80000000000008c03c3a90a944302000194884e8987948f94284b0390284b049194658c016294298c0163948c0378787894752e",
};

Deno.test("unpickle() rebuilds plain data written by CPython at protocols 0, 2, 4 and 5", () => {
  for (const [protocol, hex] of Object.entries(PLAIN)) {
    const v = unpickle(fromHex(hex), { globals: plainGlobals() }) as Map<string, unknown>;
    assert.ok(v instanceof Map, `protocol ${protocol}`);
    assert.deepEqual([...v.keys()], ["a", "b", "c"]);
    const a = v.get("a") as unknown[];
    assert.deepEqual(a.slice(0, 8), [
      1,
      -2,
      300,
      70000,
      -(2 ** 40),
      2n ** 70n,
      1.5,
      "é\n",
    ], `protocol ${protocol}`);
    assert.deepEqual(a[8], new Uint8Array([0, 1]));
    assert.ok(isTuple(a[9]));
    assert.deepEqual([...a[9] as unknown[]], [true, null, false]);
    assert.deepEqual(a[10], new Set([3]));
    assert.deepEqual(a[11], new Set([4]));
    assert.ok(isTuple(v.get("b")) && !isTuple(a));
    assert.equal(v.get("c"), "xxx");
  }
});

/**
 * Hand-built hostile pickles. Each would run `touch MARKER` under Python's pickle.load; here each
 * must be refused with an error naming the global, and the marker must never appear.
 */
function hostile(marker: string): Array<[string, Uint8Array, string]> {
  const cmd = `touch ${marker}`;
  return [
    [
      // GLOBAL 'os system' (c), MARK ((), STRING 'touch …' (S), TUPLE (t), REDUCE (R), STOP (.)
      "protocol 0 os.system via GLOBAL + REDUCE",
      pk("cos\nsystem\n(S'", cmd, "'\ntR."),
      "os.system",
    ],
    [
      // PROTO 4, SHORT_BINUNICODE 'builtins', SHORT_BINUNICODE 'eval', STACK_GLOBAL (0x93),
      // SHORT_BINUNICODE <code>, TUPLE1 (0x85), REDUCE, STOP
      "protocol 4 builtins.eval via STACK_GLOBAL",
      pk(
        [0x80, 4],
        sbu("builtins"),
        sbu("eval"),
        [0x93],
        sbu(`__import__('os').system('${cmd}')`),
        [
          0x85,
        ],
        "R.",
      ),
      "builtins.eval",
    ],
    [
      // PROTO 2, GLOBAL 'subprocess Popen', EMPTY_LIST, list of args appended, TUPLE1, REDUCE
      "protocol 2 subprocess.Popen",
      pk([0x80, 2], "csubprocess\nPopen\n](", sbu("touch"), sbu(marker), "e", [0x85], "R."),
      "subprocess.Popen",
    ],
    [
      // What pickle.dumps(obj, 2) writes for a class whose __reduce__ returns
      // (posix.system, ('touch …',)): GLOBAL, BINPUT 0, BINUNICODE, BINPUT, TUPLE1, BINPUT,
      // REDUCE, BINPUT, STOP.
      "a __reduce__ payload (posix.system)",
      pk(
        [0x80, 2],
        "cposix\nsystem\nq\x00X",
        [cmd.length, 0, 0, 0],
        cmd,
        "q\x01",
        [0x85],
        "q\x02Rq\x03.",
      ),
      "posix.system",
    ],
    [
      // INST names the class inline: MARK, STRING arg, INST 'os system'
      "INST opcode (os.system)",
      pk("(S'", cmd, "'\nios\nsystem\n."),
      "os.system",
    ],
    [
      // OBJ takes the class from the stack: MARK, GLOBAL, STRING arg, OBJ
      "OBJ opcode (os.system)",
      pk("(cos\nsystem\nS'", cmd, "'\no."),
      "os.system",
    ],
    [
      // Python 2 module name; refused under the name written in the file.
      "__builtin__.exec",
      pk("c__builtin__\nexec\n(S'import os'\ntR."),
      "__builtin__.exec",
    ],
    [
      // functools.partial(os.system, cmd)(): the outer call never happens, the first GLOBAL fails.
      "functools.partial wrapping os.system",
      pk("cfunctools\npartial\n(cos\nsystem\nS'", cmd, "'\ntR)R."),
      "functools.partial",
    ],
    [
      // An allowed global first, then a bad one: refused at the bad GLOBAL, before its REDUCE.
      "OrderedDict then nt.system",
      pk("ccollections\nOrderedDict\n)Rcnt\nsystem\n(S'", cmd, "'\ntR."),
      "nt.system",
    ],
    [
      // A global that is named but never called is refused too (refusal happens at GLOBAL).
      "a bare GLOBAL with no call",
      pk("cos\nsystem\n."),
      "os.system",
    ],
  ];
}

Deno.test("unpickle() refuses hostile globals by name and runs nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const marker = join(dir, "pwned");
    for (const [what, bytes, global] of hostile(marker)) {
      assert.throws(
        () => unpickle(bytes, { globals: plainGlobals(), name: "evil.ckpt" }),
        (e: unknown) => {
          assert.ok(e instanceof UnsafePickleError, `${what}: ${e}`);
          assert.equal(e.global, global, what);
          assert.match(e.message, new RegExp(`"evil\\.ckpt".*"${global.replace(".", "\\.")}"`));
          return true;
        },
        what,
      );
      assert.ok(!existsSync(marker), `${what}: the marker file was created`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("unpickle() refuses calls on values that are not allowed globals", () => {
  const opts = { globals: plainGlobals(), name: "x.pkl" };
  // REDUCE on a string: SHORT_BINUNICODE 'os.system', EMPTY_TUPLE, REDUCE
  assert.throws(() => unpickle(pk(sbu("os.system"), ")R."), opts), UnsafePickleError);
  // BUILD on a list: EMPTY_LIST, EMPTY_DICT, BUILD
  assert.throws(() => unpickle(pk("]}b."), opts), /BUILD on a list is not allowed/);
  // A non-callable allowed global (a storage class) cannot be called.
  const globals = new Map([["torch.FloatStorage", new PickleGlobal("torch.FloatStorage")]]);
  assert.throws(
    () => unpickle(pk("ctorch\nFloatStorage\n)R."), { globals }),
    /"torch\.FloatStorage" may appear in a pickle as a value but cannot be called/,
  );
  // EXT1 (copyreg registry) and persistent ids without a loader.
  assert.throws(() => unpickle(pk([0x82, 1], "."), opts), /extension registry/);
  assert.throws(() => unpickle(pk("K\x01Q."), opts), /persistent ids/);
  // Out-of-band buffers.
  assert.throws(() => unpickle(pk([0x80, 5, 0x97], "."), opts), /out-of-band/);
});

Deno.test("unpickle() rejects malformed and oversized pickles", () => {
  const opts = { globals: plainGlobals(), name: "x.pkl" };
  assert.throws(() => unpickle(pk("K"), opts), (e: Error) => e instanceof SyntaxError);
  assert.throws(() => unpickle(pk("K\x01"), opts), /without a STOP/);
  assert.throws(() => unpickle(pk("h\x05."), opts), /memo entry 5 is missing/);
  assert.throws(() => unpickle(pk([0xff]), opts), /unknown opcode 0xff/);
  assert.throws(() => unpickle(pk("X\xff\xff\xff\x7f."), opts), /ends in the middle/);
  assert.throws(() => unpickle(pk("K\x01e."), opts), /no MARK/);
  assert.throws(() => unpickle(new Uint8Array(100), { ...opts, maxBytes: 10 }), /limit/);
  // Endless memo growth is capped.
  const many = pk(...Array.from({ length: 50 }, (_, i) => `K\x01r${String.fromCharCode(i)}\0\0\0`));
  assert.throws(() => unpickle(many, { ...opts, maxItems: 10 }), /exceeds 10 items/);
});

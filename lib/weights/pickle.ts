/**
 * A restricted pickle virtual machine (protocols 0-5) that can only build plain data.
 *
 * Python's pickle runs code: GLOBAL/STACK_GLOBAL import any callable and REDUCE/NEWOBJ/BUILD/
 * INST/OBJ call it. Here a global resolves only through an allow-list that the caller passes in;
 * any other name is refused with an {@linkcode UnsafePickleError} the moment the GLOBAL,
 * STACK_GLOBAL or INST opcode names it, before any later opcode runs. The calling opcodes only
 * accept {@linkcode PickleGlobal} values, which only come from that allow-list, and each one is a
 * small TypeScript function that builds data. Nothing is imported, evaluated or executed.
 *
 * Opcode semantics follow CPython's `Lib/pickle.py` (`_Unpickler`) and `Lib/pickletools.py`.
 *
 * @module
 */

import type { Tensor } from "../tensor/tensor.ts";

/** A dict key or value as rebuilt from a pickle. */
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | PickleDict
  | Set<PickleValue>
  | PickleGlobal
  | PickleObject
  | Tensor
  | object;

/** A Python dict or OrderedDict (insertion order kept). */
export type PickleDict = Map<PickleValue, PickleValue>;

/** An allow-listed Python global. Only the opcodes that call things accept these. */
export class PickleGlobal {
  /** "module.name", e.g. "collections.OrderedDict". */
  readonly qualname: string;
  readonly #call: ((args: PickleValue[]) => PickleValue) | undefined;
  /** Extra data the allow-list attaches (e.g. the dtype of a torch storage class). */
  readonly tag: unknown;

  constructor(
    qualname: string,
    call?: (args: PickleValue[]) => PickleValue,
    tag?: unknown,
  ) {
    this.qualname = qualname;
    this.#call = call;
    this.tag = tag;
  }

  /** Applies the global to `args`; throws an UnsafePickleError when it is not callable. */
  call(args: PickleValue[]): PickleValue {
    if (!this.#call) {
      throw new UnsafePickleError(
        `"${this.qualname}" may appear in a pickle as a value but cannot be called`,
        this.qualname,
      );
    }
    return this.#call(args);
  }
}

/** An instance of an allow-listed inert class: its constructor arguments and BUILD state. */
export class PickleObject {
  /** "module.name" of the class. */
  readonly className: string;
  /** Arguments it was created with. */
  readonly args: PickleValue[];
  /** State applied by BUILD (usually a dict of attributes), or undefined. */
  state: PickleValue | undefined;

  constructor(className: string, args: PickleValue[]) {
    this.className = className;
    this.args = args;
    this.state = undefined;
  }
}

/**
 * A pickle asked for something that could run code or is not allowed. `global` names the
 * offending Python global when there is one.
 */
export class UnsafePickleError extends RangeError {
  /** The refused "module.name", or undefined for a refused opcode. */
  readonly global: string | undefined;

  constructor(message: string, global?: string) {
    super(message);
    this.name = "UnsafePickleError";
    this.global = global;
  }
}

/** How BUILD treats an object made by an allow-listed global. */
export type BuildHandler = (obj: PickleValue, state: PickleValue) => boolean;

/** Options of {@linkcode unpickle}. */
export interface UnpickleOptions {
  /** Allowed globals by "module.name" (Python 2 names are mapped to Python 3 first). */
  globals: ReadonlyMap<string, PickleGlobal>;
  /** Resolves persistent ids (PERSID/BINPERSID); without it those opcodes are refused. */
  persistentLoad?: (pid: PickleValue) => PickleValue;
  /** Applies BUILD state to objects; return false to refuse. Maps and tensors ignore it. */
  build?: BuildHandler;
  /** Name used in error messages. */
  name?: string;
  /** Largest pickle accepted (default 256 MiB). */
  maxBytes?: number;
  /** Most memo entries and stack items (default 10,000,000). */
  maxItems?: number;
}

const MARK = Symbol("mark");
type Item = PickleValue | typeof MARK;

/** Python 2 module names as Python 3's `_compat_pickle.IMPORT_MAPPING` maps them. */
const PY2_MODULES: Record<string, string> = {
  __builtin__: "builtins",
  copy_reg: "copyreg",
};

function tuple(items: PickleValue[]): PickleValue[] {
  return Object.freeze(items) as PickleValue[];
}

/** True for tuples (frozen arrays), false for lists. */
export function isTuple(value: unknown): value is readonly PickleValue[] {
  return Array.isArray(value) && Object.isFrozen(value);
}

function toInt(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(v)
    : v;
}

/**
 * Runs a pickle with only the allowed globals and returns the object it builds.
 *
 * @example
 * ```ts
 * import { unpickle } from "./pickle.ts";
 * // PROTO 2, EMPTY_DICT, SHORT_BINUNICODE "a", BININT1 7, SETITEM, STOP
 * const bytes = new Uint8Array([0x80, 2, 0x7d, 0x8c, 1, 0x61, 0x4b, 7, 0x73, 0x2e]);
 * const value = unpickle(bytes, { globals: new Map() }) as Map<string, number>;
 * console.assert(value.get("a") === 7);
 * ```
 */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions): PickleValue {
  const name = options.name ?? "<pickle>";
  const maxBytes = options.maxBytes ?? 256 * 2 ** 20;
  const maxItems = options.maxItems ?? 10_000_000;
  if (bytes.byteLength > maxBytes) {
    throw new RangeError(
      `Refusing to unpickle "${name}": ${bytes.byteLength} bytes exceed the ${maxBytes}-byte limit`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const latin1 = new TextDecoder("latin1");
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  let pos = 0;
  let opAt = 0;
  let stack: Item[] = [];
  const metastack: Item[][] = [];
  const memo = new Map<number, Item>();

  const bad = (what: string) =>
    new SyntaxError(`Invalid pickle "${name}": ${what} (opcode at byte ${opAt})`);

  const need = (n: number) => {
    if (n < 0 || pos + n > bytes.byteLength) throw bad("it ends in the middle of an opcode");
  };
  const u8 = () => {
    need(1);
    return bytes[pos++]!;
  };
  const u16 = () => {
    need(2);
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = () => {
    need(4);
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const i32 = () => {
    need(4);
    const v = view.getInt32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = () => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad("a length is out of range");
    return Number(v);
  };
  const take = (n: number) => {
    need(n);
    const out = bytes.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw bad("a text argument has no newline");
    const text = latin1.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return text;
  };
  const str = (b: Uint8Array) => {
    try {
      return utf8.decode(b);
    } catch {
      throw bad("a string is not valid UTF-8");
    }
  };

  const push = (v: Item) => {
    if (stack.length >= maxItems) throw bad(`the stack exceeds ${maxItems} items`);
    stack.push(v);
  };
  const pop = (): PickleValue => {
    if (stack.length === 0) throw bad("the stack is empty");
    const v = stack.pop()!;
    if (v === MARK) throw bad("a MARK was found where a value was expected");
    return v;
  };
  const top = (): PickleValue => {
    const v = stack[stack.length - 1];
    if (v === undefined) throw bad("the stack is empty");
    if (v === MARK) throw bad("a MARK was found where a value was expected");
    return v;
  };
  const popMark = (): PickleValue[] => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) throw bad("there is no MARK to pop to");
    stack = prev;
    for (const it of items) if (it === MARK) throw bad("nested MARK");
    return items as PickleValue[];
  };
  const memoPut = (index: number, v: Item) => {
    if (memo.size >= maxItems && !memo.has(index)) throw bad(`the memo exceeds ${maxItems} items`);
    memo.set(index, v);
  };
  const memoGet = (index: number) => {
    const v = memo.get(index);
    if (v === undefined) throw bad(`memo entry ${index} is missing`);
    return v;
  };

  const resolve = (module: string, qualname: string): PickleGlobal => {
    const full = `${module}.${qualname}`;
    const g = options.globals.get(`${PY2_MODULES[module] ?? module}.${qualname}`);
    if (!g) {
      throw new UnsafePickleError(
        `Refusing to load "${name}": its pickle references the Python global "${full}", which ` +
          `could run code; only tensors and plain containers are allowed (if you trust the file, ` +
          `convert it to .safetensors with a trusted tool)`,
        full,
      );
    }
    return g;
  };
  const callable = (v: PickleValue, opcode: string): PickleGlobal => {
    if (!(v instanceof PickleGlobal)) {
      throw new UnsafePickleError(
        `Refusing to load "${name}": ${opcode} applied to a value that is not an allowed global`,
      );
    }
    return v;
  };
  const argsOf = (v: PickleValue, opcode: string): PickleValue[] => {
    if (!Array.isArray(v)) throw bad(`${opcode} arguments are not a tuple`);
    return v;
  };
  const setItems = (dict: PickleValue, items: PickleValue[]) => {
    if (!(dict instanceof Map)) throw bad("SETITEM(S) on something that is not a dict");
    if (items.length % 2) throw bad("SETITEMS with an odd number of items");
    for (let i = 0; i < items.length; i += 2) dict.set(items[i]!, items[i + 1]!);
  };
  const appendItems = (list: PickleValue, items: PickleValue[]) => {
    if (!Array.isArray(list) || Object.isFrozen(list)) {
      throw bad("APPEND(S) on something that is not a list");
    }
    for (const it of items) list.push(it);
  };
  const persistent = (pid: PickleValue): PickleValue => {
    if (!options.persistentLoad) {
      throw new UnsafePickleError(
        `Refusing to load "${name}": it uses persistent ids, which this reader does not accept`,
      );
    }
    return options.persistentLoad(pid);
  };
  const textInt = (text: string): number | bigint => {
    const t = text.trim().replace(/L$/, "");
    if (!/^[-+]?\d+$/.test(t)) throw bad(`"${text}" is not an integer`);
    return toInt(BigInt(t));
  };
  const longBytes = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return toInt(v);
  };

  while (true) {
    opAt = pos;
    if (pos >= bytes.byteLength) throw bad("it ends without a STOP opcode");
    const op = bytes[pos++]!;
    switch (op) {
      case 0x80: { // PROTO n
        const v = u8();
        if (v > 5) throw bad(`protocol ${v} is newer than 5`);
        break;
      }
      case 0x95: // FRAME: an 8-byte length hint; frames need no special handling here
        u64();
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        if (stack.length) stack.pop();
        else popMark();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;

      // --- numbers
      case 0x49: { // INT (text); "00"/"01" are Python 2's False/True
        const text = line();
        if (text === "00" || text === "01") push(text === "01");
        else push(textInt(text));
        break;
      }
      case 0x4a: // BININT
        push(i32());
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x4c: // LONG (text)
        push(textInt(line()));
        break;
      case 0x8a: // LONG1
        push(longBytes(take(u8())));
        break;
      case 0x8b: { // LONG4
        const n = i32();
        if (n < 0) throw bad("negative LONG4 length");
        push(longBytes(take(n)));
        break;
      }
      case 0x46: { // FLOAT (text)
        const v = Number(line());
        if (Number.isNaN(v)) throw bad("malformed FLOAT");
        push(v);
        break;
      }
      case 0x47: { // BINFLOAT: 8-byte big-endian double
        need(8);
        push(view.getFloat64(pos, false));
        pos += 8;
        break;
      }

      // --- strings and bytes
      case 0x53: // STRING (Python 2 str, quoted repr)
        push(unquote(line(), bad));
        break;
      case 0x54: { // BINSTRING (Python 2 str, decoded as latin-1)
        const n = i32();
        if (n < 0) throw bad("negative BINSTRING length");
        push(latin1.decode(take(n)));
        break;
      }
      case 0x55: // SHORT_BINSTRING
        push(latin1.decode(take(u8())));
        break;
      case 0x56: // UNICODE (raw-unicode-escape text)
        push(rawUnicodeEscape(line()));
        break;
      case 0x58: // BINUNICODE
        push(str(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(str(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        push(str(take(u64())));
        break;
      case 0x42: // BINBYTES
        push(take(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        push(take(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        push(take(u64()).slice());
        break;

      // --- constants
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;

      // --- containers
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x61: { // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x29: // EMPTY_TUPLE
        push(tuple([]));
        break;
      case 0x74: // TUPLE
        push(tuple(popMark()));
        break;
      case 0x85: // TUPLE1
        push(tuple([pop()]));
        break;
      case 0x86: { // TUPLE2
        const b = pop();
        push(tuple([pop(), b]));
        break;
      }
      case 0x87: { // TUPLE3
        const c = pop();
        const b = pop();
        push(tuple([pop(), b, c]));
        break;
      }
      case 0x7d: // EMPTY_DICT
        push(new Map());
        break;
      case 0x64: { // DICT
        const d: PickleDict = new Map();
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x8f: // EMPTY_SET
        push(new Set());
        break;
      case 0x90: { // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) throw bad("ADDITEMS on something that is not a set");
        for (const it of items) s.add(it);
        break;
      }
      case 0x91: // FROZENSET
        push(new Set(popMark()));
        break;

      // --- memo
      case 0x70: // PUT (text index)
        memoPut(Number(textInt(line())), top());
        break;
      case 0x71: // BINPUT
        memoPut(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memoPut(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memoPut(memo.size, top());
        break;
      case 0x67: // GET (text index)
        push(memoGet(Number(textInt(line()))));
        break;
      case 0x68: // BINGET
        push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        push(memoGet(u32()));
        break;

      // --- globals: resolved through the allow-list only
      case 0x63: { // GLOBAL "module\nname\n"
        const module = line();
        push(resolve(module, line()));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const qual = pop();
        const module = pop();
        if (typeof module !== "string" || typeof qual !== "string") {
          throw bad("STACK_GLOBAL needs two strings");
        }
        push(resolve(module, qual));
        break;
      }

      // --- calls: only on allow-listed globals
      case 0x52: { // REDUCE
        const args = argsOf(pop(), "REDUCE");
        push(callable(pop(), "REDUCE").call(args));
        break;
      }
      case 0x81: { // NEWOBJ: cls.__new__(cls, *args)
        const args = argsOf(pop(), "NEWOBJ");
        push(callable(pop(), "NEWOBJ").call(args));
        break;
      }
      case 0x92: { // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
        const kwargs = pop();
        const args = argsOf(pop(), "NEWOBJ_EX");
        if (!(kwargs instanceof Map) || kwargs.size > 0) {
          throw bad("NEWOBJ_EX with keyword arguments is not supported");
        }
        push(callable(pop(), "NEWOBJ_EX").call(args));
        break;
      }
      case 0x69: { // INST "module\nname\n": class from text, args after the MARK
        const module = line();
        const g = resolve(module, line());
        push(g.call(popMark()));
        break;
      }
      case 0x6f: { // OBJ: class and args after the MARK
        const items = popMark();
        if (items.length === 0) throw bad("OBJ without a class");
        push(callable(items[0]!, "OBJ").call(items.slice(1)));
        break;
      }
      case 0x62: { // BUILD: obj.__setstate__(state) or obj.__dict__.update(state)
        const state = pop();
        const obj = top();
        if (!(options.build?.(obj, state) ?? false)) {
          throw new UnsafePickleError(
            `Refusing to load "${name}": BUILD on a ${describe(obj)} is not allowed`,
          );
        }
        break;
      }

      // --- persistent ids (torch storages)
      case 0x50: // PERSID (text)
        push(persistent(line()));
        break;
      case 0x51: // BINPERSID
        push(persistent(pop()));
        break;

      case 0x82: // EXT1
      case 0x83: // EXT2
      case 0x84: // EXT4
        throw new UnsafePickleError(
          `Refusing to load "${name}": it uses the copyreg extension registry (EXT opcodes)`,
        );
      case 0x97: // NEXT_BUFFER
      case 0x98: // READONLY_BUFFER
        throw new UnsafePickleError(
          `Refusing to load "${name}": it uses out-of-band buffers, which torch.save never writes`,
        );
      default:
        throw bad(`unknown opcode 0x${op.toString(16).padStart(2, "0")}`);
    }
  }
}

function orderedDict(args: PickleValue[]): PickleDict {
  const map: PickleDict = new Map();
  const items = args[0];
  if (items === undefined) return map;
  if (!Array.isArray(items)) {
    throw new RangeError("Invalid pickle: OrderedDict(items) needs a list");
  }
  for (const pair of items) {
    if (!Array.isArray(pair) || pair.length !== 2) {
      throw new RangeError("Invalid pickle: OrderedDict items must be pairs");
    }
    map.set(pair[0] as PickleValue, pair[1] as PickleValue);
  }
  return map;
}

/**
 * The globals that plain-data pickles use: `collections.OrderedDict`, `builtins.set` and
 * `frozenset` (as Sets), and `_codecs.encode`, which Python 3 uses to pickle bytes at protocols
 * 0-2. None of them can run code.
 */
export function plainGlobals(): Map<string, PickleGlobal> {
  const g = new Map<string, PickleGlobal>();
  const add = (name: string, call: (args: PickleValue[]) => PickleValue) =>
    g.set(name, new PickleGlobal(name, call));
  add("collections.OrderedDict", orderedDict);
  add("builtins.set", (args) => new Set(Array.isArray(args[0]) ? args[0] : []));
  add("builtins.frozenset", (args) => new Set(Array.isArray(args[0]) ? args[0] : []));
  add("_codecs.encode", (args) => {
    const [text, encoding] = args;
    if (typeof text !== "string") throw new RangeError("Invalid pickle: _codecs.encode(text)");
    if (encoding === "latin1" || encoding === "latin-1") {
      return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
    }
    return new TextEncoder().encode(text);
  });
  return g;
}

function describe(v: PickleValue): string {
  if (v === null) return "None";
  if (v instanceof PickleGlobal) return `global "${v.qualname}"`;
  if (v instanceof PickleObject) return `"${v.className}" object`;
  if (v instanceof Map) return "dict";
  if (Array.isArray(v)) return isTuple(v) ? "tuple" : "list";
  return typeof v;
}

/** Decodes the text of a STRING opcode: a Python 2 repr in single or double quotes. */
function unquote(text: string, bad: (what: string) => SyntaxError): string {
  const q = text[0];
  if (text.length < 2 || (q !== "'" && q !== '"') || text[text.length - 1] !== q) {
    throw bad("STRING argument is not quoted");
  }
  const body = text.slice(1, -1);
  const simple: Record<string, string> = {
    n: "\n",
    r: "\r",
    t: "\t",
    "\\": "\\",
    "'": "'",
    '"': '"',
    a: "\x07",
    b: "\b",
    f: "\f",
    v: "\v",
  };
  let out = "";
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== "\\") {
      out += c;
      continue;
    }
    const e = body[++i];
    if (e === undefined) throw bad("STRING ends with a backslash");
    if (e in simple) out += simple[e];
    else if (e === "x") {
      out += String.fromCharCode(parseInt(body.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (/[0-7]/.test(e)) {
      const m = /^[0-7]{1,3}/.exec(body.slice(i))![0];
      out += String.fromCharCode(parseInt(m, 8));
      i += m.length - 1;
    } else out += "\\" + e;
  }
  return out;
}

/** Decodes Python's raw-unicode-escape: only \uXXXX and \UXXXXXXXX are escapes. */
function rawUnicodeEscape(text: string): string {
  return text.replace(
    /\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g,
    (_, a: string | undefined, b: string | undefined) =>
      String.fromCodePoint(parseInt((a ?? b)!, 16)),
  );
}

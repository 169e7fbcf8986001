// wasmhost JavaScript guest SDK (guests/ABI.md §4-5, component form).
//
// A function is an ES module exporting a Lambda-style Node.js handler:
//
//   export const handler = async (event, context) => ({ statusCode: 200, body: "hi" });
//
// guests/js/build.py bundles it with this file behind a generated entry
//
//   import * as user from "<handler file>";
//   import { createHandle } from "<this file>";
//   export const handle = createHandle(user, "<export name>", "<file label>");
//
// and componentize-js turns the bundle into a component exporting
// `handle: func(request: list<u8>) -> list<u8>` (guests/wit/world.wit).
// The module's top level (this file, the handler's imports, createHandle)
// runs once at BUILD time and is snapshotted; every invocation starts from
// that snapshot in a fresh instance, so nothing survives from one call to
// the next.

// --- msgpack ------------------------------------------------------------------

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

/** Thrown for malformed msgpack input. */
export class MsgpackError extends Error {
  constructor(message) {
    super(message);
    this.name = "MsgpackError";
  }
}

/**
 * Decode one msgpack value that spans all of `bytes` (a Uint8Array).
 *
 * nil -> null, bool, int -> Number (BigInt when outside ±2^53-1), float32/64
 * -> Number, str -> string, bin -> Uint8Array (a copy), array -> Array,
 * map -> plain object (keys converted with String()), timestamp ext (-1) ->
 * Date, any other ext -> { extType, data }.
 */
export function decode(bytes) {
  const r = new Reader(bytes);
  const value = r.value(0);
  if (r.pos !== bytes.length) throw new MsgpackError(`${bytes.length - r.pos} trailing byte(s) after the msgpack value`);
  return value;
}

const MAX_DEPTH = 512;

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }

  need(n) {
    if (this.pos + n > this.bytes.length) throw new MsgpackError("truncated msgpack data");
    const p = this.pos;
    this.pos += n;
    return p;
  }

  u8() { return this.bytes[this.need(1)]; }
  u16() { return this.view.getUint16(this.need(2)); }
  u32() { return this.view.getUint32(this.need(4)); }

  u64() {
    const v = this.view.getBigUint64(this.need(8));
    return v <= 0x1fffffffffffffn ? Number(v) : v;
  }

  i64() {
    const v = this.view.getBigInt64(this.need(8));
    return v >= -0x1fffffffffffffn && v <= 0x1fffffffffffffn ? Number(v) : v;
  }

  str(n) {
    const p = this.need(n);
    try {
      return utf8Decoder.decode(this.bytes.subarray(p, p + n));
    } catch {
      throw new MsgpackError("invalid UTF-8 in msgpack str");
    }
  }

  bin(n) {
    const p = this.need(n);
    // A copy made with this realm's Uint8Array: the request buffer comes from
    // the bindings' realm, where `instanceof Uint8Array` would be false here.
    return new Uint8Array(this.bytes.subarray(p, p + n));
  }

  array(n, depth) {
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value(depth);
    return out;
  }

  map(n, depth) {
    const out = {};
    for (let i = 0; i < n; i++) {
      const key = this.value(depth);
      const k = typeof key === "string" ? key : String(key);
      const v = this.value(depth);
      if (k === "__proto__") {
        Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
      } else {
        out[k] = v;
      }
    }
    return out;
  }

  ext(n) {
    const type = this.view.getInt8(this.need(1));
    const data = this.bin(n);
    if (type === -1) {
      const dv = new DataView(data.buffer);
      if (n === 4) return new Date(dv.getUint32(0) * 1000);
      if (n === 8) {
        const hi = dv.getUint32(0);
        const nsec = hi >>> 2;
        const sec = (hi & 3) * 2 ** 32 + dv.getUint32(4);
        return new Date(sec * 1000 + nsec / 1e6);
      }
      if (n === 12) return new Date(Number(dv.getBigInt64(4)) * 1000 + dv.getUint32(0) / 1e6);
    }
    return { extType: type, data };
  }

  value(depth) {
    if (depth > MAX_DEPTH) throw new MsgpackError("msgpack nesting too deep");
    const b = this.u8();
    if (b <= 0x7f) return b;
    if (b >= 0xe0) return b - 0x100;
    if (b <= 0x8f) return this.map(b & 0x0f, depth + 1);
    if (b <= 0x9f) return this.array(b & 0x0f, depth + 1);
    if (b <= 0xbf) return this.str(b & 0x1f);
    switch (b) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.u8());
      case 0xc5: return this.bin(this.u16());
      case 0xc6: return this.bin(this.u32());
      case 0xc7: return this.ext(this.u8());
      case 0xc8: return this.ext(this.u16());
      case 0xc9: return this.ext(this.u32());
      case 0xca: return this.view.getFloat32(this.need(4));
      case 0xcb: return this.view.getFloat64(this.need(8));
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return this.u64();
      case 0xd0: return this.view.getInt8(this.need(1));
      case 0xd1: return this.view.getInt16(this.need(2));
      case 0xd2: return this.view.getInt32(this.need(4));
      case 0xd3: return this.i64();
      case 0xd4: return this.ext(1);
      case 0xd5: return this.ext(2);
      case 0xd6: return this.ext(4);
      case 0xd7: return this.ext(8);
      case 0xd8: return this.ext(16);
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16(), depth + 1);
      case 0xdd: return this.array(this.u32(), depth + 1);
      case 0xde: return this.map(this.u16(), depth + 1);
      case 0xdf: return this.map(this.u32(), depth + 1);
      default: throw new MsgpackError(`invalid msgpack byte 0x${b.toString(16)}`);
    }
  }
}

/**
 * Encode `value` as msgpack, with JSON.stringify's rules where msgpack has
 * no direct equivalent: `toJSON()` is honoured (a Date becomes its ISO
 * string), object properties whose value is undefined, a function or a
 * symbol are left out, and such values become nil elsewhere; cycles throw
 * a TypeError. Beyond JSON: integers stay integers (smallest encoding),
 * other numbers are float64 (NaN and ±Infinity included), BigInt is int64
 * or uint64, Uint8Array/ArrayBuffer/DataView are bin, Map is a map and Set
 * an array. Returns a Uint8Array.
 */
export function encode(value) {
  const w = new Writer();
  w.value(value, "");
  return w.bytes.subarray(0, w.pos);
}

class Writer {
  constructor() {
    this.bytes = new Uint8Array(256);
    this.view = new DataView(this.bytes.buffer);
    this.pos = 0;
    this.stack = new Set();
  }

  reserve(n) {
    if (this.pos + n <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.pos + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.bytes.subarray(0, this.pos));
    this.bytes = grown;
    this.view = new DataView(grown.buffer);
  }

  byte(b) {
    this.reserve(1);
    this.bytes[this.pos++] = b;
  }

  head(b, n, bits) {
    // A type byte followed by an unsigned 8/16/32-bit length or value.
    this.reserve(5);
    this.bytes[this.pos++] = b;
    if (bits === 8) this.bytes[this.pos++] = n;
    else if (bits === 16) { this.view.setUint16(this.pos, n); this.pos += 2; }
    else { this.view.setUint32(this.pos, n); this.pos += 4; }
  }

  str(s) {
    if (s.length > 4096) {
      // Long strings: exact-size encoding rather than a 3x worst-case reservation.
      const u8 = utf8Encoder.encode(s);
      const n = u8.length;
      if (n < 0x100) this.head(0xd9, n, 8);
      else if (n < 0x10000) this.head(0xda, n, 16);
      else this.head(0xdb, n, 32);
      this.reserve(n);
      this.bytes.set(u8, this.pos);
      this.pos += n;
      return;
    }
    // Encode in place after a header slot sized for the worst case (3 bytes
    // per UTF-16 code unit), then move the bytes down if a shorter header fits.
    const max = s.length * 3;
    this.reserve(5 + max);
    const start = this.pos;
    const slot = max < 32 ? 1 : max < 0x100 ? 2 : max < 0x10000 ? 3 : 5;
    const n = utf8Encoder.encodeInto(s, this.bytes.subarray(start + slot, start + slot + max)).written;
    const hdr = n < 32 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : 5;
    if (hdr !== slot) this.bytes.copyWithin(start + hdr, start + slot, start + slot + n);
    if (hdr === 1) this.bytes[start] = 0xa0 | n;
    else if (hdr === 2) { this.bytes[start] = 0xd9; this.bytes[start + 1] = n; }
    else if (hdr === 3) { this.bytes[start] = 0xda; this.view.setUint16(start + 1, n); }
    else { this.bytes[start] = 0xdb; this.view.setUint32(start + 1, n); }
    this.pos = start + hdr + n;
  }

  bin(u8) {
    const n = u8.length;
    if (n < 0x100) this.head(0xc4, n, 8);
    else if (n < 0x10000) this.head(0xc5, n, 16);
    else this.head(0xc6, n, 32);
    this.reserve(n);
    this.bytes.set(u8, this.pos);
    this.pos += n;
  }

  int(n) {
    if (n >= 0) {
      if (n < 0x80) this.byte(n);
      else if (n < 0x100) this.head(0xcc, n, 8);
      else if (n < 0x10000) this.head(0xcd, n, 16);
      else if (n < 0x100000000) this.head(0xce, n, 32);
      else this.u64(BigInt(n));
    } else {
      if (n >= -32) this.byte(n & 0xff);
      else if (n >= -0x80) { this.reserve(2); this.bytes[this.pos++] = 0xd0; this.view.setInt8(this.pos++, n); }
      else if (n >= -0x8000) { this.reserve(3); this.bytes[this.pos++] = 0xd1; this.view.setInt16(this.pos, n); this.pos += 2; }
      else if (n >= -0x80000000) { this.reserve(5); this.bytes[this.pos++] = 0xd2; this.view.setInt32(this.pos, n); this.pos += 4; }
      else this.i64(BigInt(n));
    }
  }

  u64(b) {
    this.reserve(9);
    this.bytes[this.pos++] = 0xcf;
    this.view.setBigUint64(this.pos, b);
    this.pos += 8;
  }

  i64(b) {
    this.reserve(9);
    this.bytes[this.pos++] = 0xd3;
    this.view.setBigInt64(this.pos, b);
    this.pos += 8;
  }

  float(n) {
    this.reserve(9);
    this.bytes[this.pos++] = 0xcb;
    this.view.setFloat64(this.pos, n);
    this.pos += 8;
  }

  mapHeader(n) {
    if (n < 16) this.byte(0x80 | n);
    else if (n < 0x10000) this.head(0xde, n, 16);
    else this.head(0xdf, n, 32);
  }

  arrayHeader(n) {
    if (n < 16) this.byte(0x90 | n);
    else if (n < 0x10000) this.head(0xdc, n, 16);
    else this.head(0xdd, n, 32);
  }

  value(v, key) {
    if (v !== null && typeof v === "object" && typeof v.toJSON === "function") v = v.toJSON(key);
    switch (typeof v) {
      case "string": return this.str(v);
      case "number":
        if (Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER) return this.int(v);
        return this.float(v);
      case "boolean": return this.byte(v ? 0xc3 : 0xc2);
      case "bigint":
        if (v >= 0n && v <= 0xffffffffffffffffn) return v <= 0x1fffffffffffffn ? this.int(Number(v)) : this.u64(v);
        if (v < 0n && v >= -0x8000000000000000n) return v >= -0x1fffffffffffffn ? this.int(Number(v)) : this.i64(v);
        throw new RangeError(`BigInt ${v} does not fit in 64 bits`);
      case "object": break;
      default: return this.byte(0xc0); // undefined, function, symbol
    }
    if (v === null) return this.byte(0xc0);
    // Tag checks rather than instanceof, which fails across realms.
    const tag = Object.prototype.toString.call(v);
    if (tag === "[object Uint8Array]") return this.bin(v);
    if (tag === "[object ArrayBuffer]") return this.bin(new Uint8Array(v));
    if (tag === "[object DataView]") return this.bin(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
    if (this.stack.has(v)) throw new TypeError("cannot encode a cyclic structure as msgpack");
    this.stack.add(v);
    if (Array.isArray(v) || ArrayBuffer.isView(v)) {
      this.arrayHeader(v.length);
      for (let i = 0; i < v.length; i++) this.value(v[i], String(i));
    } else if (v instanceof Map) {
      this.mapHeader(v.size);
      for (const [k, x] of v) {
        this.value(k, "");
        this.value(x, typeof k === "string" ? k : "");
      }
    } else if (v instanceof Set) {
      this.arrayHeader(v.size);
      let i = 0;
      for (const x of v) this.value(x, String(i++));
    } else {
      const keys = [];
      for (const k of Object.keys(v)) {
        const x = v[k];
        const t = typeof x;
        if (t === "undefined" || t === "function" || t === "symbol") continue;
        if (x !== null && t === "object" && typeof x.toJSON === "function") {
          const j = x.toJSON(k);
          const tj = typeof j;
          if (tj === "undefined" || tj === "function" || tj === "symbol") continue;
        }
        keys.push(k);
      }
      this.mapHeader(keys.length);
      for (const k of keys) {
        this.str(k);
        this.value(v[k], k);
      }
    }
    this.stack.delete(v);
  }
}

// --- errors -------------------------------------------------------------------

// build.py appends `globalThis.__wasmhostSourceMap = {file, sources, lines}`:
// the bundle's source map (without sources) with each generated line
// encoded on its own (first segment absolute), so that stack frames name the
// handler's own files and only the lines of the frames are decoded.
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const INTERNAL_SOURCE = "<wasmhost>"; // the SDK and the generated entry

function lineSegments(lines, n) {
  // The n-th (0-based) ";"-separated line, decoded to [genCol, src, line, col] segments.
  let start = 0;
  for (let i = 0; i < n; i++) {
    start = lines.indexOf(";", start) + 1;
    if (start === 0) return [];
  }
  let end = lines.indexOf(";", start);
  if (end < 0) end = lines.length;
  const segs = [];
  const acc = [0, 0, 0, 0];
  for (const seg of lines.slice(start, end).split(",")) {
    if (!seg) continue;
    let field = 0, value = 0, shift = 0;
    for (let i = 0; i < seg.length; i++) {
      const digit = B64.indexOf(seg[i]);
      value += (digit & 31) * 2 ** shift;
      if (digit & 32) { shift += 5; continue; }
      acc[field++] += value % 2 ? -Math.floor(value / 2) : value / 2;
      value = 0;
      shift = 0;
    }
    if (field >= 4) segs.push(acc.slice());
  }
  return segs;
}

/** Bundle position (1-based) -> [source, line, column] (1-based), or null. */
function mapPosition(file, line, col) {
  const map = globalThis.__wasmhostSourceMap;
  if (!map || file !== map.file || typeof map.lines !== "string") return null;
  let best = null;
  for (const s of lineSegments(map.lines, line - 1)) {
    if (s[0] <= col - 1) best = s;
    else break;
  }
  if (!best) return null;
  return [map.sources[best[1]], best[2] + 1, best[3] + 1 + (col - 1 - best[0])];
}

/** SpiderMonkey frames ("fn@file:line:col") -> Node-style "    at fn (file:line:col)", user frames only. */
function formatStack(stack) {
  const out = [];
  for (const frame of stack.split("\n")) {
    if (frame.trim() === "") continue;
    const m = /^(.*)@(.*?):(\d+):(\d+)$/.exec(frame);
    if (!m) {
      if (/^\s+at /.test(frame)) out.push(frame); // already V8-style (tests under Node)
      continue;
    }
    let [, fn, file, line, col] = m;
    fn = fn.replace(/^async\*/, "async ");
    const mapped = mapPosition(file, Number(line), Number(col));
    if (mapped) [file, line, col] = mapped;
    if (file === INTERNAL_SOURCE || /(^|\/)initializer\.js$/.test(file)) continue; // SDK, componentize-js bindings
    const where = `${file}:${line}:${col}`;
    out.push(fn ? `    at ${fn} (${where})` : `    at ${where}`);
  }
  return out;
}

/** Lambda's error shape plus the ABI's `type`/`message`, for any thrown value. */
export function errorMap(err) {
  let name;
  let message;
  let trace = [];
  if (err instanceof Error || (err !== null && typeof err === "object" && typeof err.message === "string")) {
    name = String(err.name || (err.constructor && err.constructor.name) || "Error");
    message = String(err.message);
    let frames = [];
    try {
      frames = formatStack(typeof err.stack === "string" ? err.stack : "");
    } catch {
      // a broken stack or source map must not hide the error itself
    }
    trace = [`${name}: ${message}`, ...frames];
  } else if (err === "out of memory") {
    // SpiderMonkey's (catchable) out-of-memory exception is this string.
    name = "OutOfMemory";
    message = "out of memory: the JavaScript heap hit the function's memory limit";
  } else {
    // Lambda's Node runtime: errorType is typeof, errorMessage the string form.
    name = typeof err;
    try {
      message = String(err);
    } catch {
      message = Object.prototype.toString.call(err);
    }
  }
  return { type: name, message, errorType: name, errorMessage: message, stackTrace: trace };
}

// --- the response --------------------------------------------------------------

// Answer in the request's format. JSON only when it carries the value exactly
// as msgpack would: binary data, Map, Set, non-finite numbers and BigInt
// (JSON.stringify throws) go as msgpack.
let answerJson = false;
const NOT_JSON = Symbol("not JSON");

function exactJson(key, v) {
  if (typeof v === "object") {
    if (v !== null && (ArrayBuffer.isView(v) || v instanceof Map || v instanceof Set || isArrayBuffer(v))) throw NOT_JSON;
  } else if (typeof v === "number" && !Number.isFinite(v)) {
    throw NOT_JSON;
  }
  return v;
}

function isArrayBuffer(v) {
  return Object.prototype.toString.call(v) === "[object ArrayBuffer]";
}

function respond(value) {
  if (answerJson) {
    let text;
    try {
      text = JSON.stringify(value, exactJson);
    } catch (e) {
      text = undefined; // BigInt, a cycle, or NOT_JSON: msgpack encodes it or names the problem
    }
    if (text !== undefined) return utf8Encoder.encode(text);
  }
  return encode(value);
}

function failure(type, message) {
  return respond({ error: { type, message, errorType: type, errorMessage: message, stackTrace: [] } });
}

function respondError(err) {
  try {
    return respond({ error: errorMap(err) });
  } catch (e) {
    return failure("Error", "could not encode the error thrown by the handler");
  }
}

function respondOk(result) {
  try {
    return respond({ ok: result });
  } catch (e) {
    const m = errorMap(e);
    if (m.type === "OutOfMemory") return failure(m.type, m.message);
    return failure("InvalidResult", `the handler's result cannot be encoded as msgpack: ${m.errorType}: ${m.errorMessage}`);
  }
}

// --- the Lambda context -------------------------------------------------------

function str(v, fallback) {
  return typeof v === "string" ? v : fallback;
}

/** The Node.js Lambda context object for the request's `context` map. */
export function makeContext(raw) {
  const ctx = raw !== null && typeof raw === "object" ? raw : {};
  const functionName = str(ctx.function_name, "");
  const functionVersion = str(ctx.function_version, "$LATEST");
  const requestId = str(ctx.request_id, "");
  const deadline = Number(ctx.deadline_ms);
  const memory = ctx.memory_limit_mb;
  return {
    functionName,
    functionVersion,
    invokedFunctionArn: `arn:wasmhost:lambda:local:000000000000:function:${functionName}`,
    // A string, as in Lambda's Node.js runtime (it comes from an env var there).
    memoryLimitInMB: memory === undefined || memory === null ? "" : String(memory),
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/${functionName}`,
    // Built when read: formatting a date is slow in the interpreter.
    get logStreamName() {
      return `${new Date().toISOString().slice(0, 10).replace(/-/g, "/")}/[${functionVersion}]${requestId}`;
    },
    identity: undefined,
    clientContext: undefined,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis() {
      return Number.isFinite(deadline) ? Math.max(0, deadline - Date.now()) : 0;
    },
    /** The request's raw context map (snake_case keys, guests/ABI.md §4). */
    wasmhost: ctx,
  };
}

// --- timers -------------------------------------------------------------------

// StarlingMonkey waits for timers in a host call (wasi:io/poll), where the
// host's epoch interruption cannot stop it: `await sleep(60_000)` would hold
// the host thread for a minute whatever the function's timeout. So timers
// never outlast the invocation's deadline: one that would is cut short to
// the deadline, and its callback is replaced by a spin that the host's
// epoch interruption stops, so the invocation ends with Timeout (as a core
// module's sleep does, guests/ABI.md §3).
let deadlineMs = Infinity; // set by handle(); Infinity at build time

function clampTimer(set) {
  if (typeof set !== "function") return set;
  return function (callback, delay, ...args) {
    const wanted = Math.max(0, Number(delay) || 0);
    const left = deadlineMs - Date.now();
    if (!(wanted > left) || typeof callback !== "function") return set(callback, delay, ...args);
    return set(() => {
      for (;;) {} // past the deadline: wait for the host to stop this instance
    }, Math.max(0, left) + 1);
  };
}

globalThis.setTimeout = clampTimer(globalThis.setTimeout);
globalThis.setInterval = clampTimer(globalThis.setInterval);

// --- fetch ----------------------------------------------------------------------

// build.py disables StarlingMonkey's http feature (functions have no network):
// its fetch() would then trap the whole instance. Reject like a failed fetch.
globalThis.fetch = function fetch() {
  return Promise.reject(new TypeError("fetch() is not available: wasmhost functions have no network access"));
};

// --- process.env ----------------------------------------------------------------

// StarlingMonkey has no `process`. handle() sets `process.env` from the
// function's environment (wasi:cli/environment, see build.py) before calling
// the handler. At build time — while the modules' top level runs — it is an
// empty object that remembers what was read, so build.py can warn that those
// reads saw nothing.
const buildTimeEnvReads = new Set();
if (globalThis.process === undefined) {
  globalThis.process = {
    env: new Proxy({}, {
      get(target, key) {
        if (typeof key === "string") buildTimeEnvReads.add(key);
        return Reflect.get(target, key);
      },
    }),
  };
}

function installEnv(getEnvironment) {
  const env = {};
  for (const [k, v] of getEnvironment()) {
    if (k === "__proto__") Object.defineProperty(env, k, { value: v, enumerable: true, writable: true, configurable: true });
    else env[k] = v;
  }
  if (globalThis.process === null || typeof globalThis.process !== "object") globalThis.process = {};
  globalThis.process.env = env;
}

// --- the export ---------------------------------------------------------------

function isThenable(v) {
  return v !== null && (typeof v === "object" || typeof v === "function") && typeof v.then === "function";
}

function exportNames(obj) {
  const names = Object.keys(obj);
  return names.length ? names.join(", ") : "none";
}

/** Thrown at build time (by createHandle) when the handler export is unusable. */
class HandlerNotFound extends Error {
  constructor(message) {
    super(message);
    this.name = "HandlerNotFound";
  }
}

/**
 * Build the component's `handle(request: Uint8Array) -> Uint8Array` for the
 * export `name` of the module namespace `mod` (`label` names the file in
 * messages). Runs at build time: a missing export, or one that is not a
 * function, throws, and so fails the build.
 *
 * The handler is called as `handler(event, context, callback)`. Its result
 * is the response (`{"ok": result}`); a Promise is awaited (StarlingMonkey
 * runs the event loop, timers included, until it settles). A handler that
 * declares 3 parameters and returns undefined answers through
 * `callback(error, result)`, as in Lambda. A thrown or rejected value
 * becomes `{"error": {type, message, errorType, errorMessage, stackTrace}}`.
 * `getEnvironment` (wasi:cli/environment's, optional) fills `process.env`
 * before each call.
 */
export function createHandle(mod, name, label, getEnvironment) {
  // esbuild presents a CommonJS module as { default: module.exports, ...its keys }.
  const cjs = mod.default !== null && typeof mod.default === "object" ? mod.default : null;
  let fn = mod[name];
  if (fn === undefined && cjs) fn = cjs[name];
  if (fn === undefined) {
    const have = cjs ? `module.exports has: ${exportNames(cjs)}` : `its exports: ${exportNames(mod)}`;
    throw new HandlerNotFound(`${label} has no export named "${name}" (${have})`);
  }
  if (typeof fn !== "function") {
    throw new HandlerNotFound(`${label}: the export "${name}" is ${fn === null ? "null" : `a ${typeof fn}`}, not a function`);
  }
  const handler = fn;
  const wantsCallback = handler.length >= 3;
  if (buildTimeEnvReads.size) {
    // Picked up by build.py (printed as a warning), on the build's stdout.
    console.log(`WASMHOST_BUILD_WARNING process.env read at module top level (build time): ${[...buildTimeEnvReads].join(", ")}`);
  }

  const ignoredCallback = () => {};
  return function handle(request) {
    let event;
    let context;
    try {
      // A request may be JSON (first byte "{"; a msgpack map never starts so):
      // the host sends JSON to components built with this SDK (guests/ABI.md),
      // and JSON.parse is native code, several times faster than decode().
      answerJson = request[0] === 0x7b;
      const req = answerJson ? JSON.parse(utf8Decoder.decode(request)) : decode(request);
      if (req === null || typeof req !== "object" || Array.isArray(req) || !("event" in req) || !("context" in req)) {
        return failure("InvalidRequest", "the request is not a map with event and context");
      }
      event = req.event;
      context = makeContext(req.context);
      const deadline = Number(req.context && req.context.deadline_ms);
      if (Number.isFinite(deadline)) deadlineMs = deadline;
    } catch (e) {
      return failure("InvalidRequest", `cannot decode the request: ${e && e.message}`);
    }

    if (typeof getEnvironment === "function") {
      try {
        installEnv(getEnvironment);
      } catch (e) {
        return respondError(e);
      }
    }

    // Lambda's callback(error, result); only awaited for handlers that declare
    // it (3 parameters), so only they pay for its Promise.
    let settle = ignoredCallback;
    let viaCallback;
    if (wantsCallback) {
      viaCallback = new Promise((resolve, reject) => {
        settle = (err, result) => (err !== undefined && err !== null ? reject(err) : resolve(result));
      });
      viaCallback.catch(() => {}); // unused unless the handler answers through the callback
    }

    let result;
    try {
      result = handler(event, context, settle);
    } catch (e) {
      return respondError(e);
    }
    if (!isThenable(result) && !(wantsCallback && result === undefined)) return respondOk(result);
    const pending = isThenable(result) ? result : viaCallback;
    return Promise.resolve(pending).then(respondOk, respondError);
  };
}

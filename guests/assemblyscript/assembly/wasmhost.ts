// wasmhost.ts - AssemblyScript guest SDK for wasmhost (guest ABI v1).
//
// A function is one handler, registered once, plus a one-line re-export of the
// two ABI entry points from the entry file:
//
//     import { Reader, Context, Writer, fail, register } from "../assembly/wasmhost";
//     export { wasmhost_alloc, wasmhost_handle } from "../assembly/wasmhost";
//
//     function handle(event: Reader, ctx: Context, out: Writer): void {
//       const name = event.getStr("name");
//       if (name == null) { fail("ValidationError", "name is required"); return; }
//       out.writeMap(1);
//       out.writeStr("greeting");
//       out.writeStr("hello " + name);
//     }
//     register(handle);
//
// The handler writes exactly ONE msgpack value (its result) into `out`, or
// calls fail(type, message). See guests/ABI.md for the wire format and
// guests/assemblyscript/README.md for the build command. The module must be
// compiled with `--runtime stub --use abort=wasmhost_abort` (the
// builder does this) so that it imports nothing but WASI.
//
// Contents:
//   1. WASI: print, printErr, printRaw, writeFd, nowMs, wasmhost_abort
//      (so the module has no `env` imports)
//   2. memory: heapTop, ensureEnd, ensureRoom (grow-or-fail instead of the
//      stub runtime's trap)
//   3. msgpack reader  (Reader, Span, Ext, Type, ReadError)
//   4. msgpack writer  (Writer)
//   5. guest ABI glue  (Context, register, fail, failWith,
//                       wasmhost_alloc, wasmhost_handle)
//
// Reader conventions (as in the C SDK): errors are sticky. The first failure
// (truncated input, wrong type, out-of-range integer, reserved byte 0xc1) sets
// `r.err`; from then on every read returns a zero value / empty Span and does
// not move. Reads never look past `end`. Check `r.err` once after a sequence
// of reads, or `peek()` first when a value may have several types.
//
// Writer conventions: the buffer grows on the heap. If memory cannot grow,
// `w.err` is set and further writes are ignored; the glue then answers
// {"error": {"type": "OutOfMemory", ...}}.
//
// Every invocation runs in a fresh instance, so nothing is ever freed: the
// stub runtime (a bump allocator) is the right one. Small requests and
// answers fit in the module's first memory page and never grow memory.

// ============================================================================
// 1. WASI
// ============================================================================

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "fd_write")
declare function wasi_fd_write(fd: u32, iovs: usize, iovsLen: usize, nwritten: usize): u16;

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "clock_time_get")
declare function wasi_clock_time_get(clock: u32, precision: u64, time: usize): u16;

// Scratch space in static memory (no allocation): iovec, result words, and a
// small staging buffer for log lines.
const SCRATCH_SIZE: usize = 512;
// @ts-ignore: memory.data
const scratchIov: usize = memory.data(16, 8);
// @ts-ignore: memory.data
const scratchBuf: usize = memory.data(<i32>SCRATCH_SIZE, 16);

// Write `len` bytes at `ptr` to `fd` (1 = stdout, 2 = stderr; both end up in
// the invocation's log). Retries partial writes; gives up on a WASI error.
export function writeFd(fd: u32, ptr: usize, len: usize): void {
  while (len > 0) {
    store<u32>(scratchIov, <u32>ptr);
    store<u32>(scratchIov, <u32>len, 4);
    if (wasi_fd_write(fd, scratchIov, 1, scratchIov + 8) != 0) return;
    let n = <usize>load<u32>(scratchIov, 8);
    if (n == 0 || n > len) return;
    ptr += n;
    len -= n;
  }
}

function writeLine(fd: u32, s: string, newline: bool): void {
  let n = <usize>String.UTF8.byteLength(s) + <usize>newline;
  let buf = n <= SCRATCH_SIZE ? scratchBuf : heap.alloc(n);
  let used = String.UTF8.encodeUnsafe(
    changetype<usize>(s), s.length, buf, false, String.UTF8.ErrorMode.REPLACE);
  if (newline) store<u8>(buf + used++, 0x0a);
  writeFd(fd, buf, used);
  if (buf != scratchBuf) heap.free(buf);
}

/** Print `s` and a newline to stdout (one WASI fd_write; unbuffered, so it
 *  reaches the log even if the function traps later). */
export function print(s: string): void {
  writeLine(1, s, true);
}

/** Print `s` and a newline to stderr. */
export function printErr(s: string): void {
  writeLine(2, s, true);
}

/** Write `s` to stdout as UTF-8, without a newline. */
export function printRaw(s: string): void {
  writeLine(1, s, false);
}

/** Wall clock (WASI clock_time_get(realtime)), Unix epoch milliseconds; 0 on error. */
// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "environ_sizes_get")
declare function wasi_environ_sizes_get(count: usize, bufSize: usize): u16;

// @ts-ignore: decorator
@external("wasi_snapshot_preview1", "environ_get")
declare function wasi_environ_get(environ: usize, buf: usize): u16;

/** The function's environment (its `env` and `secrets`) as name -> value, or null if
 * WASI reports an error. AssemblyScript's own `process.env` is always empty under
 * WASI (and `process` imports things the host refuses), so this asks WASI directly:
 * environ_sizes_get, then environ_get fills pointers to "NAME=value\0". */
export function env(): Map<string, string> | null {
  const vars = new Map<string, string>();
  const sizes = heap.alloc(8);
  if (wasi_environ_sizes_get(sizes, sizes + 4) != 0) return null;
  const count = <usize>load<u32>(sizes);
  const bufSize = <usize>load<u32>(sizes, 4);
  const pointers = heap.alloc(count * 4);
  const buf = heap.alloc(bufSize);
  if (wasi_environ_get(pointers, buf) != 0) return null;
  for (let i: usize = 0; i < count; i++) {
    const start = <usize>load<u32>(pointers + i * 4);
    let eq = start;
    while (load<u8>(eq) != 0x3d && load<u8>(eq) != 0) eq++; // '=' or the end
    let end = eq;
    while (load<u8>(end) != 0) end++;
    const name = String.UTF8.decodeUnsafe(start, eq - start);
    const value = eq < end ? String.UTF8.decodeUnsafe(eq + 1, end - eq - 1) : "";
    vars.set(name, value);
  }
  return vars;
}

export function nowMs(): i64 {
  if (wasi_clock_time_get(0, 1000000, scratchIov) != 0) return 0;
  return <i64>(load<u64>(scratchIov) / 1000000);
}

// Allocation-free writer for abort(): strings are encoded piecewise through
// the scratch buffer, so it works even when the heap is exhausted.
function abortPut(s: string | null): void {
  if (s == null) return;
  let p = changetype<usize>(s);
  let units = s.length;
  let i = 0;
  while (i < units) {
    let chunk = min(units - i, <i32>(SCRATCH_SIZE / 3) - 1);
    // do not split a surrogate pair across chunks
    if (i + chunk < units) {
      let last = <u32>load<u16>(p + (<usize>(i + chunk - 1) << 1));
      if ((last & 0xfc00) == 0xd800) chunk--;
    }
    let n = String.UTF8.encodeUnsafe(p + (<usize>i << 1), chunk, scratchBuf, false, String.UTF8.ErrorMode.REPLACE);
    writeFd(2, scratchBuf, n);
    i += chunk;
  }
}

function abortPutU32(v: u32): void {
  let end = scratchBuf + 16;
  let p = end;
  do {
    store<u8>(--p, 0x30 + v % 10);
    v /= 10;
  } while (v);
  writeFd(2, p, end - p);
}

/** The module's `abort` (selected with `--use abort=wasmhost_abort`):
 *  failed assert(), `throw`, out-of-range array index, ... Writes
 *  "abort: <message> at <file>:<line>:<column>" to stderr, then traps, which
 *  the host reports as `Trap`. Never allocates. */
// @ts-ignore: decorator
@global export function wasmhost_abort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  abortPut("abort: ");
  abortPut(message);
  if (fileName != null) {
    abortPut(" at ");
    abortPut(fileName);
    abortPut(":");
    abortPutU32(line);
    abortPut(":");
    abortPutU32(column);
  }
  abortPut("\n");
  unreachable();
}

// ============================================================================
// 2. memory
// ============================================================================

// Largest block the stub runtime hands out (its BLOCK_MAXSIZE).
const MAX_BLOCK: usize = (1 << 30) - 16;

/** The stub runtime's next free (payload) address: allocate nothing and
 *  give it back (freeing the last block rewinds the bump pointer). */
export function heapTop(): usize {
  let top = heap.alloc(0);
  heap.free(top);
  return top;
}

/** Make sure linear memory extends at least to address `end`, growing it if
 *  needed (doubling when possible, like the stub runtime, else exactly).
 *  Returns false if memory cannot grow that far. */
export function ensureEnd(end: usize): bool {
  let pages = memory.size();
  let have = <usize>pages << 16;
  if (end <= have) return true;
  let needed = <i32>((end - have + 0xffff) >>> 16);
  if (memory.grow(max(pages, needed)) >= 0) return true;
  return memory.grow(needed) >= 0;
}

/** Make sure the heap can hand out a block of `n` bytes without growing
 *  memory, growing memory now if needed. Returns false (instead of trapping,
 *  as the stub runtime does) if memory cannot grow that far. */
export function ensureRoom(n: usize): bool {
  if (n > MAX_BLOCK) return false;
  let top = heapTop();
  let end = top + n + 32; // block header and alignment, generously
  return end >= top && ensureEnd(end);
}

// ============================================================================
// 3. msgpack reader
// ============================================================================

/** Value types as seen by Reader.peek(). Int covers every integer encoding,
 *  Float covers float32 and float64. None: no more input, reader in error, or
 *  the reserved byte 0xc1. */
export enum Type {
  None = 0,
  Nil,
  Bool,
  Int,
  Float,
  Str,
  Bin,
  Array,
  Map,
  Ext,
}

/** Values of Reader.err. */
export enum ReadError {
  Ok = 0,
  Eof = 1,     // value runs past `end`
  Type = 2,    // value is not of the requested type
  Range = 3,   // integer does not fit the requested type
  Invalid = 4, // reserved byte 0xc1
}

// @ts-ignore: decorator
@inline function be16(p: usize): u32 {
  return <u32>bswap<u16>(load<u16>(p));
}
// @ts-ignore: decorator
@inline function be32(p: usize): u32 {
  return bswap<u32>(load<u32>(p));
}
// @ts-ignore: decorator
@inline function be64(p: usize): u64 {
  return bswap<u64>(load<u64>(p));
}
// Big-endian unsigned integer of n (1, 2, 4, 8) bytes.
function ben(p: usize, n: usize): u64 {
  if (n == 1) return <u64>load<u8>(p);
  if (n == 2) return <u64>be16(p);
  if (n == 4) return <u64>be32(p);
  return be64(p);
}

/** UTF-8 bytes at [ptr, ptr+len) equal the string `s` (compared without
 *  allocating). */
export function utf8Equals(ptr: usize, len: usize, s: string): bool {
  let sp = changetype<usize>(s);
  let units = <usize>s.length;
  // each UTF-16 unit is 1..3 UTF-8 bytes (a surrogate pair: 2 units, 4 bytes)
  if (len < units || len > units * 3) return false;
  if (len == units) { // all ASCII if equal: compare 4 units against 4 bytes at a time
    let i: usize = 0;
    for (; i + 4 <= units; i += 4) {
      let u = load<u64>(sp + (i << 1));
      if (u & 0xff80ff80ff80ff80) return false; // not ASCII
      let b = <u64>load<u32>(ptr + i);
      let wide = (b & 0xff) | ((b & 0xff00) << 8) | ((b & 0xff0000) << 16) | ((b & 0xff000000) << 24);
      if (u != wide) return false;
    }
    for (; i < units; i++) {
      let c = <u32>load<u16>(sp + (i << 1));
      if (c >= 0x80 || c != <u32>load<u8>(ptr + i)) return false;
    }
    return true;
  }
  let q = ptr;
  let end = ptr + len;
  for (let i: usize = 0; i < units; i++) {
    let c = <u32>load<u16>(sp + (i << 1));
    if (c < 0x80) {
      if (q >= end || <u32>load<u8>(q) != c) return false;
      q++;
      continue;
    }
    if (c >= 0xd800 && c < 0xdc00 && i + 1 < units) {
      let c2 = <u32>load<u16>(sp + ((i + 1) << 1));
      if ((c2 & 0xfc00) == 0xdc00) {
        c = 0x10000 + ((c & 0x3ff) << 10) + (c2 & 0x3ff);
        i++;
      }
    }
    if ((c & 0xf800) == 0xd800) c = 0xfffd; // lone surrogate
    let n: usize = c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (end - q < n) return false;
    if (n == 2) {
      if (<u32>load<u8>(q) != (0xc0 | (c >> 6)) || <u32>load<u8>(q, 1) != (0x80 | (c & 0x3f))) return false;
    } else if (n == 3) {
      if (<u32>load<u8>(q) != (0xe0 | (c >> 12)) || <u32>load<u8>(q, 1) != (0x80 | ((c >> 6) & 0x3f))
        || <u32>load<u8>(q, 2) != (0x80 | (c & 0x3f))) return false;
    } else {
      if (<u32>load<u8>(q) != (0xf0 | (c >> 18)) || <u32>load<u8>(q, 1) != (0x80 | ((c >> 12) & 0x3f))
        || <u32>load<u8>(q, 2) != (0x80 | ((c >> 6) & 0x3f)) || <u32>load<u8>(q, 3) != (0x80 | (c & 0x3f))) return false;
    }
    q += n;
  }
  return q == end;
}

/** A byte range of linear memory, usually inside the request: a str's UTF-8
 *  bytes, a bin's payload, or one value's raw msgpack encoding. No copy is
 *  made until you ask for one. */
export class Span {
  constructor(public ptr: usize = 0, public len: usize = 0) {}

  /** The bytes as UTF-8, decoded into a string (allocates). */
  toString(): string {
    return String.UTF8.decodeUnsafe(this.ptr, this.len);
  }

  /** A copy of the bytes. */
  toBytes(): Uint8Array {
    let a = new Uint8Array(<i32>this.len);
    memory.copy(a.dataStart, this.ptr, this.len);
    return a;
  }

  /** The bytes equal the UTF-8 encoding of `s` (no allocation). */
  equals(s: string): bool {
    return utf8Equals(this.ptr, this.len, s);
  }

  /** A reader over the bytes (for a Span from readRaw()). */
  reader(): Reader {
    return new Reader(this.ptr, this.len);
  }
}

/** An ext value: its type byte and payload. */
export class Ext {
  constructor(public type: i8 = 0, public data: Span = new Span()) {}
}

/** A msgpack reader over [pos, end). */
export class Reader {
  /** Next byte to read. */
  pos: usize;
  /** One past the last readable byte. */
  end: usize;
  /** ReadError.Ok or the first error met (sticky). */
  err: ReadError = ReadError.Ok;

  constructor(ptr: usize, len: usize) {
    this.pos = ptr;
    this.end = ptr + len;
  }

  /** A reader over a byte array (which must stay alive while reading). */
  static of(data: Uint8Array): Reader {
    return new Reader(data.dataStart, <usize>data.length);
  }

  /** Bytes not yet consumed. */
  get remaining(): usize {
    return this.end - this.pos;
  }

  /** A copy of this reader (same position, independent from then on). */
  clone(): Reader {
    let r = new Reader(this.pos, this.end - this.pos);
    r.err = this.err;
    return r;
  }

  /** True if all bytes were consumed without error. */
  atEnd(): bool {
    return this.err == ReadError.Ok && this.pos == this.end;
  }

  // Room for n more bytes? Sets Eof if not.
  private need(n: usize): bool {
    if (this.err != ReadError.Ok) return false;
    if (this.end - this.pos < n) {
      this.err = ReadError.Eof;
      return false;
    }
    return true;
  }

  private fail(e: ReadError): void {
    if (this.err == ReadError.Ok) this.err = e;
  }

  /** Type of the next value, without consuming it. */
  peek(): Type {
    if (this.err != ReadError.Ok || this.pos >= this.end) return Type.None;
    let b = <u32>load<u8>(this.pos);
    if (b <= 0x7f || b >= 0xe0) return Type.Int;
    if (b <= 0x8f) return Type.Map;
    if (b <= 0x9f) return Type.Array;
    if (b <= 0xbf) return Type.Str;
    switch (b) {
      case 0xc0: return Type.Nil;
      case 0xc1: return Type.None;
      case 0xc2: case 0xc3: return Type.Bool;
      case 0xc4: case 0xc5: case 0xc6: return Type.Bin;
      case 0xc7: case 0xc8: case 0xc9: return Type.Ext;
      case 0xca: case 0xcb: return Type.Float;
      case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: return Type.Ext;
      case 0xd9: case 0xda: case 0xdb: return Type.Str;
      case 0xdc: case 0xdd: return Type.Array;
      case 0xde: case 0xdf: return Type.Map;
      default: return Type.Int; // 0xcc..0xd3
    }
  }

  /** Consume a nil. Returns true on success. */
  readNil(): bool {
    if (!this.need(1)) return false;
    if (load<u8>(this.pos) != 0xc0) { this.fail(ReadError.Type); return false; }
    this.pos++;
    return true;
  }

  /** Consume a bool (false on error). */
  readBool(): bool {
    if (!this.need(1)) return false;
    let b = load<u8>(this.pos);
    if (b != 0xc2 && b != 0xc3) { this.fail(ReadError.Type); return false; }
    this.pos++;
    return b == 0xc3;
  }

  // Decode any integer encoding. Returns the 64-bit two's complement value;
  // `intNeg` tells whether it is negative. Sets err on failure.
  private intNeg: bool = false;
  private readIntVal(): u64 {
    if (!this.need(1)) return 0;
    let b = <u32>load<u8>(this.pos);
    if (b <= 0x7f) { this.intNeg = false; this.pos++; return <u64>b; }
    if (b >= 0xe0) { this.intNeg = true; this.pos++; return <u64><i64><i8>b; }
    let n: usize;
    let signed = false;
    switch (b) {
      case 0xcc: n = 1; break;
      case 0xcd: n = 2; break;
      case 0xce: n = 4; break;
      case 0xcf: n = 8; break;
      case 0xd0: n = 1; signed = true; break;
      case 0xd1: n = 2; signed = true; break;
      case 0xd2: n = 4; signed = true; break;
      case 0xd3: n = 8; signed = true; break;
      default: this.fail(ReadError.Type); return 0;
    }
    if (!this.need(1 + n)) return 0;
    let x = ben(this.pos + 1, n);
    if (signed && n < 8) {
      let shift = <u64>(64 - 8 * n);
      x = <u64>((<i64>(x << shift)) >> shift); // sign-extend
    }
    this.intNeg = signed && <i64>x < 0;
    this.pos += 1 + n;
    return x;
  }

  /** Consume an integer of any encoding as i64. uint64 values above
   *  i64.MAX_VALUE set ReadError.Range. 0 on error. */
  readInt(): i64 {
    let v = this.readIntVal();
    if (this.err != ReadError.Ok) return 0;
    if (!this.intNeg && v > <u64>i64.MAX_VALUE) { this.fail(ReadError.Range); return 0; }
    return <i64>v;
  }

  /** Consume a non-negative integer of any encoding as u64. Negative values
   *  set ReadError.Range. 0 on error. */
  readUint(): u64 {
    let v = this.readIntVal();
    if (this.err != ReadError.Ok) return 0;
    if (this.intNeg) { this.fail(ReadError.Range); return 0; }
    return v;
  }

  /** Consume an integer that must fit an i32 (ReadError.Range otherwise). */
  readI32(): i32 {
    let v = this.readInt();
    if (v < <i64>i32.MIN_VALUE || v > <i64>i32.MAX_VALUE) { this.fail(ReadError.Range); return 0; }
    return <i32>v;
  }

  /** Consume a float32 or float64 (0 on error). */
  readFloat(): f64 {
    if (!this.need(1)) return 0;
    let b = load<u8>(this.pos);
    if (b == 0xca) {
      if (!this.need(5)) return 0;
      let f = reinterpret<f32>(be32(this.pos + 1));
      this.pos += 5;
      return <f64>f;
    }
    if (b == 0xcb) {
      if (!this.need(9)) return 0;
      let d = reinterpret<f64>(be64(this.pos + 1));
      this.pos += 9;
      return d;
    }
    this.fail(ReadError.Type);
    return 0;
  }

  /** Consume any number (integer or float) as f64. */
  readNumber(): f64 {
    let t = this.peek();
    if (t == Type.Float) return this.readFloat();
    if (t == Type.Int) {
      let v = this.readIntVal();
      if (this.err != ReadError.Ok) return 0;
      return this.intNeg ? <f64><i64>v : <f64>v;
    }
    if (this.need(1)) this.fail(ReadError.Type);
    return 0;
  }

  // Consume a length-prefixed payload: `hdr` header bytes (tag included)
  // whose last `lenBytes` bytes are its big-endian length.
  private readLp(hdr: usize, lenBytes: usize): Span {
    if (!this.need(hdr)) return new Span();
    let n = <usize>ben(this.pos + hdr - lenBytes, lenBytes);
    if (this.end - this.pos - hdr < n) { this.fail(ReadError.Eof); return new Span(); }
    let s = new Span(this.pos + hdr, n);
    this.pos += hdr + n;
    return s;
  }

  /** Address of the UTF-8 bytes of the str that readStrRaw() consumed. */
  strPtr: usize = 0;

  /** Consume a str without allocating: returns its length in bytes, which
   *  start at `this.strPtr` (0 and strPtr = 0 on error). */
  readStrRaw(): usize {
    this.strPtr = 0;
    if (!this.need(1)) return 0;
    let b = <u32>load<u8>(this.pos);
    let hdr: usize;
    let n: usize;
    if ((b & 0xe0) == 0xa0) { hdr = 1; n = <usize>(b & 0x1f); }
    else if (b == 0xd9) { if (!this.need(2)) return 0; hdr = 2; n = <usize>load<u8>(this.pos + 1); }
    else if (b == 0xda) { if (!this.need(3)) return 0; hdr = 3; n = <usize>be16(this.pos + 1); }
    else if (b == 0xdb) { if (!this.need(5)) return 0; hdr = 5; n = <usize>be32(this.pos + 1); }
    else { this.fail(ReadError.Type); return 0; }
    if (this.end - this.pos - hdr < n) { this.fail(ReadError.Eof); return 0; }
    this.strPtr = this.pos + hdr;
    this.pos += hdr + n;
    return n;
  }

  /** Consume a str (fixstr, str8/16/32): its UTF-8 bytes, not copied.
   *  Empty Span on error. */
  readStrSpan(): Span {
    let n = this.readStrRaw();
    return new Span(this.strPtr, n);
  }

  /** Consume a str, decoded into a string ("" on error). */
  readStr(): string {
    let s = this.readStrSpan();
    return s.len ? s.toString() : "";
  }

  /** Consume a bin (bin8/16/32): its payload, not copied. Empty on error. */
  readBinSpan(): Span {
    if (!this.need(1)) return new Span();
    let b = <u32>load<u8>(this.pos);
    if (b == 0xc4) return this.readLp(2, 1);
    if (b == 0xc5) return this.readLp(3, 2);
    if (b == 0xc6) return this.readLp(5, 4);
    this.fail(ReadError.Type);
    return new Span();
  }

  /** Consume a bin, copied into a Uint8Array (empty on error). */
  readBin(): Uint8Array {
    return this.readBinSpan().toBytes();
  }

  /** Consume an ext (fixext1..16, ext8/16/32). */
  readExt(): Ext {
    if (!this.need(1)) return new Ext();
    let b = <u32>load<u8>(this.pos);
    let fixed: usize = 0;
    switch (b) {
      case 0xd4: fixed = 1; break;
      case 0xd5: fixed = 2; break;
      case 0xd6: fixed = 4; break;
      case 0xd7: fixed = 8; break;
      case 0xd8: fixed = 16; break;
      case 0xc7: case 0xc8: case 0xc9: break;
      default: this.fail(ReadError.Type); return new Ext();
    }
    if (fixed) {
      if (!this.need(2 + fixed)) return new Ext();
      let e = new Ext(load<i8>(this.pos + 1), new Span(this.pos + 2, fixed));
      this.pos += 2 + fixed;
      return e;
    }
    let lenBytes: usize = b == 0xc7 ? 1 : b == 0xc8 ? 2 : 4;
    let hdr: usize = 2 + lenBytes; // tag, length, type
    if (!this.need(hdr)) return new Ext();
    let n = <usize>ben(this.pos + 1, lenBytes);
    if (this.end - this.pos - hdr < n) { this.fail(ReadError.Eof); return new Ext(); }
    let e = new Ext(load<i8>(this.pos + hdr - 1), new Span(this.pos + hdr, n));
    this.pos += hdr + n;
    return e;
  }

  /** Consume an array header; returns the element count (0 on error). Read
   *  or skip() each element next. */
  readArray(): u32 {
    return this.readContainer(0x90, 0xdc, 1);
  }

  /** Consume a map header; returns the number of key/value PAIRS (0 on
   *  error). 2*n values follow: key, value, key, value, ... */
  readMap(): u32 {
    return this.readContainer(0x80, 0xde, 2);
  }

  private readContainer(fix: u32, tag16: u32, perItem: u64): u32 {
    if (!this.need(1)) return 0;
    let b = <u32>load<u8>(this.pos);
    let n: u32;
    let hdr: usize;
    if ((b & 0xf0) == fix) { n = b & 0x0f; hdr = 1; }
    else if (b == tag16) { if (!this.need(3)) return 0; n = be16(this.pos + 1); hdr = 3; }
    else if (b == tag16 + 1) { if (!this.need(5)) return 0; n = be32(this.pos + 1); hdr = 5; }
    else { this.fail(ReadError.Type); return 0; }
    // every value takes at least one byte
    if (perItem * <u64>n > <u64>(this.end - this.pos - hdr)) { this.fail(ReadError.Eof); return 0; }
    this.pos += hdr;
    return n;
  }

  /** Skip one complete value of any type (nested arrays/maps and ext
   *  included). Iterative, so deep nesting cannot overflow the stack.
   *  Returns false on error (err set). */
  skip(): bool {
    let pending: u64 = 1; // values still to skip
    while (pending) {
      if (!this.need(1)) return false;
      let b = <u32>load<u8>(this.pos);
      pending--;
      if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) { this.pos++; continue; }
      let hdr: usize = 1;
      let lenBytes: usize = 0;
      let fixed: usize = 0;
      let children: u64 = 0;
      if ((b & 0xf0) == 0x80) children = <u64>(b & 0x0f) << 1;
      else if ((b & 0xf0) == 0x90) children = <u64>(b & 0x0f);
      else if ((b & 0xe0) == 0xa0) fixed = <usize>(b & 0x1f);
      else {
        switch (b) {
          case 0xc4: case 0xd9: hdr = 2; lenBytes = 1; break; // bin8, str8
          case 0xc5: case 0xda: hdr = 3; lenBytes = 2; break; // bin16, str16
          case 0xc6: case 0xdb: hdr = 5; lenBytes = 4; break; // bin32, str32
          case 0xc7: hdr = 3; lenBytes = 1; break;            // ext8: tag len type
          case 0xc8: hdr = 4; lenBytes = 2; break;            // ext16
          case 0xc9: hdr = 6; lenBytes = 4; break;            // ext32
          case 0xca: fixed = 4; break;                        // float32
          case 0xcb: fixed = 8; break;                        // float64
          case 0xcc: case 0xd0: fixed = 1; break;
          case 0xcd: case 0xd1: fixed = 2; break;
          case 0xce: case 0xd2: fixed = 4; break;
          case 0xcf: case 0xd3: fixed = 8; break;
          case 0xd4: fixed = 2; break;                        // fixext1: type + 1
          case 0xd5: fixed = 3; break;
          case 0xd6: fixed = 5; break;
          case 0xd7: fixed = 9; break;
          case 0xd8: fixed = 17; break;
          case 0xdc: case 0xde: hdr = 3; break;               // array16, map16
          case 0xdd: case 0xdf: hdr = 5; break;               // array32, map32
          default: this.fail(ReadError.Invalid); return false; // 0xc1
        }
        if (b >= 0xdc) {
          if (!this.need(hdr)) return false;
          let n = ben(this.pos + 1, hdr - 1);
          children = b >= 0xde ? n << 1 : n;
        }
      }
      if (!this.need(hdr)) return false;
      let payload = <u64>fixed;
      if (lenBytes) payload = ben(this.pos + 1, lenBytes);
      if (payload > <u64>(this.end - this.pos - hdr)) { this.fail(ReadError.Eof); return false; }
      this.pos += hdr + <usize>payload;
      pending += children;
      // every pending value needs at least one byte
      if (pending > <u64>(this.end - this.pos)) { this.fail(ReadError.Eof); return false; }
    }
    return true;
  }

  /** Consume one complete value and return its raw msgpack bytes (e.g. to
   *  copy it verbatim with Writer.writeRaw). Empty Span on error. */
  readRaw(): Span {
    let start = this.pos;
    if (!this.skip()) return new Span();
    return new Span(start, this.pos - start);
  }

  /** Look up `key` in the map this reader is positioned at, without moving
   *  this reader. Returns a reader spanning exactly the value, or null if
   *  the key is absent, this is not a map, or the map is malformed.
   *  Non-string keys are skipped. */
  find(key: string): Reader | null {
    if (this.peek() != Type.Map) return null;
    let m = this.clone();
    let n = m.readMap();
    for (let i: u32 = 0; i < n && m.err == ReadError.Ok; i++) {
      let match = false;
      if (m.peek() == Type.Str) {
        let kl = m.readStrRaw();
        match = m.err == ReadError.Ok && utf8Equals(m.strPtr, kl, key);
      } else {
        m.skip();
      }
      let start = m.pos;
      if (!m.skip()) return null;
      if (match) return new Reader(start, m.pos - start);
    }
    return null;
  }

  /** True if this is a map containing `key`. */
  has(key: string): bool {
    return this.find(key) != null;
  }

  /** map[key] as a string, or null if absent / not a str. */
  getStr(key: string): string | null {
    let v = this.find(key);
    if (v == null || v.peek() != Type.Str) return null;
    return v.readStr();
  }

  /** map[key] as i64, or `def` if absent / not an integer / out of range. */
  getInt(key: string, def: i64 = 0): i64 {
    let v = this.find(key);
    if (v == null || v.peek() != Type.Int) return def;
    let x = v.readInt();
    return v.err != ReadError.Ok ? def : x;
  }

  /** map[key] as f64 (integers converted), or `def`. */
  getNumber(key: string, def: f64 = 0): f64 {
    let v = this.find(key);
    if (v == null) return def;
    let t = v.peek();
    if (t != Type.Int && t != Type.Float) return def;
    let x = v.readNumber();
    return v.err != ReadError.Ok ? def : x;
  }

  /** map[key] as bool, or `def` if absent / not a bool. */
  getBool(key: string, def: bool = false): bool {
    let v = this.find(key);
    if (v == null || v.peek() != Type.Bool) return def;
    return v.readBool();
  }
}

// ============================================================================
// 4. msgpack writer
// ============================================================================

/** A msgpack writer into a heap buffer that grows as needed. All integer,
 *  str, bin, array, map and ext headers use the smallest encoding. */
export class Writer {
  /** Start of the bytes written so far (0 until the first write). */
  buf: usize = 0;
  /** Bytes written. */
  len: usize = 0;
  /** Bytes allocated. */
  cap: usize = 0;
  /** true once memory could not grow (further writes are ignored). */
  err: bool = false;
  /** true once fail()/failWith() replaced the result with an error. */
  failed: bool = false;
  // heapTop() right after our last (re)allocation
  private top: usize = 0;

  /** Make room for n more bytes (grows to max(2*cap, needed)). Returns
   *  false (and sets err) if memory cannot grow. Call it before a big
   *  writeRaw to size the buffer once. */
  reserve(n: usize): bool {
    if (this.err) return false;
    let need = this.len + n;
    if (need < n || need > MAX_BLOCK) { this.err = true; return false; }
    if (need <= this.cap) return true;
    let cap = this.cap < 32 ? <usize>64 : min(this.cap << 1, MAX_BLOCK);
    if (cap < need) cap = need;
    let top = this.buf != 0 ? heapTop() : 0;
    if (this.buf != 0 && top == this.top) {
      // our block is still the heap's last one: it grows in place
      if (!ensureEnd(this.buf + cap + 32)) {
        cap = need;
        if (!ensureEnd(this.buf + cap + 32)) { this.err = true; return false; }
      }
      this.buf = heap.realloc(this.buf, cap);
    } else {
      if (!ensureRoom(cap)) {
        cap = need;
        if (!ensureRoom(cap)) { this.err = true; return false; }
      }
      let nb = heap.alloc(cap);
      if (this.len) memory.copy(nb, this.buf, this.len);
      this.buf = nb;
    }
    this.top = heapTop();
    this.cap = cap;
    return true;
  }

  /** Forget everything written (keeps the buffer). */
  reset(): void {
    this.len = 0;
    this.err = false;
  }

  /** A copy of the bytes written. */
  toBytes(): Uint8Array {
    let a = new Uint8Array(<i32>this.len);
    if (this.len) memory.copy(a.dataStart, this.buf, this.len);
    return a;
  }

  // @ts-ignore: decorator
  @inline private put8(b: u32): void {
    if (this.reserve(1)) store<u8>(this.buf + this.len++, <u8>b);
  }

  // tag byte followed by the low n bytes of v, big-endian
  private putTagged(tag: u32, v: u64, n: usize): void {
    if (!this.reserve(1 + n)) return;
    let p = this.buf + this.len;
    store<u8>(p, <u8>tag);
    if (n == 1) store<u8>(p, <u8>v, 1);
    else if (n == 2) store<u16>(p, bswap<u16>(<u16>v), 1);
    else if (n == 4) store<u32>(p, bswap<u32>(<u32>v), 1);
    else store<u64>(p, bswap<u64>(v), 1);
    this.len += 1 + n;
  }

  /** Copy already-encoded msgpack bytes (e.g. a Span from readRaw). */
  writeRaw(ptr: usize, len: usize): void {
    if (!this.reserve(len)) return;
    memory.copy(this.buf + this.len, ptr, len);
    this.len += len;
  }

  /** writeRaw of a Span. */
  writeSpan(s: Span): void {
    this.writeRaw(s.ptr, s.len);
  }

  writeNil(): void {
    this.put8(0xc0);
  }

  writeBool(v: bool): void {
    this.put8(v ? 0xc3 : 0xc2);
  }

  /** Smallest encoding: positive fixint, uint8/16/32/64. */
  writeUint(v: u64): void {
    if (v <= 0x7f) this.put8(<u32>v);
    else if (v <= 0xff) this.putTagged(0xcc, v, 1);
    else if (v <= 0xffff) this.putTagged(0xcd, v, 2);
    else if (v <= 0xffffffff) this.putTagged(0xce, v, 4);
    else this.putTagged(0xcf, v, 8);
  }

  /** Smallest encoding: non-negative values as writeUint; negative ones as
   *  negative fixint, int8/16/32/64. */
  writeInt(v: i64): void {
    if (v >= 0) { this.writeUint(<u64>v); return; }
    if (v >= -32) this.put8(<u32>v & 0xff);
    else if (v >= -128) this.putTagged(0xd0, <u64>v, 1);
    else if (v >= -32768) this.putTagged(0xd1, <u64>v, 2);
    else if (v >= -2147483648) this.putTagged(0xd2, <u64>v, 4);
    else this.putTagged(0xd3, <u64>v, 8);
  }

  /** float64 */
  writeF64(v: f64): void {
    this.putTagged(0xcb, reinterpret<u64>(v), 8);
  }

  /** float32 */
  writeF32(v: f32): void {
    this.putTagged(0xca, <u64>reinterpret<u32>(v), 4);
  }

  /** Only the header of a str of `len` UTF-8 bytes; append the bytes with
   *  writeRaw (handy for building a string from pieces). */
  writeStrHeader(len: usize): void {
    if (len <= 31) this.put8(0xa0 | <u32>len);
    else if (len <= 0xff) this.putTagged(0xd9, <u64>len, 1);
    else if (len <= 0xffff) this.putTagged(0xda, <u64>len, 2);
    else this.putTagged(0xdb, <u64>len, 4);
  }

  /** A string, encoded as UTF-8 (lone surrogates become U+FFFD). */
  writeStr(s: string): void {
    let n = <usize>String.UTF8.byteLength(s);
    this.writeStrHeader(n);
    if (!this.reserve(n)) return;
    this.len += String.UTF8.encodeUnsafe(
      changetype<usize>(s), s.length, this.buf + this.len, false, String.UTF8.ErrorMode.REPLACE);
  }

  /** A str from UTF-8 bytes already in memory (e.g. a Span from readStrSpan). */
  writeStrUtf8(ptr: usize, len: usize): void {
    this.writeStrHeader(len);
    this.writeRaw(ptr, len);
  }

  /** Only the header of a bin of `len` bytes; append them with writeRaw. */
  writeBinHeader(len: usize): void {
    if (len <= 0xff) this.putTagged(0xc4, <u64>len, 1);
    else if (len <= 0xffff) this.putTagged(0xc5, <u64>len, 2);
    else this.putTagged(0xc6, <u64>len, 4);
  }

  /** A bin from bytes in memory. */
  writeBinRaw(ptr: usize, len: usize): void {
    this.writeBinHeader(len);
    this.writeRaw(ptr, len);
  }

  /** A bin from a byte array. */
  writeBin(data: Uint8Array): void {
    this.writeBinRaw(data.dataStart, <usize>data.length);
  }

  /** Array header: `n` values must follow. */
  writeArray(n: u32): void {
    if (n <= 15) this.put8(0x90 | n);
    else if (n <= 0xffff) this.putTagged(0xdc, <u64>n, 2);
    else this.putTagged(0xdd, <u64>n, 4);
  }

  /** Map header: `n` key/value PAIRS (2*n values) must follow. */
  writeMap(n: u32): void {
    if (n <= 15) this.put8(0x80 | n);
    else if (n <= 0xffff) this.putTagged(0xde, <u64>n, 2);
    else this.putTagged(0xdf, <u64>n, 4);
  }

  /** Ext value, smallest encoding (fixext when len is 1/2/4/8/16). */
  writeExt(type: i8, ptr: usize, len: usize): void {
    let t = <u64><u8>type;
    switch (<i32>len) {
      case 1: this.putTagged(0xd4, t, 1); break;
      case 2: this.putTagged(0xd5, t, 1); break;
      case 4: this.putTagged(0xd6, t, 1); break;
      case 8: this.putTagged(0xd7, t, 1); break;
      case 16: this.putTagged(0xd8, t, 1); break;
      default: {
        if (len <= 0xff) this.putTagged(0xc7, <u64>len, 1);
        else if (len <= 0xffff) this.putTagged(0xc8, <u64>len, 2);
        else this.putTagged(0xc9, <u64>len, 4);
        this.put8(<u32>t);
      }
    }
    this.writeRaw(ptr, len);
  }

  /** Any scalar by its static type: bool, integers, floats, string, Span
   *  (raw msgpack), Uint8Array (bin), or null (nil). */
  write<T>(v: T): void {
    if (isBoolean<T>()) this.writeBool(<bool>v);
    else if (isInteger<T>()) {
      if (isSigned<T>()) this.writeInt(<i64>v);
      else this.writeUint(<u64>v);
    } else if (isFloat<T>()) {
      if (sizeof<T>() == 4) this.writeF32(<f32>v);
      else this.writeF64(<f64>v);
    } else if (isNullable<T>() && changetype<usize>(v) == 0) this.writeNil();
    else if (isString<T>()) this.writeStr(changetype<string>(v));
    else if (v instanceof Span) this.writeSpan(changetype<Span>(v));
    else if (v instanceof Uint8Array) this.writeBin(changetype<Uint8Array>(v));
    else ERROR("Writer.write: unsupported type");
  }
}

// ============================================================================
// 5. guest ABI v1 glue
// ============================================================================

/** The request's "context". Strings are decoded from the request on first
 *  use. */
export class Context {
  /** context.memory_limit_mb: the function's memory limit. */
  memoryLimitMb: i64 = 0;
  /** context.deadline_ms: Unix epoch ms at which the host stops the
   *  invocation (Timeout); 0 if the host sent none. */
  deadlineMs: i64 = 0;

  // UTF-8 bytes of the strings, inside the request
  _ridPtr: usize = 0;
  _ridLen: usize = 0;
  _namePtr: usize = 0;
  _nameLen: usize = 0;
  _versionPtr: usize = 0;
  _versionLen: usize = 0;

  /** context.request_id: unique per invocation. */
  get requestId(): string { return String.UTF8.decodeUnsafe(this._ridPtr, this._ridLen); }
  /** context.function_name */
  get functionName(): string { return String.UTF8.decodeUnsafe(this._namePtr, this._nameLen); }
  /** context.function_version, e.g. "$LATEST" */
  get functionVersion(): string { return String.UTF8.decodeUnsafe(this._versionPtr, this._versionLen); }

  /** Milliseconds left before the host stops the invocation (negative once
   *  past the deadline; i64.MAX_VALUE if the request carried no deadline). */
  remainingMs(): i64 {
    if (this.deadlineMs <= 0) return i64.MAX_VALUE;
    return this.deadlineMs - nowMs();
  }
}

/** The handler: read the event, write ONE value to `out` (writing nothing
 *  answers nil), or call fail(). */
export type Handler = (event: Reader, ctx: Context, out: Writer) => void;

let handler: Handler | null = null;
let current: Writer | null = null;

/** Register the function's handler (once, at the top level of the entry
 *  file). */
export function register(fn: Handler): void {
  handler = fn;
}

/** Discard whatever the handler wrote and answer
 *    {"error": {"type": type, "message": message, <extraPairs more keys>}}
 *  The caller then writes `extraPairs` key/value pairs to the returned
 *  writer. The host reports it as FunctionError with error_type = type. */
export function failWith(type: string, message: string, extraPairs: u32): Writer {
  let c = current;
  let w = c != null ? c : new Writer();
  current = w;
  w.len = 0;
  w.err = false;
  w.failed = true;
  w.writeMap(1);
  w.writeStr("error");
  w.writeMap(2 + extraPairs);
  w.writeStr("type");
  w.writeStr(type);
  w.writeStr("message");
  w.writeStr(message);
  return w;
}

/** Answer {"error": {"type": type, "message": message}} instead of a result
 *  (then return from the handler). */
export function fail(type: string, message: string): void {
  failWith(type, message, 0);
}

// {"error":{"type":"OutOfMemory","message":"guest could not allocate"}},
// static so it can be returned when the heap cannot grow.
// @ts-ignore: memory.data
const OOM_RESPONSE: usize = memory.data<u8>([
  0x81, 0xa5, 0x65, 0x72, 0x72, 0x6f, 0x72, 0x82,
  0xa4, 0x74, 0x79, 0x70, 0x65,
  0xab, 0x4f, 0x75, 0x74, 0x4f, 0x66, 0x4d, 0x65, 0x6d, 0x6f, 0x72, 0x79,
  0xa7, 0x6d, 0x65, 0x73, 0x73, 0x61, 0x67, 0x65,
  0xb8, 0x67, 0x75, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6f, 0x75, 0x6c, 0x64, 0x20,
  0x6e, 0x6f, 0x74, 0x20, 0x61, 0x6c, 0x6c, 0x6f, 0x63, 0x61, 0x74, 0x65,
]);
const OOM_RESPONSE_LEN: u64 = 58;

// @ts-ignore: decorator
@inline function pack(ptr: usize, len: usize): u64 {
  return (<u64>ptr << 32) | <u64><u32>len;
}

// Parse the "context" map into c. Returns null or an error message.
function parseContext(r: Reader, c: Context): string | null {
  if (r.peek() != Type.Map) return "\"context\" is not a map";
  let n = r.readMap();
  for (let i: u32 = 0; i < n && r.err == ReadError.Ok; i++) {
    if (r.peek() != Type.Str) { r.skip(); r.skip(); continue; }
    let kl = r.readStrRaw();
    let kp = r.strPtr;
    if (r.err != ReadError.Ok) break;
    let which = 0;
    let name = "";
    if (kl == 10 && utf8Equals(kp, kl, "request_id")) { which = 1; name = "request_id"; }
    else if (kl == 13 && utf8Equals(kp, kl, "function_name")) { which = 2; name = "function_name"; }
    else if (kl == 16 && utf8Equals(kp, kl, "function_version")) { which = 3; name = "function_version"; }
    else if (kl == 15 && utf8Equals(kp, kl, "memory_limit_mb")) { which = 4; name = "memory_limit_mb"; }
    else if (kl == 11 && utf8Equals(kp, kl, "deadline_ms")) { which = 5; name = "deadline_ms"; }
    if (which == 0) { r.skip(); continue; } // unknown key: ignore its value
    if (which <= 3) {
      if (r.peek() != Type.Str) return "context." + name + " is not a string";
      let sl = r.readStrRaw();
      if (which == 1) { c._ridPtr = r.strPtr; c._ridLen = sl; }
      else if (which == 2) { c._namePtr = r.strPtr; c._nameLen = sl; }
      else { c._versionPtr = r.strPtr; c._versionLen = sl; }
    } else {
      if (r.peek() != Type.Int) return "context." + name + " is not an integer";
      let v = r.readInt();
      if (r.err == ReadError.Range) return "context." + name + " is out of range";
      if (which == 4) c.memoryLimitMb = v;
      else c.deadlineMs = v;
    }
  }
  return r.err != ReadError.Ok ? "request is not valid msgpack" : null;
}

/** ABI export: `len` writable bytes for the request, or 0 if memory cannot
 *  grow (the host then reports OutOfMemory). */
export function wasmhost_alloc(len: u32): usize {
  if (!ensureRoom(<usize>len)) return 0;
  return heap.alloc(<usize>len);
}

/** ABI export: handle the request at [ptr, ptr+len) and return
 *  (out_ptr << 32) | out_len. */
export function wasmhost_handle(ptr: usize, len: u32): u64 {
  let w = new Writer();
  current = w;
  let ctx = new Context();
  let r = new Reader(ptr, <usize>len);
  let event = new Reader(0, 0);
  let haveEvent = false;
  let haveContext = false;
  let bad: string | null = null;

  if (r.peek() != Type.Map) {
    bad = "request is not a msgpack map";
  } else {
    let n = r.readMap();
    for (let i: u32 = 0; i < n && r.err == ReadError.Ok && bad == null; i++) {
      if (r.peek() != Type.Str) { r.skip(); r.skip(); continue; }
      let kl = r.readStrRaw();
      let kp = r.strPtr;
      if (r.err != ReadError.Ok) break;
      if (kl == 5 && utf8Equals(kp, kl, "event")) {
        let start = r.pos;
        if (!r.skip()) break;
        event.pos = start;
        event.end = r.pos;
        haveEvent = true;
      } else if (kl == 7 && utf8Equals(kp, kl, "context")) {
        bad = parseContext(r, ctx);
        haveContext = true;
      } else {
        r.skip();
      }
    }
    if (bad == null && r.err != ReadError.Ok) bad = "request is not valid msgpack";
    if (bad == null && r.pos != r.end) bad = "trailing bytes after the request map";
    if (bad == null && !haveEvent) bad = "request has no \"event\" key";
    if (bad == null && !haveContext) bad = "request has no \"context\" key";
  }
  let fn = handler;
  if (bad == null && fn == null) {
    fail("NoHandler", "no handler registered: call register(handle) in the entry file");
  } else if (bad != null) {
    fail("InvalidRequest", bad);
  } else {
    if (!w.reserve(256)) return pack(OOM_RESPONSE, <usize>OOM_RESPONSE_LEN);
    store<u32>(w.buf, 0x6b6fa281); // 81 a2 6f 6b = {"ok":
    w.len = 4;
    fn!(event, ctx, w);
    if (w.err) return pack(OOM_RESPONSE, <usize>OOM_RESPONSE_LEN);
    if (w.failed) {
      // the error map must be complete: failWith(..., n) needs n more pairs
      let chk = new Reader(w.buf, w.len);
      if (!chk.skip() || chk.pos != chk.end) {
        fail("InvalidResult", "after fail() write nothing; after failWith(type, message, n) exactly n key/value pairs");
      }
    } else if (w.len == 4) {
      w.writeNil(); // handler wrote nothing: result is nil
    } else {
      let chk = new Reader(w.buf + 4, w.len - 4);
      if (!chk.skip() || chk.pos != chk.end) {
        fail("InvalidResult", "handler must write exactly one msgpack value");
      }
    }
  }
  if (w.err) return pack(OOM_RESPONSE, <usize>OOM_RESPONSE_LEN);
  return pack(w.buf, w.len);
}

//! wasmhost.zig - Zig guest SDK for wasmhost (guest ABI v1, see guests/ABI.md).
//!
//! A function is one handler plus one line that exports the ABI:
//!
//!     const std = @import("std");
//!     const wasmhost = @import("wasmhost");
//!
//!     pub const panic = wasmhost.panic; // optional, see "Panics" below
//!     comptime { wasmhost.exportHandler(handle); }
//!
//!     fn handle(event: wasmhost.Reader, ctx: *const wasmhost.Context, out: *wasmhost.Writer) !void {
//!         _ = ctx;
//!         const name = event.getStr("name") orelse
//!             return out.raise(error.ValidationError, "name is required");
//!         try out.write(.{ .greeting = name });
//!     }
//!
//! Build (guests/build.py does this for guests/zig/examples/*.zig):
//!
//!     python -m ziglang build-exe -target wasm32-wasi -O ReleaseFast -fstrip \
//!         --dep wasmhost -Mroot=handler.zig -Mwasmhost=guests/zig/wasmhost.zig \
//!         -fno-entry -rdynamic --stack 65536 -femit-bin=handler.wasm
//!
//! The handler gets `event`, a `Reader` spanning exactly the event's msgpack
//! bytes, the invocation `Context`, and `out`, a `Writer` to which it writes
//! exactly ONE msgpack value: its result. Instead of writing, it may return a
//! value (any type `Writer.write` accepts); writing nothing and returning void
//! answers `{"ok": nil}`. Outcomes:
//!
//!   * success                      -> {"ok": <the value>}
//!   * `return out.fail(T, msg)`    -> {"error": {"type": T, "message": msg}}
//!   * a returned Zig error `e`     -> {"error": {"type": @errorName(e),
//!                                      "message": <set by out.raise(e, msg)
//!                                                  or "error.<name>">}}
//!   * a panic                      -> the message goes to stderr, then a trap
//!
//! Contents:
//!   1. memory      (static arena + memory.grow bump allocator, `allocator`)
//!   2. Reader      (msgpack decoding: Type, Value, Reader, iterators)
//!   3. Writer      (msgpack encoding, `write(anytype)`, fail/raise)
//!   4. Context, clock (nowMs, remainingMs)
//!   5. stdout/stderr (print, eprint, stdout(), stderr(), logFn, panic)
//!   6. ABI glue    (exportHandler: wasmhost_alloc / wasmhost_handle)
//!
//! Memory: every invocation runs in a fresh instance, so nothing is ever
//! freed. Requests, context strings and the response live in a 64 KiB static
//! arena (`root.wasmhost_arena_size` overrides it) as long as they fit, so a
//! small invocation never grows linear memory. Bigger buffers are bump-
//! allocated straight from `memory.grow`, sized to the page (not to the next
//! power of two like std.heap.wasm_allocator), and the most recent allocation
//! grows in place, so growing the response buffer does not copy it.
//!
//! Panics: declare `pub const panic = wasmhost.panic;` in the root file. It
//! flushes stdout, writes "panic: <msg>" to stderr (the invocation log) and
//! traps (host error `Trap`). Without it, a module that can panic (an explicit
//! @panic, or safety checks in Debug/ReleaseSafe) gets Zig's default handler,
//! which pulls in std.Io: 27 WASI imports (all allowed) and ~35 KiB more code.
//!
//! Logging: `std.log` works if the root file also declares
//! `pub const std_options: std.Options = .{ .logFn = wasmhost.logFn };`.

const std = @import("std");
const builtin = @import("builtin");
const root = @import("root");

pub const abi_version = 1;

const is_wasm = builtin.target.cpu.arch.isWasm();
const is_wasi = builtin.os.tag == .wasi;

// ============================================================================
// 1. memory
// ============================================================================

/// Size of the static arena for the request, context and first response
/// bytes. Override with `pub const wasmhost_arena_size = ...;` in the root file.
pub const arena_size: usize = if (@hasDecl(root, "wasmhost_arena_size")) root.wasmhost_arena_size else 64 * 1024;

const wasm_page = 64 * 1024;

var arena: [arena_size]u8 align(16) = undefined;
var arena_used: usize = 0;
/// Free space [heap_next, heap_end) at the top of linear memory, obtained by
/// memory.grow (on native test builds: from the page allocator).
var heap_next: usize = 0;
var heap_end: usize = 0;

fn alignUp(x: usize, a: usize) ?usize {
    const r = x +% (a - 1);
    if (r < x) return null;
    return r & ~(a - 1);
}

/// `n` bytes aligned to `a` (a power of two <= 64 KiB), or null.
fn bump(n: usize, a: usize) ?[*]u8 {
    const base = @intFromPtr(&arena);
    if (alignUp(base + arena_used, a)) |start| {
        const off = start - base;
        if (off <= arena_size and n <= arena_size - off) {
            arena_used = off + n;
            return @ptrFromInt(start);
        }
    }
    return heapBump(n, a);
}

fn heapBump(n: usize, a: usize) ?[*]u8 {
    if (heap_next != 0) {
        if (alignUp(heap_next, a)) |start| {
            if (start <= heap_end and n <= heap_end - start) {
                heap_next = start + n;
                return @ptrFromInt(start);
            }
        }
    }
    if (is_wasm) {
        const size: usize = @wasmMemorySize(0) * wasm_page;
        // Continue the current region if nothing else grew memory since.
        const start = if (heap_end == size and heap_next != 0) (alignUp(heap_next, a) orelse return null) else size;
        const end = @as(u64, start) + n;
        if (end > std.math.maxInt(u32)) return null;
        if (end > size) {
            const pages: usize = @intCast((end - size + wasm_page - 1) / wasm_page);
            if (@wasmMemoryGrow(0, pages) < 0) return null;
            heap_end = size + pages * wasm_page;
        }
        heap_next = @intCast(end);
        return @ptrFromInt(start);
    } else {
        const chunk = @max(n + a, 1 << 20);
        const mem = std.heap.page_allocator.alloc(u8, chunk) catch return null;
        const start = alignUp(@intFromPtr(mem.ptr), a).?;
        heap_end = @intFromPtr(mem.ptr) + chunk;
        heap_next = start + n;
        return @ptrFromInt(start);
    }
}

/// Grow or shrink the allocation `buf` to `new_len` bytes without moving it.
/// Works for the most recent allocation (and any shrink); returns false otherwise.
fn extend(buf: []u8, new_len: usize) bool {
    const p = @intFromPtr(buf.ptr);
    const end = p + buf.len;
    const base = @intFromPtr(&arena);
    if (end == base + arena_used) {
        if (new_len > arena_size - (p - base)) return new_len <= buf.len;
        arena_used = p - base + new_len;
        return true;
    }
    if (heap_next != 0 and end == heap_next) {
        const new_end = @as(u64, p) + new_len;
        if (new_end > heap_end) {
            if (!is_wasm) return false;
            const size: usize = @wasmMemorySize(0) * wasm_page;
            if (heap_end != size or new_end > std.math.maxInt(u32)) return false;
            const pages: usize = @intCast((new_end - size + wasm_page - 1) / wasm_page);
            if (@wasmMemoryGrow(0, pages) < 0) return false;
            heap_end = size + pages * wasm_page;
        }
        heap_next = @intCast(new_end);
        return true;
    }
    return new_len <= buf.len;
}

/// Release `buf` if it is the most recent allocation (otherwise a no-op).
fn release(buf: []u8) void {
    const p = @intFromPtr(buf.ptr);
    const base = @intFromPtr(&arena);
    if (p + buf.len == base + arena_used) {
        arena_used = p - base;
    } else if (heap_next != 0 and p + buf.len == heap_next) {
        heap_next = p;
    }
}

/// A `std.mem.Allocator` over the SDK's bump allocator: static arena first,
/// then memory.grow. `free` only reclaims the most recent allocation, and
/// resize works in place for it. Every instance is thrown away after one
/// invocation, so never freeing is fine.
pub const allocator: std.mem.Allocator = .{ .ptr = undefined, .vtable = &bump_vtable };

const bump_vtable: std.mem.Allocator.VTable = .{
    .alloc = vtAlloc,
    .resize = vtResize,
    .remap = vtRemap,
    .free = vtFree,
};

fn vtAlloc(_: *anyopaque, len: usize, alignment: std.mem.Alignment, _: usize) ?[*]u8 {
    return bump(len, @max(alignment.toByteUnits(), 1));
}
fn vtResize(_: *anyopaque, memory: []u8, _: std.mem.Alignment, new_len: usize, _: usize) bool {
    return extend(memory, new_len);
}
fn vtRemap(_: *anyopaque, memory: []u8, _: std.mem.Alignment, new_len: usize, _: usize) ?[*]u8 {
    return if (extend(memory, new_len)) memory.ptr else null;
}
fn vtFree(_: *anyopaque, memory: []u8, _: std.mem.Alignment, _: usize) void {
    release(memory);
}

// ============================================================================
// 2. msgpack reader
// ============================================================================

/// Errors of the reader. A failed read does not move the reader.
pub const ReadError = error{
    /// The value runs past the end of the input.
    EndOfInput,
    /// The value is not of the requested type.
    WrongType,
    /// The integer does not fit the requested Zig type.
    OutOfRange,
    /// Reserved byte 0xc1.
    InvalidMsgpack,
};

/// Type of a msgpack value as seen by `Reader.peek`. `.int` covers every
/// integer encoding, `.float` float32 and float64.
pub const Type = enum { nil, bool, int, float, str, bin, array, map, ext };

/// An ext value: its type byte and payload.
pub const Ext = struct { type: i8, data: []const u8 };

/// One decoded msgpack item (`Reader.next`). For `.array`/`.map` only the
/// header is consumed: the element count (map: number of key/value PAIRS)
/// follows, and the elements come next in the reader. Strings, bins and ext
/// payloads point into the input.
pub const Value = union(enum) {
    nil,
    bool: bool,
    /// Any integer that fits i64.
    int: i64,
    /// Only for unsigned values above maxInt(i64).
    uint: u64,
    float: f64,
    str: []const u8,
    bin: []const u8,
    array: u32,
    map: u32,
    ext: Ext,
};

/// Header of the next value: `hdr` bytes of header, then `len` payload bytes
/// (scalars, str, bin, ext) or `len` elements (array) / pairs (map).
const Head = struct { t: Type, hdr: u32, len: u32 };

/// Big-endian integer at p[0..@sizeOf(T)]: one unaligned load + byteswap
/// (std.mem.readInt becomes a byte loop in ReleaseSmall).
inline fn be(comptime T: type, p: []const u8) T {
    const v = @as(*align(1) const T, @ptrCast(p[0..@sizeOf(T)])).*;
    return if (builtin.target.cpu.arch.endian() == .little) @byteSwap(v) else v;
}

/// Byte equality; std.mem.eql is slow in ReleaseSmall on wasm.
fn eql(a: []const u8, b: []const u8) bool {
    if (a.len != b.len) return false;
    for (a, b) |x, y| if (x != y) return false;
    return true;
}

/// What the first byte of a value says: its type, header size, how many of
/// the header bytes after the tag hold a big-endian length (0, 1, 2 or 4) and,
/// if there are none, the fixed length (payload bytes, or elements/pairs).
const Tag = extern struct { t: u8, hdr: u8, lenbytes: u8, fixed: u8 };
const tag_invalid: u8 = 0xff;

const tag_table: [256]Tag = blk: {
    @setEvalBranchQuota(10000);
    var tab: [256]Tag = undefined;
    for (0..256) |i| {
        const b: u8 = @intCast(i);
        const T = struct {
            fn mk(t: Type, hdr: u8, lenbytes: u8, fixed: u8) Tag {
                return .{ .t = @backingInt(t), .hdr = hdr, .lenbytes = lenbytes, .fixed = fixed };
            }
        };
        tab[i] = switch (b) {
            0x00...0x7f, 0xe0...0xff => T.mk(.int, 1, 0, 0),
            0x80...0x8f => T.mk(.map, 1, 0, b & 0x0f),
            0x90...0x9f => T.mk(.array, 1, 0, b & 0x0f),
            0xa0...0xbf => T.mk(.str, 1, 0, b & 0x1f),
            0xc0 => T.mk(.nil, 1, 0, 0),
            0xc1 => .{ .t = tag_invalid, .hdr = 1, .lenbytes = 0, .fixed = 0 },
            0xc2, 0xc3 => T.mk(.bool, 1, 0, 0),
            0xc4 => T.mk(.bin, 2, 1, 0),
            0xc5 => T.mk(.bin, 3, 2, 0),
            0xc6 => T.mk(.bin, 5, 4, 0),
            0xc7 => T.mk(.ext, 3, 1, 0), // tag, length, type byte
            0xc8 => T.mk(.ext, 4, 2, 0),
            0xc9 => T.mk(.ext, 6, 4, 0),
            0xca => T.mk(.float, 1, 0, 4),
            0xcb => T.mk(.float, 1, 0, 8),
            0xcc, 0xd0 => T.mk(.int, 1, 0, 1),
            0xcd, 0xd1 => T.mk(.int, 1, 0, 2),
            0xce, 0xd2 => T.mk(.int, 1, 0, 4),
            0xcf, 0xd3 => T.mk(.int, 1, 0, 8),
            0xd4 => T.mk(.ext, 2, 0, 1), // fixext: tag, type byte
            0xd5 => T.mk(.ext, 2, 0, 2),
            0xd6 => T.mk(.ext, 2, 0, 4),
            0xd7 => T.mk(.ext, 2, 0, 8),
            0xd8 => T.mk(.ext, 2, 0, 16),
            0xd9 => T.mk(.str, 2, 1, 0),
            0xda => T.mk(.str, 3, 2, 0),
            0xdb => T.mk(.str, 5, 4, 0),
            0xdc => T.mk(.array, 3, 2, 0),
            0xdd => T.mk(.array, 5, 4, 0),
            0xde => T.mk(.map, 3, 2, 0),
            0xdf => T.mk(.map, 5, 4, 0),
        };
    }
    break :blk tab;
};

/// Decode the header of the value at bytes[pos..], bounds-checked: scalar,
/// str, bin and ext payloads lie inside `bytes`; an array/map has at most as
/// many elements as bytes left (every element takes at least one byte).
inline fn headAt(bytes: []const u8, pos: usize) ReadError!Head {
    if (pos >= bytes.len) return error.EndOfInput;
    const tag = tag_table[bytes[pos]];
    if (tag.t == tag_invalid) return error.InvalidMsgpack;
    const left = bytes.len - pos;
    if (left < tag.hdr) return error.EndOfInput;
    const p = bytes[pos + 1 ..];
    const len: u32 = switch (tag.lenbytes) {
        0 => tag.fixed,
        1 => p[0],
        2 => be(u16, p),
        else => be(u32, p),
    };
    const t: Type = @fromBackingInt(@intCast(tag.t));
    // map: 2*len values, else len bytes or values
    const min_bytes = if (t == .map) @as(u64, len) * 2 else len;
    if (min_bytes > left - tag.hdr) return error.EndOfInput;
    return .{ .t = t, .hdr = tag.hdr, .len = len };
}

/// A cursor over msgpack bytes. Cheap to copy: copying a Reader forks the
/// cursor. Reads consume one value (or one array/map header) and fail with a
/// `ReadError` without moving. Strings and bins are slices into the input.
pub const Reader = struct {
    bytes: []const u8,
    pos: usize = 0,

    pub fn init(bytes: []const u8) Reader {
        return .{ .bytes = bytes };
    }

    /// The bytes not read yet.
    pub fn remaining(r: Reader) []const u8 {
        return r.bytes[r.pos..];
    }

    pub fn atEnd(r: Reader) bool {
        return r.pos >= r.bytes.len;
    }

    /// Type of the next value without consuming it; null at the end of the
    /// input, on a truncated header, or on the reserved byte 0xc1.
    pub fn peek(r: Reader) ?Type {
        const h = headAt(r.bytes, r.pos) catch return null;
        return h.t;
    }

    fn head(r: *const Reader, t: Type) ReadError!Head {
        const h = try headAt(r.bytes, r.pos);
        if (h.t != t) return error.WrongType;
        return h;
    }

    pub fn readNil(r: *Reader) ReadError!void {
        _ = try r.head(.nil);
        r.pos += 1;
    }

    pub fn readBool(r: *Reader) ReadError!bool {
        _ = try r.head(.bool);
        r.pos += 1;
        return r.bytes[r.pos - 1] == 0xc3;
    }

    /// An integer as sign + two's complement bits, and its encoded size.
    const IntVal = struct { neg: bool, v: u64, size: usize };

    fn intVal(r: *const Reader) ReadError!IntVal {
        const h = try r.head(.int);
        const b = r.bytes[r.pos];
        const p = r.bytes[r.pos + 1 ..];
        const size = 1 + h.len;
        if (b <= 0x7f) return .{ .neg = false, .v = b, .size = 1 };
        if (b >= 0xe0) return .{ .neg = true, .v = @bitCast(@as(i64, @as(i8, @bitCast(b)))), .size = 1 };
        if (b <= 0xcf) return .{ .neg = false, .size = size, .v = switch (h.len) {
            1 => p[0],
            2 => be(u16, p),
            4 => be(u32, p),
            else => be(u64, p),
        } };
        const s: i64 = switch (h.len) {
            1 => @as(i8, @bitCast(p[0])),
            2 => be(i16, p),
            4 => be(i32, p),
            else => be(i64, p),
        };
        return .{ .neg = s < 0, .v = @bitCast(s), .size = size };
    }

    /// An integer of any msgpack encoding, range-checked into `T` (any Zig
    /// integer type up to 64 bits): `try r.readInt(i64)`, `try r.readInt(u8)`.
    pub fn readInt(r: *Reader, comptime T: type) ReadError!T {
        const iv = try r.intVal();
        const out: T = if (iv.neg)
            std.math.cast(T, @as(i64, @bitCast(iv.v))) orelse return error.OutOfRange
        else
            std.math.cast(T, iv.v) orelse return error.OutOfRange;
        r.pos += iv.size;
        return out;
    }

    /// A float32 or float64 as f64 (integers are WrongType; see readNumber).
    pub fn readFloat(r: *Reader) ReadError!f64 {
        const h = try r.head(.float);
        const p = r.bytes[r.pos + 1 ..];
        const v: f64 = if (h.len == 4) @as(f32, @bitCast(be(u32, p))) else @bitCast(be(u64, p));
        r.pos += 1 + h.len;
        return v;
    }

    /// Any number (integer or float) as f64.
    pub fn readNumber(r: *Reader) ReadError!f64 {
        if (r.peek() == .int) {
            const iv = try r.intVal();
            r.pos += iv.size;
            return if (iv.neg) @floatFromInt(@as(i64, @bitCast(iv.v))) else @floatFromInt(iv.v);
        }
        return r.readFloat();
    }

    fn readSpan(r: *Reader, t: Type) ReadError![]const u8 {
        const h = try r.head(t);
        const start = r.pos + h.hdr;
        r.pos = start + h.len;
        return r.bytes[start..r.pos];
    }

    /// A str (fixstr, str8/16/32): a slice into the input (not validated as UTF-8).
    pub fn readStr(r: *Reader) ReadError![]const u8 {
        return r.readSpan(.str);
    }

    /// A bin (bin8/16/32): a slice into the input.
    pub fn readBin(r: *Reader) ReadError![]const u8 {
        return r.readSpan(.bin);
    }

    /// An ext (fixext1..16, ext8/16/32).
    pub fn readExt(r: *Reader) ReadError!Ext {
        const h = try r.head(.ext);
        const t: i8 = @bitCast(r.bytes[r.pos + h.hdr - 1]);
        const start = r.pos + h.hdr;
        r.pos = start + h.len;
        return .{ .type = t, .data = r.bytes[start..r.pos] };
    }

    /// An array header; returns the element count. Read or skip each element.
    pub fn readArray(r: *Reader) ReadError!u32 {
        const h = try r.head(.array);
        r.pos += h.hdr;
        return h.len;
    }

    /// A map header; returns the number of key/value PAIRS (2*n values follow).
    pub fn readMap(r: *Reader) ReadError!u32 {
        const h = try r.head(.map);
        r.pos += h.hdr;
        return h.len;
    }

    /// Skip one complete value (nested arrays/maps included). Iterative, so
    /// deep nesting cannot overflow the stack.
    pub fn skip(r: *Reader) ReadError!void {
        const bytes = r.bytes;
        var p = r.pos;
        var pending: u64 = 1;
        while (pending > 0) {
            const b = if (p < bytes.len) bytes[p] else return error.EndOfInput;
            pending -= 1;
            // fast path: one-byte values
            if (b <= 0x7f or b >= 0xe0 or b == 0xc0 or b == 0xc2 or b == 0xc3) {
                p += 1;
                continue;
            }
            const h = try headAt(bytes, p);
            p += h.hdr;
            switch (h.t) {
                .array => pending += h.len,
                .map => pending += @as(u64, h.len) * 2,
                else => p += h.len,
            }
            // every pending value takes at least one byte
            if (pending > bytes.len - p) return error.EndOfInput;
        }
        r.pos = p;
    }

    /// Consume one complete value and return its encoded bytes (for
    /// `Writer.writeRaw`, i.e. copying it verbatim).
    pub fn readRaw(r: *Reader) ReadError![]const u8 {
        const start = r.pos;
        try r.skip();
        return r.bytes[start..r.pos];
    }

    /// A Reader spanning exactly the next value; consumes it.
    pub fn readValueReader(r: *Reader) ReadError!Reader {
        return Reader.init(try r.readRaw());
    }

    /// Decode the next item (a scalar, or an array/map header).
    pub fn next(r: *Reader) ReadError!Value {
        const h = try headAt(r.bytes, r.pos);
        return switch (h.t) {
            .nil => blk: {
                r.pos += 1;
                break :blk .nil;
            },
            .bool => .{ .bool = try r.readBool() },
            .int => blk: {
                const iv = try r.intVal();
                r.pos += iv.size;
                if (!iv.neg and iv.v > std.math.maxInt(i64)) break :blk .{ .uint = iv.v };
                break :blk .{ .int = @bitCast(iv.v) };
            },
            .float => .{ .float = try r.readFloat() },
            .str => .{ .str = try r.readStr() },
            .bin => .{ .bin = try r.readBin() },
            .ext => .{ .ext = try r.readExt() },
            .array => .{ .array = try r.readArray() },
            .map => .{ .map = try r.readMap() },
        };
    }

    /// Look up `key` in the map at the reader's position (the reader is not
    /// moved). Returns a Reader spanning exactly the value, or null if the key
    /// is absent or this is not a (well-formed) map. Non-string keys are skipped.
    pub fn get(r: Reader, key: []const u8) ?Reader {
        var m = r;
        const n = m.readMap() catch return null;
        var i: u32 = 0;
        while (i < n) : (i += 1) {
            const match = if (m.readStr()) |k| eql(k, key) else |_| blk: {
                m.skip() catch return null;
                break :blk false;
            };
            const v = m.readValueReader() catch return null;
            if (match) return v;
        }
        return null;
    }

    pub fn has(r: Reader, key: []const u8) bool {
        return r.get(key) != null;
    }

    /// map[key] as a string (slice into the input), or null if absent / not a str.
    pub fn getStr(r: Reader, key: []const u8) ?[]const u8 {
        var v = r.get(key) orelse return null;
        return v.readStr() catch null;
    }

    /// map[key] as a bin, or null.
    pub fn getBin(r: Reader, key: []const u8) ?[]const u8 {
        var v = r.get(key) orelse return null;
        return v.readBin() catch null;
    }

    /// map[key] as integer type T, or null if absent / not an int / out of range.
    pub fn getInt(r: Reader, comptime T: type, key: []const u8) ?T {
        var v = r.get(key) orelse return null;
        return v.readInt(T) catch null;
    }

    /// map[key] as f64 (integers converted), or null.
    pub fn getNumber(r: Reader, key: []const u8) ?f64 {
        var v = r.get(key) orelse return null;
        return v.readNumber() catch null;
    }

    /// map[key] as bool, or null.
    pub fn getBool(r: Reader, key: []const u8) ?bool {
        var v = r.get(key) orelse return null;
        return v.readBool() catch null;
    }

    /// Iterate the map at the reader's position; the reader advances as the
    /// iterator does.
    ///     var it = try event.mapIterator();
    ///     while (try it.next()) |e| { ... e.keyStr(), e.value ... }
    pub fn mapIterator(r: *Reader) ReadError!MapIterator {
        return .{ .r = r, .left = try r.readMap() };
    }

    /// Iterate the array at the reader's position; each element is a Reader
    /// spanning exactly that element.
    pub fn arrayIterator(r: *Reader) ReadError!ArrayIterator {
        return .{ .r = r, .left = try r.readArray() };
    }
};

pub const MapIterator = struct {
    r: *Reader,
    left: u32,

    pub const Entry = struct {
        key: Reader,
        value: Reader,

        /// The key if it is a str, else null.
        pub fn keyStr(e: Entry) ?[]const u8 {
            var k = e.key;
            return k.readStr() catch null;
        }
    };

    pub fn next(it: *MapIterator) ReadError!?Entry {
        if (it.left == 0) return null;
        const key = try it.r.readValueReader();
        const value = try it.r.readValueReader();
        it.left -= 1;
        return .{ .key = key, .value = value };
    }
};

pub const ArrayIterator = struct {
    r: *Reader,
    left: u32,

    pub fn next(it: *ArrayIterator) ReadError!?Reader {
        if (it.left == 0) return null;
        const v = try it.r.readValueReader();
        it.left -= 1;
        return v;
    }
};

// ============================================================================
// 3. msgpack writer
// ============================================================================

/// Marks bytes to write as msgpack bin (`[]const u8` is written as str).
pub const Bin = struct { data: []const u8 };
pub fn bin(data: []const u8) Bin {
    return .{ .data = data };
}

/// Marks bytes that are already msgpack-encoded (written verbatim).
pub const Raw = struct { bytes: []const u8 };
pub fn raw(bytes: []const u8) Raw {
    return .{ .bytes = bytes };
}

pub const WriteError = error{OutOfMemory};

/// A growable msgpack encoder. Integers use the smallest encoding (unsigned
/// families for non-negative values). Its buffer comes from the SDK's bump
/// allocator (static arena first, then memory.grow); `reserve` before a big
/// write sizes it once.
pub const Writer = struct {
    buf: []u8 = &.{},
    len: usize = 0,
    /// Offset where the result value starts (after the `{"ok":` prefix in
    /// the handler's writer).
    start: usize = 0,
    /// Set by `fail`: the buffer holds a complete error response.
    failed: bool = false,
    /// Message for a Zig error returned by the handler (see `raise`).
    message: ?[]const u8 = null,

    /// The encoded bytes written so far (after the prefix).
    pub fn written(w: *const Writer) []const u8 {
        return w.buf[w.start..w.len];
    }

    /// Make room for `n` more bytes.
    pub fn reserve(w: *Writer, n: usize) WriteError!void {
        if (w.buf.len - w.len >= n) return;
        const need = std.math.add(usize, w.len, n) catch return error.OutOfMemory;
        var cap = if (w.buf.len < 64) 64 else w.buf.len *| 2;
        if (cap < need) cap = need;
        if (w.buf.len > 0) {
            // the most recent allocation grows in place
            if (extend(w.buf, cap)) {
                w.buf = w.buf.ptr[0..cap];
                return;
            }
            if (cap > need and extend(w.buf, need)) {
                w.buf = w.buf.ptr[0..need];
                return;
            }
        }
        var got = cap;
        const p = bump(cap, 16) orelse blk: {
            got = need;
            break :blk bump(need, 16) orelse return error.OutOfMemory;
        };
        @memcpy(p[0..w.len], w.buf[0..w.len]);
        w.buf = p[0..got];
    }

    inline fn put(w: *Writer, bytes: []const u8) WriteError!void {
        try w.reserve(bytes.len);
        @memcpy(w.buf[w.len..][0..bytes.len], bytes);
        w.len += bytes.len;
    }

    inline fn putByte(w: *Writer, b: u8) WriteError!void {
        try w.reserve(1);
        w.buf[w.len] = b;
        w.len += 1;
    }

    /// `tag` followed by `v` big-endian.
    fn putTagged(w: *Writer, tag: u8, comptime T: type, v: T) WriteError!void {
        try w.reserve(1 + @sizeOf(T));
        w.buf[w.len] = tag;
        const dst: *align(1) T = @ptrCast(w.buf[w.len + 1 ..][0..@sizeOf(T)]);
        dst.* = if (builtin.target.cpu.arch.endian() == .little) @byteSwap(v) else v;
        w.len += 1 + @sizeOf(T);
    }

    /// Already-encoded msgpack bytes, copied verbatim (e.g. from `Reader.readRaw`).
    pub fn writeRaw(w: *Writer, bytes: []const u8) WriteError!void {
        return w.put(bytes);
    }

    pub fn writeNil(w: *Writer) WriteError!void {
        return w.putByte(0xc0);
    }

    pub fn writeBool(w: *Writer, v: bool) WriteError!void {
        return w.putByte(if (v) 0xc3 else 0xc2);
    }

    pub fn writeUint(w: *Writer, v: u64) WriteError!void {
        if (v <= 0x7f) return w.putByte(@intCast(v));
        if (v <= 0xff) return w.putTagged(0xcc, u8, @intCast(v));
        if (v <= 0xffff) return w.putTagged(0xcd, u16, @intCast(v));
        if (v <= 0xffff_ffff) return w.putTagged(0xce, u32, @intCast(v));
        return w.putTagged(0xcf, u64, v);
    }

    pub fn writeSigned(w: *Writer, v: i64) WriteError!void {
        if (v >= 0) return w.writeUint(@intCast(v));
        if (v >= -32) return w.putByte(@bitCast(@as(i8, @intCast(v))));
        if (v >= std.math.minInt(i8)) return w.putTagged(0xd0, i8, @intCast(v));
        if (v >= std.math.minInt(i16)) return w.putTagged(0xd1, i16, @intCast(v));
        if (v >= std.math.minInt(i32)) return w.putTagged(0xd2, i32, @intCast(v));
        return w.putTagged(0xd3, i64, v);
    }

    /// Any Zig integer up to 64 bits (or comptime_int), smallest encoding.
    pub fn writeInt(w: *Writer, v: anytype) WriteError!void {
        const T = @TypeOf(v);
        switch (@typeInfo(T)) {
            .comptime_int => {
                if (v < 0) return w.writeSigned(v);
                return w.writeUint(v);
            },
            .int => |info| {
                if (info.bits > 64) @compileError("wasmhost: integers wider than 64 bits cannot be encoded");
                if (info.signedness == .signed) return w.writeSigned(v);
                return w.writeUint(v);
            },
            else => @compileError("wasmhost.Writer.writeInt: not an integer: " ++ @typeName(T)),
        }
    }

    /// float64
    pub fn writeFloat(w: *Writer, v: f64) WriteError!void {
        return w.putTagged(0xcb, u64, @bitCast(v));
    }

    /// float32
    pub fn writeFloat32(w: *Writer, v: f32) WriteError!void {
        return w.putTagged(0xca, u32, @bitCast(v));
    }

    /// Header of a str of `len` bytes; append the bytes with writeRaw.
    pub fn writeStrHeader(w: *Writer, len: usize) WriteError!void {
        if (len <= 31) return w.putByte(0xa0 | @as(u8, @intCast(len)));
        if (len <= 0xff) return w.putTagged(0xd9, u8, @intCast(len));
        if (len <= 0xffff) return w.putTagged(0xda, u16, @intCast(len));
        if (len > 0xffff_ffff) return error.OutOfMemory;
        return w.putTagged(0xdb, u32, @intCast(len));
    }

    pub fn writeStr(w: *Writer, s: []const u8) WriteError!void {
        try w.reserve(5 + s.len);
        try w.writeStrHeader(s.len);
        try w.put(s);
    }

    /// A str formatted with std.fmt (`"{d} items"`), written in place.
    pub fn writeStrFmt(w: *Writer, comptime fmt: []const u8, args: anytype) WriteError!void {
        const n = std.fmt.count(fmt, args);
        try w.reserve(5 + n);
        try w.writeStrHeader(n);
        _ = std.fmt.bufPrint(w.buf[w.len..][0..n], fmt, args) catch unreachable;
        w.len += n;
    }

    /// Header of a bin of `len` bytes; append the bytes with writeRaw.
    pub fn writeBinHeader(w: *Writer, len: usize) WriteError!void {
        if (len <= 0xff) return w.putTagged(0xc4, u8, @intCast(len));
        if (len <= 0xffff) return w.putTagged(0xc5, u16, @intCast(len));
        if (len > 0xffff_ffff) return error.OutOfMemory;
        return w.putTagged(0xc6, u32, @intCast(len));
    }

    pub fn writeBin(w: *Writer, data: []const u8) WriteError!void {
        try w.reserve(5 + data.len);
        try w.writeBinHeader(data.len);
        try w.put(data);
    }

    /// Array header: `n` values must follow.
    pub fn writeArray(w: *Writer, n: u32) WriteError!void {
        if (n <= 15) return w.putByte(0x90 | @as(u8, @intCast(n)));
        if (n <= 0xffff) return w.putTagged(0xdc, u16, @intCast(n));
        return w.putTagged(0xdd, u32, n);
    }

    /// Map header: `n` key/value PAIRS must follow.
    pub fn writeMap(w: *Writer, n: u32) WriteError!void {
        if (n <= 15) return w.putByte(0x80 | @as(u8, @intCast(n)));
        if (n <= 0xffff) return w.putTagged(0xde, u16, @intCast(n));
        return w.putTagged(0xdf, u32, n);
    }

    /// Ext value, smallest encoding (fixext for 1/2/4/8/16 bytes).
    pub fn writeExt(w: *Writer, ext_type: i8, data: []const u8) WriteError!void {
        const t: u8 = @bitCast(ext_type);
        try w.reserve(6 + data.len);
        switch (data.len) {
            1 => try w.putTagged(0xd4, u8, t),
            2 => try w.putTagged(0xd5, u8, t),
            4 => try w.putTagged(0xd6, u8, t),
            8 => try w.putTagged(0xd7, u8, t),
            16 => try w.putTagged(0xd8, u8, t),
            else => {
                if (data.len <= 0xff) {
                    try w.putTagged(0xc7, u8, @intCast(data.len));
                } else if (data.len <= 0xffff) {
                    try w.putTagged(0xc8, u16, @intCast(data.len));
                } else if (data.len <= 0xffff_ffff) {
                    try w.putTagged(0xc9, u32, @intCast(data.len));
                } else return error.OutOfMemory;
                try w.putByte(t);
            },
        }
        try w.put(data);
    }

    /// Encode any Zig value:
    ///   void, null                 -> nil
    ///   bool, integers (<= 64 bit) -> bool, int (smallest encoding)
    ///   f32 -> float32; other floats -> float64
    ///   []const u8, [N]u8, string literals -> str   (wasmhost.bin(x) -> bin)
    ///   other slices / arrays, tuples -> array
    ///   structs -> map of field name -> value
    ///   optionals -> nil or the value; enums, error values -> str (their name)
    ///   tagged unions -> {tag: payload}
    ///   wasmhost.Reader -> its remaining bytes verbatim; wasmhost.Raw -> verbatim
    ///   a type with `pub fn msgpackWrite(self, w: *wasmhost.Writer) !void` -> that
    pub fn write(w: *Writer, value: anytype) WriteError!void {
        const T = @TypeOf(value);
        if (T == Reader) return w.writeRaw(value.remaining());
        if (T == Bin) return w.writeBin(value.data);
        if (T == Raw) return w.writeRaw(value.bytes);
        if (T == Value) return w.writeValue(value);
        switch (@typeInfo(T)) {
            .void, .null => return w.writeNil(),
            .bool => return w.writeBool(value),
            .int, .comptime_int => return w.writeInt(value),
            .float => |f| return if (f.bits == 32) w.writeFloat32(value) else w.writeFloat(@floatCast(value)),
            .comptime_float => return w.writeFloat(value),
            .optional => return if (value) |v| w.write(v) else w.writeNil(),
            .@"enum" => {
                if (@hasDecl(T, "msgpackWrite")) return value.msgpackWrite(w);
                return w.writeStr(@tagName(value));
            },
            .enum_literal => return w.writeStr(@tagName(value)),
            .error_set => return w.writeStr(@errorName(value)),
            .pointer => |p| switch (p.size) {
                .one => switch (@typeInfo(p.child)) {
                    .array => |a| {
                        if (a.child == u8) return w.writeStr(value);
                        return w.writeSlice(value);
                    },
                    else => return w.write(value.*),
                },
                .slice => {
                    if (p.child == u8) return w.writeStr(value);
                    return w.writeSlice(value);
                },
                else => @compileError("wasmhost.Writer.write: cannot encode " ++ @typeName(T)),
            },
            .array => |a| {
                if (a.child == u8) return w.writeStr(&value);
                return w.writeSlice(&value);
            },
            .@"struct" => |s| {
                if (@hasDecl(T, "msgpackWrite")) return value.msgpackWrite(w);
                if (s.is_tuple) {
                    try w.writeArray(s.field_names.len);
                } else {
                    try w.writeMap(s.field_names.len);
                }
                inline for (s.field_names) |name| {
                    if (!s.is_tuple) try w.writeStr(name);
                    try w.write(@field(value, name));
                }
            },
            .@"union" => |u| {
                if (@hasDecl(T, "msgpackWrite")) return value.msgpackWrite(w);
                if (u.tag_type == null) @compileError("wasmhost.Writer.write: cannot encode untagged union " ++ @typeName(T));
                try w.writeMap(1);
                switch (value) {
                    inline else => |payload, tag| {
                        try w.writeStr(@tagName(tag));
                        try w.write(payload);
                    },
                }
            },
            else => @compileError("wasmhost.Writer.write: cannot encode " ++ @typeName(T)),
        }
    }

    fn writeSlice(w: *Writer, items: anytype) WriteError!void {
        try w.writeArray(@intCast(items.len));
        for (items) |item| try w.write(item);
    }

    /// Re-encode one `Value` item (for arrays/maps only the header).
    pub fn writeValue(w: *Writer, v: Value) WriteError!void {
        switch (v) {
            .nil => try w.writeNil(),
            .bool => |b| try w.writeBool(b),
            .int => |i| try w.writeSigned(i),
            .uint => |u| try w.writeUint(u),
            .float => |f| try w.writeFloat(f),
            .str => |s| try w.writeStr(s),
            .bin => |b| try w.writeBin(b),
            .array => |n| try w.writeArray(n),
            .map => |n| try w.writeMap(n),
            .ext => |e| try w.writeExt(e.type, e.data),
        }
    }

    /// Discard what the handler wrote and answer
    /// {"error": {"type": type_name, "message": message}}.
    /// Use as `return out.fail("ValidationError", "name is required");`
    pub fn fail(w: *Writer, type_name: []const u8, message: []const u8) WriteError!void {
        return w.failExtra(type_name, message, .{});
    }

    /// `fail` with extra keys in the error map, from the fields of a struct:
    /// `return out.failExtra("ValidationError", "bad", .{ .field = "name" });`
    pub fn failExtra(w: *Writer, type_name: []const u8, message: []const u8, extra: anytype) WriteError!void {
        const fields = @typeInfo(@TypeOf(extra)).@"struct".field_names;
        w.len = 0;
        w.failed = true;
        try w.reserve(24 + type_name.len + message.len);
        try w.writeRaw("\x81\xa5error");
        try w.writeMap(2 + fields.len);
        try w.writeRaw("\xa4type");
        try w.writeStr(type_name);
        try w.writeRaw("\xa7message");
        try w.writeStr(message);
        inline for (fields) |name| {
            try w.writeStr(name);
            try w.write(@field(extra, name));
        }
    }

    /// `fail` with a message formatted by std.fmt.
    pub fn failFmt(w: *Writer, type_name: []const u8, comptime fmt: []const u8, args: anytype) WriteError!void {
        w.len = 0;
        w.failed = true;
        try w.writeRaw("\x81\xa5error\x82\xa4type");
        try w.writeStr(type_name);
        try w.writeRaw("\xa7message");
        try w.writeStrFmt(fmt, args);
    }

    /// Attach `message` to the Zig error `err` and return it. The SDK answers
    /// {"error": {"type": @errorName(err), "message": message}}; `message`
    /// must stay valid until the handler returns (literals, event slices and
    /// `wasmhost.allocator` memory all do).
    ///     return out.raise(error.ValidationError, "name is required");
    pub fn raise(w: *Writer, err: anytype, message: []const u8) @TypeOf(err) {
        w.message = message;
        return err;
    }
};

// ============================================================================
// 4. context and clock
// ============================================================================

/// The request's "context". Strings are slices into the request buffer,
/// valid for the whole invocation.
pub const Context = struct {
    request_id: []const u8 = "",
    function_name: []const u8 = "",
    function_version: []const u8 = "",
    memory_limit_mb: i64 = 0,
    /// Unix epoch ms at which the host stops the invocation; 0 if none was sent.
    deadline_ms: i64 = 0,

    /// Milliseconds left before the host's Timeout (see `remainingMs`).
    pub fn remainingMs(ctx: *const Context) i64 {
        return remainingMsOf(ctx);
    }
};

/// Wall clock, Unix epoch milliseconds (WASI clock_time_get(realtime)).
pub fn nowMs() i64 {
    if (is_wasi) {
        var ts: std.os.wasi.timestamp_t = 0;
        if (std.os.wasi.clock_time_get(.REALTIME, 1_000_000, &ts) != .SUCCESS) return 0;
        return @intCast(ts / 1_000_000);
    } else {
        var ts: std.posix.timespec = undefined;
        switch (std.posix.errno(std.posix.system.clock_gettime(.REALTIME, &ts))) {
            .SUCCESS => return @as(i64, ts.sec) * 1000 + @divTrunc(@as(i64, ts.nsec), 1_000_000),
            else => return 0,
        }
    }
}

/// Milliseconds left until the host stops the invocation with Timeout
/// (negative once past; maxInt(i64) if the request carried no deadline).
pub fn remainingMs(ctx: *const Context) i64 {
    return remainingMsOf(ctx);
}

fn remainingMsOf(ctx: *const Context) i64 {
    if (ctx.deadline_ms <= 0) return std.math.maxInt(i64);
    return ctx.deadline_ms - nowMs();
}

// ============================================================================
// 5. stdout / stderr / log / panic
// ============================================================================

fn fdWriteAll(fd: i32, bytes: []const u8) bool {
    if (!is_wasi) return true;
    var rest = bytes;
    while (rest.len > 0) {
        const iov = [1]std.os.wasi.ciovec_t{.{ .base = rest.ptr, .len = rest.len }};
        var n: usize = 0;
        if (std.os.wasi.fd_write(fd, &iov, 1, &n) != .SUCCESS or n == 0) return false;
        rest = rest[n..];
    }
    return true;
}

fn FdSink(comptime fd: i32) type {
    return struct {
        fn drain(w: *std.Io.Writer, data: []const []const u8, splat: usize) std.Io.Writer.Error!usize {
            if (!fdWriteAll(fd, w.buffer[0..w.end])) return error.WriteFailed;
            w.end = 0;
            var n: usize = 0;
            for (data[0 .. data.len - 1]) |d| {
                if (!fdWriteAll(fd, d)) return error.WriteFailed;
                n += d.len;
            }
            const last = data[data.len - 1];
            for (0..splat) |_| {
                if (!fdWriteAll(fd, last)) return error.WriteFailed;
                n += last.len;
            }
            return n;
        }
        const vtable: std.Io.Writer.VTable = .{ .drain = drain };
    };
}

var stdout_buffer: [4096]u8 = undefined;
var stdout_state: std.Io.Writer = .{ .vtable = &FdSink(1).vtable, .buffer = &stdout_buffer };
var stderr_state: std.Io.Writer = .{ .vtable = &FdSink(2).vtable, .buffer = &.{} };

/// Set once stdout is used, so a module that never prints links no fd_write.
var stdout_flush: ?*const fn () void = null;

fn flushStdoutNow() void {
    stdout_state.flush() catch {};
}

/// Buffered stdout (fd 1, captured into the invocation log). The SDK flushes
/// it after the handler returns; output still buffered when the guest traps
/// is lost (wasmhost.panic flushes it first).
pub fn stdout() *std.Io.Writer {
    stdout_flush = &flushStdoutNow;
    return &stdout_state;
}

/// Unbuffered stderr (fd 2, also captured into the invocation log).
pub fn stderr() *std.Io.Writer {
    return &stderr_state;
}

/// Print to stdout with std.fmt (`wasmhost.print("n={d}\n", .{n});`). Errors are ignored.
pub fn print(comptime fmt: []const u8, args: anytype) void {
    stdout().print(fmt, args) catch {};
}

/// Print to stderr with std.fmt. Errors are ignored.
pub fn eprint(comptime fmt: []const u8, args: anytype) void {
    var buf: [256]u8 = undefined;
    var w: std.Io.Writer = .{ .vtable = &FdSink(2).vtable, .buffer = &buf };
    w.print(fmt, args) catch {};
    w.flush() catch {};
}

/// Flush buffered stdout (the SDK does this after the handler returns).
pub fn flushStdout() void {
    if (stdout_flush) |f| f();
}

/// A `std.Options.logFn` writing "level(scope): message\n" to stderr:
/// `pub const std_options: std.Options = .{ .logFn = wasmhost.logFn };`
pub fn logFn(
    comptime level: std.log.Level,
    comptime scope: @EnumLiteral(),
    comptime format: []const u8,
    args: anytype,
) void {
    const prefix = comptime level.asText() ++ (if (scope == .default) ": " else "(" ++ @tagName(scope) ++ "): ");
    eprint(prefix ++ format ++ "\n", args);
}

fn panicFn(msg: []const u8, _: ?usize) noreturn {
    @branchHint(.cold);
    flushStdout();
    _ = fdWriteAll(2, "panic: ");
    _ = fdWriteAll(2, msg);
    _ = fdWriteAll(2, "\n");
    @trap();
}

/// Panic handler: `pub const panic = wasmhost.panic;` in the root file.
/// Flushes stdout, writes "panic: <msg>" to stderr and traps (host: Trap).
pub const panic = std.debug.FullPanic(panicFn);

// ============================================================================
// 6. ABI glue
// ============================================================================

/// {"error":{"type":"OutOfMemory","message":"guest could not allocate"}}
const oom_response = "\x81\xa5error\x82\xa4type\xabOutOfMemory\xa7message\xb8guest could not allocate";
/// {"ok":
const ok_prefix = "\x81\xa2ok";

inline fn pack(bytes: []const u8) u64 {
    return (@as(u64, @intFromPtr(bytes.ptr)) << 32) | @as(u32, @intCast(bytes.len));
}

/// Parse the request map into `event` and `ctx`; null on success, else the
/// InvalidRequest message.
fn parseRequest(req: []const u8, event: *Reader, ctx: *Context) ?[]const u8 {
    var r = Reader.init(req);
    const n = r.readMap() catch return "request is not a msgpack map";
    var have_event = false;
    var have_context = false;
    var i: u32 = 0;
    while (i < n) : (i += 1) {
        const key = r.readStr() catch {
            r.skip() catch return "request is not valid msgpack";
            r.skip() catch return "request is not valid msgpack";
            continue;
        };
        if (eql(key, "event")) {
            event.* = r.readValueReader() catch return "request is not valid msgpack";
            have_event = true;
        } else if (eql(key, "context")) {
            if (parseContext(&r, ctx)) |bad| return bad;
            have_context = true;
        } else {
            r.skip() catch return "request is not valid msgpack";
        }
    }
    if (!r.atEnd()) return "trailing bytes after the request map";
    if (!have_event) return "request has no \"event\" key";
    if (!have_context) return "request has no \"context\" key";
    return null;
}

fn parseContext(r: *Reader, ctx: *Context) ?[]const u8 {
    if (r.peek() != .map) return if (r.peek() == null) "request is not valid msgpack" else "\"context\" is not a map";
    const n = r.readMap() catch return "request is not valid msgpack";
    var i: u32 = 0;
    outer: while (i < n) : (i += 1) {
        const key = r.readStr() catch {
            r.skip() catch return "request is not valid msgpack";
            r.skip() catch return "request is not valid msgpack";
            continue;
        };
        inline for (.{ "request_id", "function_name", "function_version" }) |name| {
            if (eql(key, name)) {
                @field(ctx, name) = r.readStr() catch |e| return switch (e) {
                    error.WrongType => "context." ++ name ++ " is not a string",
                    else => "request is not valid msgpack",
                };
                continue :outer;
            }
        }
        inline for (.{ "memory_limit_mb", "deadline_ms" }) |name| {
            if (eql(key, name)) {
                @field(ctx, name) = r.readInt(i64) catch |e| return switch (e) {
                    error.WrongType => "context." ++ name ++ " is not an integer",
                    error.OutOfRange => "context." ++ name ++ " is out of range",
                    else => "request is not valid msgpack",
                };
                continue :outer;
            }
        }
        r.skip() catch return "request is not valid msgpack";
    }
    return null;
}

/// Answer a Zig error returned by the handler.
fn errorResponse(out: *Writer, err: anyerror) []const u8 {
    const name = @errorName(err);
    out.len = 0;
    out.failed = true;
    (blk: {
        out.writeRaw("\x81\xa5error\x82\xa4type") catch |e| break :blk e;
        out.writeStr(name) catch |e| break :blk e;
        out.writeRaw("\xa7message") catch |e| break :blk e;
        if (out.message) |m| {
            out.writeStr(m) catch |e| break :blk e;
        } else {
            out.writeStrHeader(6 + name.len) catch |e| break :blk e;
            out.writeRaw("error.") catch |e| break :blk e;
            out.writeRaw(name) catch |e| break :blk e;
        }
    }) catch return oom_response;
    return out.buf[0..out.len];
}

fn HandlerGlue(comptime handler: anytype) type {
    const F = @TypeOf(handler);
    const info = switch (@typeInfo(F)) {
        .@"fn" => |f| f,
        else => @compileError("wasmhost.exportHandler expects a function, got " ++ @typeName(F)),
    };
    const sig_msg = "wasmhost handler must be fn (event: wasmhost.Reader, ctx: *const wasmhost.Context, out: *wasmhost.Writer) !void (or !T to return a value)";
    if (info.param_types.len != 3) @compileError(sig_msg);
    if (info.param_types[0] != Reader or info.param_types[1] != *const Context or info.param_types[2] != *Writer)
        @compileError(sig_msg);
    const R = info.return_type orelse @compileError(sig_msg);

    return struct {
        fn alloc(len: u32) callconv(.c) u32 {
            const p = bump(len, 16) orelse return 0;
            return @intCast(@intFromPtr(p));
        }

        fn handle(ptr: u32, len: u32) callconv(.c) u64 {
            const req: []const u8 = if (len == 0) "" else @as([*]const u8, @ptrFromInt(ptr))[0..len];
            return pack(run(req));
        }

        fn run(req: []const u8) []const u8 {
            var out: Writer = .{};
            var ctx: Context = .{};
            var event: Reader = undefined;
            if (parseRequest(req, &event, &ctx)) |bad| {
                out.fail("InvalidRequest", bad) catch return oom_response;
                return out.buf[0..out.len];
            }
            out.reserve(256) catch return oom_response;
            out.writeRaw(ok_prefix) catch unreachable;
            out.start = ok_prefix.len;

            const result = handler(event, &ctx, &out);
            flushStdout();
            switch (@typeInfo(R)) {
                .error_union => |eu| {
                    const payload = result catch |err| return errorResponse(&out, err);
                    if (eu.payload != void) return finish(&out, payload);
                },
                else => if (R != void) return finish(&out, result),
            }
            return finish(&out, {});
        }

        fn finish(out: *Writer, payload: anytype) []const u8 {
            if (out.failed) return out.buf[0..out.len];
            if (@TypeOf(payload) != void) {
                if (out.len != out.start) {
                    out.fail("InvalidResult", "handler both wrote a result and returned one") catch return oom_response;
                    return out.buf[0..out.len];
                }
                out.write(payload) catch return oom_response;
            }
            if (out.len == out.start) {
                out.writeNil() catch return oom_response; // wrote nothing: {"ok": nil}
            } else {
                var chk = Reader.init(out.buf[out.start..out.len]);
                const ok = if (chk.skip()) |_| chk.atEnd() else |_| false;
                if (!ok) {
                    out.fail("InvalidResult", "handler must write exactly one msgpack value") catch return oom_response;
                }
            }
            return out.buf[0..out.len];
        }
    };
}

/// Export the ABI (`wasmhost_alloc`, `wasmhost_handle`) for `handler`. Call
/// it once, from the root file: `comptime { wasmhost.exportHandler(handle); }`
/// Build with `-fno-entry -rdynamic` so the exports reach the module.
pub fn exportHandler(comptime handler: anytype) void {
    const G = HandlerGlue(handler);
    @export(&G.alloc, .{ .name = "wasmhost_alloc" });
    @export(&G.handle, .{ .name = "wasmhost_handle" });
}

// ============================================================================
// tests (native: `python -m ziglang test guests/zig/wasmhost.zig`)
// ============================================================================

const testing = std.testing;

test "reader: integers of every width" {
    const cases = .{
        .{ "\x05", 5 },                                             .{ "\xff", -1 },                                 .{ "\xe0", -32 },
        .{ "\xcc\x80", 128 },                                       .{ "\xcd\x01\x00", 256 },                        .{ "\xce\x00\x01\x00\x00", 65536 },
        .{ "\xcf\x00\x00\x01\x8b\xcf\xe5\x73\xb8", 1700000003000 }, .{ "\xd0\x80", -128 },                           .{ "\xd1\x80\x00", -32768 },
        .{ "\xd2\x80\x00\x00\x00", -2147483648 },                   .{ "\xd3\xff\xff\xff\xff\xff\xff\xff\xfe", -2 },
    };
    inline for (cases) |c| {
        var r = Reader.init(c[0]);
        try testing.expectEqual(@as(i64, c[1]), try r.readInt(i64));
        try testing.expect(r.atEnd());
    }
    var r = Reader.init("\xcc\x80");
    try testing.expectError(error.OutOfRange, r.readInt(i8));
    try testing.expectEqual(@as(usize, 0), r.pos);
    try testing.expectEqual(@as(u8, 128), try r.readInt(u8));
    var r2 = Reader.init("\xff");
    try testing.expectError(error.OutOfRange, r2.readInt(u64));
    var r3 = Reader.init("\xcf\xff\xff\xff\xff\xff\xff\xff\xff");
    try testing.expectError(error.OutOfRange, r3.readInt(i64));
    try testing.expectEqual(Value{ .uint = std.math.maxInt(u64) }, try r3.next());
    var r4 = Reader.init("\xcd\x01");
    try testing.expectError(error.EndOfInput, r4.readInt(i64));
}

test "reader: floats, str, bin, ext, nested skip, lookups" {
    var r = Reader.init("\xca\x3f\xc0\x00\x00\xcb\x40\x09\x21\xfb\x54\x44\x2d\x18");
    try testing.expectEqual(@as(f64, 1.5), try r.readFloat());
    try testing.expectApproxEqAbs(@as(f64, 3.14159265), try r.readNumber(), 1e-6);

    // {"a": [1, {"b": nil}], "name": "zig", "bin": bin(1,2), "x": ext}
    const msg = "\x84\xa1a\x92\x01\x81\xa1b\xc0\xa4name\xa3zig\xa3bin\xc4\x02\x01\x02\xa1x\xd6\x07abcd";
    const ev = Reader.init(msg);
    try testing.expectEqualStrings("zig", ev.getStr("name").?);
    try testing.expectEqualSlices(u8, "\x01\x02", ev.getBin("bin").?);
    try testing.expect(ev.getStr("missing") == null);
    try testing.expect(ev.getInt(i64, "name") == null);
    var x = ev.get("x").?;
    const e = try x.readExt();
    try testing.expectEqual(@as(i8, 7), e.type);
    try testing.expectEqualStrings("abcd", e.data);
    var all = ev;
    try testing.expectEqualSlices(u8, msg, try all.readRaw());
    var a = ev.get("a").?;
    var it = try a.arrayIterator();
    var count: usize = 0;
    while (try it.next()) |_| count += 1;
    try testing.expectEqual(@as(usize, 2), count);

    // truncated / hostile inputs never read past the end
    const bad = [_][]const u8{ "\x92\x01", "\xdd\xff\xff\xff\xff", "\xdb\x00\x00\x10\x00abc", "\xc1", "\x81\xa1a", "\xd8\x01" };
    for (bad) |b| {
        var br = Reader.init(b);
        try testing.expect(std.meta.isError(br.skip()));
        try testing.expectEqual(@as(usize, 0), br.pos);
    }
}

test "writer: smallest encodings and write(anytype)" {
    var w: Writer = .{};
    try w.writeInt(0);
    try w.writeInt(127);
    try w.writeInt(128);
    try w.writeInt(@as(i64, -1));
    try w.writeInt(-33);
    try w.writeInt(@as(u64, 1) << 40);
    try testing.expectEqualSlices(u8, "\x00\x7f\xcc\x80\xff\xd0\xdf\xcf\x00\x00\x01\x00\x00\x00\x00\x00", w.written());

    var w2: Writer = .{};
    try w2.write(.{ .statusCode = 200, .body = "hi", .ok = true, .none = null, .list = [_]u8{ 1, 2 }, .f = @as(f32, 1.5), .b = bin("\x00") });
    const expect = "\x87\xaastatusCode\xcc\xc8\xa4body\xa2hi\xa2ok\xc3\xa4none\xc0\xa4list\xa2\x01\x02\xa1f\xca\x3f\xc0\x00\x00\xa1b\xc4\x01\x00";
    try testing.expectEqualSlices(u8, expect, w2.written());

    var w3: Writer = .{};
    const big: [70000]u8 = @splat('x');
    try w3.writeStr(&big);
    try testing.expectEqualSlices(u8, "\xdb\x00\x01\x11\x70", w3.written()[0..5]);
    var r = Reader.init(w3.written());
    try testing.expectEqual(@as(usize, 70000), (try r.readStr()).len);

    var w4: Writer = .{};
    try w4.write(.{ 1, "a", .{ .k = -5 } });
    try testing.expectEqualSlices(u8, "\x93\x01\xa1a\x81\xa1k\xfb", w4.written());
    try w4.fail("ValidationError", "bad");
    try testing.expectEqualSlices(u8, "\x81\xa5error\x82\xa4type\xafValidationError\xa7message\xa3bad", w4.written());
}

test "request parsing" {
    const req = "\x82\xa5event\x81\xa1n\x05\xa7context\x85\xaarequest_id\xa2r1\xadfunction_name\xa1f\xb0function_version\xa7$LATEST\xafmemory_limit_mb\xcc\x80\xabdeadline_ms\xcf\x00\x00\x01\x8b\xcf\xe5\x73\xb8";
    var ev: Reader = undefined;
    var ctx: Context = .{};
    try testing.expect(parseRequest(req, &ev, &ctx) == null);
    try testing.expectEqualSlices(u8, "\x81\xa1n\x05", ev.bytes);
    try testing.expectEqualStrings("r1", ctx.request_id);
    try testing.expectEqualStrings("$LATEST", ctx.function_version);
    try testing.expectEqual(@as(i64, 128), ctx.memory_limit_mb);
    try testing.expectEqual(@as(i64, 1700000003000), ctx.deadline_ms);
    try testing.expectEqualStrings("request is not a msgpack map", parseRequest("\x01", &ev, &ctx).?);
    try testing.expectEqualStrings("context.request_id is not a string", parseRequest("\x82\xa5event\xc0\xa7context\x81\xaarequest_id\x01", &ev, &ctx).?);
}

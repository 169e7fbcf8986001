//! wasmhost guest SDK for Rust (guest ABI v1, see `guests/ABI.md`).
//!
//! A function is one handler plus one macro:
//!
//! ```ignore
//! use wasmhost::{Context, Error, Value};
//!
//! fn greet(event: Value, _ctx: &Context) -> wasmhost::Result<impl wasmhost::Encode> {
//!     let name = event.get("name").and_then(|v| v.as_str())
//!         .ok_or_else(|| Error::new("ValidationError", "name is required"))?;
//!     Ok(wasmhost::obj! { "greeting" => format!("hello {}", name) })
//! }
//!
//! wasmhost::handler!(greet);
//! ```
//!
//! The handler takes the event (a zero-copy [`Value`] view of its msgpack
//! bytes) and the invocation [`Context`], and returns `Result<T, E>` where
//! `T: Encode` (the `"ok"` value) and `E: FunctionError` (becomes
//! `{"error": {"type": E::error_type(), "message": E.to_string()}}`).
//! `handler!` defines the exports `wasmhost_alloc` / `wasmhost_handle` and
//! installs [`ArenaAlloc`] as the global allocator.
//!
//! Built as an rlib and linked with `--extern wasmhost=...` (see
//! `guests/rust/README.md`). Standard library only; Rust 1.63+
//! (Debian bookworm's rustc).
//!
//! Contents: 1. msgpack reader ([`Reader`], [`Value`]), 2. msgpack writer
//! ([`Writer`], [`Encode`], [`obj!`]), 3. errors ([`FunctionError`],
//! [`Error`]), 4. context and clock, 5. arena allocator, 6. ABI glue.

#![allow(clippy::missing_safety_doc)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Guest ABI version this SDK implements.
pub const ABI_VERSION: u32 = 1;

// ============================================================================
// 1. msgpack reader
// ============================================================================

/// Type of a msgpack value. `Int` covers every integer encoding, `Float`
/// float32 and float64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
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

/// Why a read failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The value runs past the end of the input.
    Eof,
    /// The value is not of the requested type.
    Type,
    /// The integer does not fit the requested type.
    Range,
    /// Reserved byte 0xc1, or a str that is not UTF-8.
    Invalid,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::Eof => "msgpack value is truncated",
            DecodeError::Type => "msgpack value has another type",
            DecodeError::Range => "msgpack integer is out of range",
            DecodeError::Invalid => "invalid msgpack (byte 0xc1 or a str that is not UTF-8)",
        })
    }
}

impl std::error::Error for DecodeError {}

/// Kind of the value starting with byte `b` (None for 0xc1).
#[inline]
fn kind_of(b: u8) -> Option<Kind> {
    Some(match b {
        0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xd3 => Kind::Int,
        0x80..=0x8f | 0xde | 0xdf => Kind::Map,
        0x90..=0x9f | 0xdc | 0xdd => Kind::Array,
        0xa0..=0xbf | 0xd9..=0xdb => Kind::Str,
        0xc0 => Kind::Nil,
        0xc2 | 0xc3 => Kind::Bool,
        0xc4..=0xc6 => Kind::Bin,
        0xc7..=0xc9 | 0xd4..=0xd8 => Kind::Ext,
        0xca | 0xcb => Kind::Float,
        0xc1 => return None,
    })
}

/// A bounds-checked msgpack reader over a byte slice. Reads never look past
/// the end; a failed read returns an error and does not move the reader.
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Current offset in the input.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// True when every byte has been read.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Kind of the next value, without consuming it (None at the end or at
    /// byte 0xc1).
    #[inline]
    pub fn peek(&self) -> Option<Kind> {
        self.buf.get(self.pos).and_then(|&b| kind_of(b))
    }

    #[inline]
    fn byte(&self) -> Result<u8, DecodeError> {
        self.buf.get(self.pos).copied().ok_or(DecodeError::Eof)
    }

    /// `n` bytes at `pos + off`, without moving.
    #[inline]
    fn at(&self, off: usize, n: usize) -> Result<&'a [u8], DecodeError> {
        let start = self.pos.checked_add(off).ok_or(DecodeError::Eof)?;
        let end = start.checked_add(n).ok_or(DecodeError::Eof)?;
        self.buf.get(start..end).ok_or(DecodeError::Eof)
    }

    /// Big-endian unsigned of `n` (1, 2, 4, 8) bytes at `pos + off`.
    #[inline]
    fn be(&self, off: usize, n: usize) -> Result<u64, DecodeError> {
        let s = self.at(off, n)?;
        Ok(s.iter().fold(0u64, |acc, &b| (acc << 8) | b as u64))
    }

    pub fn read_nil(&mut self) -> Result<(), DecodeError> {
        if self.byte()? != 0xc0 {
            return Err(DecodeError::Type);
        }
        self.pos += 1;
        Ok(())
    }

    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        let v = match self.byte()? {
            0xc2 => false,
            0xc3 => true,
            _ => return Err(DecodeError::Type),
        };
        self.pos += 1;
        Ok(v)
    }

    /// Any integer encoding, as (is_negative, two's complement bits, size).
    fn int_raw(&self) -> Result<(i128, usize), DecodeError> {
        let b = self.byte()?;
        Ok(match b {
            0x00..=0x7f => (b as i128, 1),
            0xe0..=0xff => (b as i8 as i128, 1),
            0xcc => (self.be(1, 1)? as i128, 2),
            0xcd => (self.be(1, 2)? as i128, 3),
            0xce => (self.be(1, 4)? as i128, 5),
            0xcf => (self.be(1, 8)? as i128, 9),
            0xd0 => (self.be(1, 1)? as u8 as i8 as i128, 2),
            0xd1 => (self.be(1, 2)? as u16 as i16 as i128, 3),
            0xd2 => (self.be(1, 4)? as u32 as i32 as i128, 5),
            0xd3 => (self.be(1, 8)? as i64 as i128, 9),
            _ => return Err(DecodeError::Type),
        })
    }

    /// Any integer encoding that fits an i64.
    pub fn read_i64(&mut self) -> Result<i64, DecodeError> {
        let (v, n) = self.int_raw()?;
        if v > i64::MAX as i128 {
            return Err(DecodeError::Range);
        }
        self.pos += n;
        Ok(v as i64)
    }

    /// Any non-negative integer.
    pub fn read_u64(&mut self) -> Result<u64, DecodeError> {
        let (v, n) = self.int_raw()?;
        if v < 0 {
            return Err(DecodeError::Range);
        }
        self.pos += n;
        Ok(v as u64)
    }

    /// float32 or float64 (not integers: see [`Reader::read_number`]).
    pub fn read_f64(&mut self) -> Result<f64, DecodeError> {
        let v = match self.byte()? {
            0xca => f32::from_bits(self.be(1, 4)? as u32) as f64,
            0xcb => f64::from_bits(self.be(1, 8)?),
            _ => return Err(DecodeError::Type),
        };
        self.pos += if self.buf[self.pos] == 0xca { 5 } else { 9 };
        Ok(v)
    }

    /// float32 only.
    pub fn read_f32(&mut self) -> Result<f32, DecodeError> {
        if self.byte()? != 0xca {
            return Err(DecodeError::Type);
        }
        let v = f32::from_bits(self.be(1, 4)? as u32);
        self.pos += 5;
        Ok(v)
    }

    /// Any integer or float, as f64.
    pub fn read_number(&mut self) -> Result<f64, DecodeError> {
        match self.peek() {
            Some(Kind::Float) => self.read_f64(),
            Some(Kind::Int) => {
                let (v, n) = self.int_raw()?;
                self.pos += n;
                Ok(v as f64)
            }
            None if self.is_empty() => Err(DecodeError::Eof),
            _ => Err(DecodeError::Type),
        }
    }

    /// Header of a str/bin/ext: (header size, payload size).
    fn span(&self, b: u8) -> Result<(usize, usize), DecodeError> {
        Ok(match b {
            0xa0..=0xbf => (1, (b & 0x1f) as usize),
            0xc4 | 0xd9 => (2, self.be(1, 1)? as usize),
            0xc5 | 0xda => (3, self.be(1, 2)? as usize),
            0xc6 | 0xdb => (5, self.be(1, 4)? as usize),
            _ => return Err(DecodeError::Type),
        })
    }

    /// A str's bytes (not checked for UTF-8).
    pub fn read_str_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let b = self.byte()?;
        if !matches!(b, 0xa0..=0xbf | 0xd9..=0xdb) {
            return Err(DecodeError::Type);
        }
        let (h, n) = self.span(b)?;
        let s = self.at(h, n)?;
        self.pos += h + n;
        Ok(s)
    }

    /// A str, checked to be UTF-8 (`Invalid` if not).
    pub fn read_str(&mut self) -> Result<&'a str, DecodeError> {
        let save = self.pos;
        let s = self.read_str_bytes()?;
        match std::str::from_utf8(s) {
            Ok(s) => Ok(s),
            Err(_) => {
                self.pos = save;
                Err(DecodeError::Invalid)
            }
        }
    }

    /// A bin's bytes.
    pub fn read_bin(&mut self) -> Result<&'a [u8], DecodeError> {
        let b = self.byte()?;
        if !matches!(b, 0xc4..=0xc6) {
            return Err(DecodeError::Type);
        }
        let (h, n) = self.span(b)?;
        let s = self.at(h, n)?;
        self.pos += h + n;
        Ok(s)
    }

    /// An ext: (type, data).
    pub fn read_ext(&mut self) -> Result<(i8, &'a [u8]), DecodeError> {
        let b = self.byte()?;
        let (h, n) = match b {
            0xd4 => (2, 1),
            0xd5 => (2, 2),
            0xd6 => (2, 4),
            0xd7 => (2, 8),
            0xd8 => (2, 16),
            0xc7 => (3, self.be(1, 1)? as usize),
            0xc8 => (4, self.be(1, 2)? as usize),
            0xc9 => (6, self.be(1, 4)? as usize),
            _ => return Err(DecodeError::Type),
        };
        let t = self.at(h - 1, 1)?[0] as i8;
        let s = self.at(h, n)?;
        self.pos += h + n;
        Ok((t, s))
    }

    /// An array header: the number of values that follow.
    pub fn read_array_len(&mut self) -> Result<u32, DecodeError> {
        let b = self.byte()?;
        let (h, n) = match b {
            0x90..=0x9f => (1, (b & 0x0f) as u32),
            0xdc => (3, self.be(1, 2)? as u32),
            0xdd => (5, self.be(1, 4)? as u32),
            _ => return Err(DecodeError::Type),
        };
        self.pos += h;
        Ok(n)
    }

    /// A map header: the number of key/value PAIRS that follow.
    pub fn read_map_len(&mut self) -> Result<u32, DecodeError> {
        let b = self.byte()?;
        let (h, n) = match b {
            0x80..=0x8f => (1, (b & 0x0f) as u32),
            0xde => (3, self.be(1, 2)? as u32),
            0xdf => (5, self.be(1, 4)? as u32),
            _ => return Err(DecodeError::Type),
        };
        self.pos += h;
        Ok(n)
    }

    /// Skip one complete value of any type (ext included), iteratively (no
    /// recursion, so deep nesting cannot overflow the stack). On error the
    /// reader does not move.
    pub fn skip(&mut self) -> Result<(), DecodeError> {
        let mut p = self.pos;
        let buf = self.buf;
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let b = *buf.get(p).ok_or(DecodeError::Eof)?;
            let be = |off: usize, n: usize| -> Result<u64, DecodeError> {
                let s = buf.get(p + off..p + off + n).ok_or(DecodeError::Eof)?;
                Ok(s.iter().fold(0u64, |a, &x| (a << 8) | x as u64))
            };
            // (header bytes, payload bytes, child values)
            let (h, n, c): (usize, u64, u64) = match b {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (1, 0, 0),
                0x80..=0x8f => (1, 0, 2 * (b & 0x0f) as u64),
                0x90..=0x9f => (1, 0, (b & 0x0f) as u64),
                0xa0..=0xbf => (1, (b & 0x1f) as u64, 0),
                0xc4 | 0xd9 => (2, be(1, 1)?, 0),
                0xc5 | 0xda => (3, be(1, 2)?, 0),
                0xc6 | 0xdb => (5, be(1, 4)?, 0),
                0xc7 => (3, be(1, 1)?, 0),
                0xc8 => (4, be(1, 2)?, 0),
                0xc9 => (6, be(1, 4)?, 0),
                0xca | 0xce | 0xd2 => (1, 4, 0),
                0xcb | 0xcf | 0xd3 => (1, 8, 0),
                0xcc | 0xd0 => (1, 1, 0),
                0xcd | 0xd1 => (1, 2, 0),
                0xd4 => (2, 1, 0),
                0xd5 => (2, 2, 0),
                0xd6 => (2, 4, 0),
                0xd7 => (2, 8, 0),
                0xd8 => (2, 16, 0),
                0xdc => (3, 0, be(1, 2)?),
                0xdd => (5, 0, be(1, 4)?),
                0xde => (3, 0, 2 * be(1, 2)?),
                0xdf => (5, 0, 2 * be(1, 4)?),
                _ => return Err(DecodeError::Invalid), // 0xc1
            };
            let left = (buf.len() - p) as u64;
            if (h as u64) + n > left {
                return Err(DecodeError::Eof);
            }
            p += h + n as usize;
            pending += c;
            // every pending value needs at least one byte
            if pending > (buf.len() - p) as u64 {
                return Err(DecodeError::Eof);
            }
        }
        self.pos = p;
        Ok(())
    }

    /// Consume one complete value and return its encoded bytes.
    pub fn read_raw(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        self.skip()?;
        Ok(&self.buf[start..self.pos])
    }
}

impl Reader<'static> {
    /// Consume one complete value as a [`Value`].
    pub fn read_value(&mut self) -> Result<Value, DecodeError> {
        self.read_raw().map(|raw| Value { raw })
    }
}

/// One complete, well-formed msgpack value: a zero-copy view of its encoded
/// bytes. The event handed to a handler is a `Value` over the request buffer,
/// which lives until the instance is discarded (hence `'static`). Getters
/// return `None` when the value has another type.
#[derive(Clone, Copy)]
pub struct Value {
    raw: &'static [u8],
}

impl Value {
    /// A value from encoded bytes: must be exactly one well-formed value.
    pub fn from_slice(raw: &'static [u8]) -> Result<Value, DecodeError> {
        let mut r = Reader::new(raw);
        r.skip()?;
        if !r.is_empty() {
            return Err(DecodeError::Invalid);
        }
        Ok(Value { raw })
    }

    /// The encoded bytes (e.g. to copy them verbatim, or to parse them with
    /// another msgpack library).
    #[inline]
    pub fn raw(&self) -> &'static [u8] {
        self.raw
    }

    #[inline]
    fn reader(&self) -> Reader<'static> {
        Reader::new(self.raw)
    }

    #[inline]
    pub fn kind(&self) -> Kind {
        // from_slice/read_value guarantee a valid first byte
        kind_of(self.raw[0]).unwrap_or(Kind::Nil)
    }

    pub fn is_nil(&self) -> bool {
        self.raw[0] == 0xc0
    }

    pub fn as_bool(&self) -> Option<bool> {
        self.reader().read_bool().ok()
    }

    /// Any integer that fits an i64.
    pub fn as_i64(&self) -> Option<i64> {
        self.reader().read_i64().ok()
    }

    /// Any non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        self.reader().read_u64().ok()
    }

    /// Any number (integer or float) as f64.
    pub fn as_f64(&self) -> Option<f64> {
        self.reader().read_number().ok()
    }

    /// A str (None if not a str or not UTF-8). Borrows the request buffer.
    pub fn as_str(&self) -> Option<&'static str> {
        self.reader().read_str().ok()
    }

    /// A bin's bytes. Borrows the request buffer.
    pub fn as_bytes(&self) -> Option<&'static [u8]> {
        self.reader().read_bin().ok()
    }

    /// An ext's (type, data).
    pub fn as_ext(&self) -> Option<(i8, &'static [u8])> {
        self.reader().read_ext().ok()
    }

    /// Number of elements of an array, pairs of a map, bytes of a str/bin/ext;
    /// 0 for anything else.
    pub fn len(&self) -> usize {
        let mut r = self.reader();
        match self.kind() {
            Kind::Array => r.read_array_len().unwrap_or(0) as usize,
            Kind::Map => r.read_map_len().unwrap_or(0) as usize,
            Kind::Str => r.read_str_bytes().map(|s| s.len()).unwrap_or(0),
            Kind::Bin => r.read_bin().map(|s| s.len()).unwrap_or(0),
            Kind::Ext => r.read_ext().map(|e| e.1.len()).unwrap_or(0),
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of `key` in a map (str keys; other keys are skipped). None
    /// if absent or if this is not a map.
    pub fn get(&self, key: &str) -> Option<Value> {
        let mut r = self.reader();
        let n = r.read_map_len().ok()?;
        for _ in 0..n {
            let hit = match r.read_str_bytes() {
                Ok(k) => k == key.as_bytes(),
                Err(_) => {
                    r.skip().ok()?;
                    false
                }
            };
            if hit {
                return r.read_value().ok();
            }
            r.skip().ok()?;
        }
        None
    }

    /// Element `i` of an array.
    pub fn at(&self, i: usize) -> Option<Value> {
        let mut r = self.reader();
        let n = r.read_array_len().ok()? as usize;
        if i >= n {
            return None;
        }
        for _ in 0..i {
            r.skip().ok()?;
        }
        r.read_value().ok()
    }

    /// The elements of an array (empty if not an array).
    pub fn items(&self) -> Items {
        let mut r = self.reader();
        let n = r.read_array_len().unwrap_or(0);
        Items { r, left: n }
    }

    /// The (key, value) pairs of a map (empty if not a map).
    pub fn entries(&self) -> Entries {
        let mut r = self.reader();
        let n = r.read_map_len().unwrap_or(0);
        Entries { r, left: n }
    }

    /// `get(key)` as a str.
    pub fn get_str(&self, key: &str) -> Option<&'static str> {
        self.get(key).and_then(|v| v.as_str())
    }

    /// `get(key)` as an i64.
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(|v| v.as_i64())
    }

    /// `get(key)` as an f64 (integers converted).
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(|v| v.as_f64())
    }

    /// `get(key)` as a bool.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(|v| v.as_bool())
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind() {
            Kind::Nil => f.write_str("nil"),
            Kind::Bool => write!(f, "{}", self.as_bool().unwrap_or(false)),
            Kind::Int => match self.as_i64() {
                Some(v) => write!(f, "{}", v),
                None => write!(f, "{}", self.as_u64().unwrap_or(0)),
            },
            Kind::Float => write!(f, "{:?}", self.as_f64().unwrap_or(0.0)),
            Kind::Str => match self.as_str() {
                Some(s) => write!(f, "{:?}", s),
                None => f.write_str("<invalid utf-8>"),
            },
            Kind::Bin => write!(f, "b{:?}", self.as_bytes().unwrap_or(&[])),
            Kind::Ext => write!(f, "{:?}", self.as_ext()),
            Kind::Array => f.debug_list().entries(self.items()).finish(),
            Kind::Map => f.debug_map().entries(self.entries()).finish(),
        }
    }
}

/// Iterator over an array's elements.
#[derive(Clone)]
pub struct Items {
    r: Reader<'static>,
    left: u32,
}

impl Iterator for Items {
    type Item = Value;
    fn next(&mut self) -> Option<Value> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        self.r.read_value().ok()
    }
}

/// Iterator over a map's (key, value) pairs.
#[derive(Clone)]
pub struct Entries {
    r: Reader<'static>,
    left: u32,
}

impl Iterator for Entries {
    type Item = (Value, Value);
    fn next(&mut self) -> Option<(Value, Value)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let k = self.r.read_value().ok()?;
        let v = self.r.read_value().ok()?;
        Some((k, v))
    }
}

// ============================================================================
// 2. msgpack writer
// ============================================================================

/// A msgpack writer into a growable buffer. Every `write_*` uses the
/// smallest encoding.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer { buf: Vec::new() }
    }

    pub fn with_capacity(n: usize) -> Self {
        Writer { buf: Vec::with_capacity(n) }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Reserve room for `n` more bytes (before a big `write_raw`).
    pub fn reserve(&mut self, n: usize) {
        self.buf.reserve(n);
    }

    #[inline]
    fn tagged(&mut self, tag: u8, v: u64, n: usize) {
        let be = v.to_be_bytes();
        self.buf.push(tag);
        self.buf.extend_from_slice(&be[8 - n..]);
    }

    /// Already-encoded msgpack bytes (e.g. [`Value::raw`]).
    #[inline]
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn write_nil(&mut self) {
        self.buf.push(0xc0);
    }

    pub fn write_bool(&mut self, v: bool) {
        self.buf.push(if v { 0xc3 } else { 0xc2 });
    }

    /// positive fixint, uint8/16/32/64.
    pub fn write_u64(&mut self, v: u64) {
        if v <= 0x7f {
            self.buf.push(v as u8);
        } else if v <= 0xff {
            self.tagged(0xcc, v, 1);
        } else if v <= 0xffff {
            self.tagged(0xcd, v, 2);
        } else if v <= 0xffff_ffff {
            self.tagged(0xce, v, 4);
        } else {
            self.tagged(0xcf, v, 8);
        }
    }

    /// Non-negative as `write_u64`; negative as negative fixint,
    /// int8/16/32/64.
    pub fn write_i64(&mut self, v: i64) {
        if v >= 0 {
            self.write_u64(v as u64);
        } else if v >= -32 {
            self.buf.push(v as u8);
        } else if v >= i8::MIN as i64 {
            self.tagged(0xd0, v as u64, 1);
        } else if v >= i16::MIN as i64 {
            self.tagged(0xd1, v as u64, 2);
        } else if v >= i32::MIN as i64 {
            self.tagged(0xd2, v as u64, 4);
        } else {
            self.tagged(0xd3, v as u64, 8);
        }
    }

    pub fn write_f64(&mut self, v: f64) {
        self.tagged(0xcb, v.to_bits(), 8);
    }

    pub fn write_f32(&mut self, v: f32) {
        self.tagged(0xca, v.to_bits() as u64, 4);
    }

    /// Only the header of a str of `len` bytes (append them with
    /// `write_raw`).
    pub fn write_str_header(&mut self, len: usize) {
        let n = len as u64;
        if n <= 31 {
            self.buf.push(0xa0 | n as u8);
        } else if n <= 0xff {
            self.tagged(0xd9, n, 1);
        } else if n <= 0xffff {
            self.tagged(0xda, n, 2);
        } else {
            self.tagged(0xdb, n, 4);
        }
    }

    pub fn write_str(&mut self, s: &str) {
        self.write_str_header(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// Only the header of a bin of `len` bytes.
    pub fn write_bin_header(&mut self, len: usize) {
        let n = len as u64;
        if n <= 0xff {
            self.tagged(0xc4, n, 1);
        } else if n <= 0xffff {
            self.tagged(0xc5, n, 2);
        } else {
            self.tagged(0xc6, n, 4);
        }
    }

    pub fn write_bin(&mut self, b: &[u8]) {
        self.write_bin_header(b.len());
        self.buf.extend_from_slice(b);
    }

    /// Array header: `n` values must follow.
    pub fn write_array_header(&mut self, n: u32) {
        if n <= 15 {
            self.buf.push(0x90 | n as u8);
        } else if n <= 0xffff {
            self.tagged(0xdc, n as u64, 2);
        } else {
            self.tagged(0xdd, n as u64, 4);
        }
    }

    /// Map header: `n` key/value PAIRS must follow.
    pub fn write_map_header(&mut self, n: u32) {
        if n <= 15 {
            self.buf.push(0x80 | n as u8);
        } else if n <= 0xffff {
            self.tagged(0xde, n as u64, 2);
        } else {
            self.tagged(0xdf, n as u64, 4);
        }
    }

    /// An ext, fixext when `data.len()` is 1/2/4/8/16.
    pub fn write_ext(&mut self, typ: i8, data: &[u8]) {
        let n = data.len() as u64;
        match n {
            1 => self.buf.push(0xd4),
            2 => self.buf.push(0xd5),
            4 => self.buf.push(0xd6),
            8 => self.buf.push(0xd7),
            16 => self.buf.push(0xd8),
            _ if n <= 0xff => self.tagged(0xc7, n, 1),
            _ if n <= 0xffff => self.tagged(0xc8, n, 2),
            _ => self.tagged(0xc9, n, 4),
        }
        self.buf.push(typ as u8);
        self.buf.extend_from_slice(data);
    }

    /// Any [`Encode`] value.
    #[inline]
    pub fn write<T: Encode + ?Sized>(&mut self, v: &T) {
        v.encode(self);
    }
}

/// Something that writes itself as exactly ONE msgpack value. A handler's
/// `Ok` value must implement it. Implemented for `()` / `Option::None` (nil),
/// bool, all integers, f32/f64, str/String, [`Value`] (copied verbatim),
/// [`Bin`], [`Raw`], [`Ext`], slices/Vec/arrays (arrays), tuples up to 12
/// (arrays), `BTreeMap`/`HashMap` with str keys, and [`obj!`] maps.
pub trait Encode {
    fn encode(&self, w: &mut Writer);

    /// Bytes this value will take, if cheaply known (sizes the buffer).
    #[doc(hidden)]
    fn size_hint(&self) -> usize {
        32
    }

    /// The value's span when it is a [`Value`] (zero-copy responses).
    #[doc(hidden)]
    fn as_value(&self) -> Option<Value> {
        None
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encode(&self, w: &mut Writer) {
        (**self).encode(w)
    }
    fn size_hint(&self) -> usize {
        (**self).size_hint()
    }
    fn as_value(&self) -> Option<Value> {
        (**self).as_value()
    }
}

impl<T: Encode + ?Sized> Encode for Box<T> {
    fn encode(&self, w: &mut Writer) {
        (**self).encode(w)
    }
    fn size_hint(&self) -> usize {
        (**self).size_hint()
    }
    fn as_value(&self) -> Option<Value> {
        (**self).as_value()
    }
}

impl Encode for Value {
    fn encode(&self, w: &mut Writer) {
        w.write_raw(self.raw)
    }
    fn size_hint(&self) -> usize {
        self.raw.len()
    }
    fn as_value(&self) -> Option<Value> {
        Some(*self)
    }
}

impl Encode for () {
    fn encode(&self, w: &mut Writer) {
        w.write_nil()
    }
}

impl Encode for bool {
    fn encode(&self, w: &mut Writer) {
        w.write_bool(*self)
    }
}

macro_rules! encode_ints {
    ($m:ident as $t:ty: $($ty:ty),*) => {$(
        impl Encode for $ty {
            #[inline]
            fn encode(&self, w: &mut Writer) { w.$m(*self as $t) }
        }
    )*};
}
encode_ints!(write_i64 as i64: i8, i16, i32, i64, isize);
encode_ints!(write_u64 as u64: u8, u16, u32, u64, usize);

impl Encode for f64 {
    fn encode(&self, w: &mut Writer) {
        w.write_f64(*self)
    }
}

impl Encode for f32 {
    fn encode(&self, w: &mut Writer) {
        w.write_f32(*self)
    }
}

impl Encode for str {
    fn encode(&self, w: &mut Writer) {
        w.write_str(self)
    }
    fn size_hint(&self) -> usize {
        self.len() + 5
    }
}

impl Encode for String {
    fn encode(&self, w: &mut Writer) {
        w.write_str(self)
    }
    fn size_hint(&self) -> usize {
        self.len() + 5
    }
}

impl<'a> Encode for Cow<'a, str> {
    fn encode(&self, w: &mut Writer) {
        w.write_str(self)
    }
    fn size_hint(&self) -> usize {
        self.len() + 5
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, w: &mut Writer) {
        match self {
            Some(v) => v.encode(w),
            None => w.write_nil(),
        }
    }
    fn size_hint(&self) -> usize {
        self.as_ref().map_or(1, |v| v.size_hint())
    }
    fn as_value(&self) -> Option<Value> {
        self.as_ref().and_then(|v| v.as_value())
    }
}

impl<T: Encode> Encode for [T] {
    fn encode(&self, w: &mut Writer) {
        w.write_array_header(self.len() as u32);
        for v in self {
            v.encode(w);
        }
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, w: &mut Writer) {
        self.as_slice().encode(w)
    }
}

impl<T: Encode, const N: usize> Encode for [T; N] {
    fn encode(&self, w: &mut Writer) {
        self.as_slice().encode(w)
    }
}

macro_rules! encode_tuples {
    ($($n:expr => ($($name:ident . $idx:tt),+);)*) => {$(
        impl<$($name: Encode),+> Encode for ($($name,)+) {
            fn encode(&self, w: &mut Writer) {
                w.write_array_header($n);
                $(self.$idx.encode(w);)+
            }
        }
    )*};
}
encode_tuples! {
    1 => (A.0);
    2 => (A.0, B.1);
    3 => (A.0, B.1, C.2);
    4 => (A.0, B.1, C.2, D.3);
    5 => (A.0, B.1, C.2, D.3, E.4);
    6 => (A.0, B.1, C.2, D.3, E.4, F.5);
    7 => (A.0, B.1, C.2, D.3, E.4, F.5, G.6);
    8 => (A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7);
    9 => (A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8);
    10 => (A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9);
    11 => (A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10);
    12 => (A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7, I.8, J.9, K.10, L.11);
}

impl<K: AsRef<str>, V: Encode> Encode for BTreeMap<K, V> {
    fn encode(&self, w: &mut Writer) {
        w.write_map_header(self.len() as u32);
        for (k, v) in self {
            w.write_str(k.as_ref());
            v.encode(w);
        }
    }
}

impl<K: AsRef<str>, V: Encode, S: BuildHasher> Encode for HashMap<K, V, S> {
    fn encode(&self, w: &mut Writer) {
        w.write_map_header(self.len() as u32);
        for (k, v) in self {
            w.write_str(k.as_ref());
            v.encode(w);
        }
    }
}

/// Binary data, written as msgpack bin (a plain `Vec<u8>` is an array of
/// integers).
#[derive(Clone, Copy, Debug)]
pub struct Bin<T: AsRef<[u8]>>(pub T);

impl<T: AsRef<[u8]>> Encode for Bin<T> {
    fn encode(&self, w: &mut Writer) {
        w.write_bin(self.0.as_ref())
    }
    fn size_hint(&self) -> usize {
        self.0.as_ref().len() + 5
    }
}

/// Already-encoded msgpack, copied verbatim (must be exactly one value).
#[derive(Clone, Copy, Debug)]
pub struct Raw<T: AsRef<[u8]>>(pub T);

impl<T: AsRef<[u8]>> Encode for Raw<T> {
    fn encode(&self, w: &mut Writer) {
        w.write_raw(self.0.as_ref())
    }
    fn size_hint(&self) -> usize {
        self.0.as_ref().len()
    }
}

/// An ext value (type, data).
#[derive(Clone, Copy, Debug)]
pub struct Ext<T: AsRef<[u8]>>(pub i8, pub T);

impl<T: AsRef<[u8]>> Encode for Ext<T> {
    fn encode(&self, w: &mut Writer) {
        w.write_ext(self.0, self.1.as_ref())
    }
}

/// A map with fields known at compile time, built by [`obj!`]; no
/// allocation, keys in the order written.
pub struct Obj<F: Fields>(pub F);

/// The fields of an [`Obj`] (a compile-time list; see [`obj!`]).
pub trait Fields {
    const LEN: u32;
    fn encode_fields(&self, w: &mut Writer);
}

/// End of an [`obj!`] field list.
pub struct End;

/// One [`obj!`] field followed by the rest.
pub struct Field<K: AsRef<str>, V: Encode, R: Fields>(pub K, pub V, pub R);

impl Fields for End {
    const LEN: u32 = 0;
    fn encode_fields(&self, _: &mut Writer) {}
}

impl<K: AsRef<str>, V: Encode, R: Fields> Fields for Field<K, V, R> {
    const LEN: u32 = 1 + R::LEN;
    #[inline]
    fn encode_fields(&self, w: &mut Writer) {
        w.write_str(self.0.as_ref());
        self.1.encode(w);
        self.2.encode_fields(w);
    }
}

impl<F: Fields> Encode for Obj<F> {
    fn encode(&self, w: &mut Writer) {
        w.write_map_header(F::LEN);
        self.0.encode_fields(w);
    }
}

/// A msgpack map literal: `obj! { "statusCode" => 200, "body" => "hi" }`.
/// Keys are anything `AsRef<str>`, values anything [`Encode`]; no
/// allocation.
#[macro_export]
macro_rules! obj {
    () => { $crate::Obj($crate::End) };
    ($($rest:tt)+) => { $crate::Obj($crate::__obj_fields!($($rest)+)) };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __obj_fields {
    ($k:expr => $v:expr $(,)?) => { $crate::Field($k, $v, $crate::End) };
    ($k:expr => $v:expr, $($rest:tt)+) => { $crate::Field($k, $v, $crate::__obj_fields!($($rest)+)) };
}

/// Encode `v` into a fresh byte vector.
pub fn to_vec<T: Encode + ?Sized>(v: &T) -> Vec<u8> {
    let mut w = Writer::with_capacity(v.size_hint());
    v.encode(&mut w);
    w.buf
}

// ============================================================================
// 3. errors
// ============================================================================

/// An error a handler can return: it becomes the response
/// `{"error": {"type": error_type(), "message": to_string()}}`, which the
/// host reports as `FunctionError` with `error_type`.
///
/// `error_type` defaults to the type's name (`MyError` for
/// `my_crate::MyError`); override it, e.g. per enum variant:
///
/// ```ignore
/// impl wasmhost::FunctionError for MyError {
///     fn error_type(&self) -> Cow<'_, str> {
///         match self { MyError::NotFound(_) => "NotFound".into(), _ => "MyError".into() }
///     }
/// }
/// ```
pub trait FunctionError: fmt::Display {
    fn error_type(&self) -> Cow<'_, str> {
        Cow::Borrowed(short_type_name(std::any::type_name::<Self>()))
    }
}

/// `a::b::Name<c::D>` -> `Name`.
fn short_type_name(full: &str) -> &str {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// A function error with an explicit type and message:
/// `Error::new("ValidationError", "name is required")`.
#[derive(Clone, Debug)]
pub struct Error {
    pub kind: Cow<'static, str>,
    pub message: Cow<'static, str>,
}

impl Error {
    pub fn new(kind: impl Into<Cow<'static, str>>, message: impl Into<Cow<'static, str>>) -> Error {
        Error { kind: kind.into(), message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl FunctionError for Error {
    fn error_type(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.kind)
    }
}

/// `Error::new(type, format!(...))`: `return Err(wasmhost::error!("NotFound", "no item {}", id));`
#[macro_export]
macro_rules! error {
    ($kind:expr, $($fmt:tt)+) => { $crate::Error::new($kind, ::std::format!($($fmt)+)) };
}

/// `Result<T, wasmhost::Error>` (the error type can be changed).
pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! function_errors {
    ($($t:ty => $name:expr),* $(,)?) => {$(
        impl FunctionError for $t {
            fn error_type(&self) -> Cow<'_, str> { Cow::Borrowed($name) }
        }
    )*};
}
function_errors! {
    String => "Error",
    &'static str => "Error",
    Box<dyn std::error::Error> => "Error",
    Box<dyn std::error::Error + Send + Sync> => "Error",
    DecodeError => "DecodeError",
    std::num::ParseIntError => "ParseIntError",
    std::num::ParseFloatError => "ParseFloatError",
    std::num::TryFromIntError => "TryFromIntError",
    std::str::Utf8Error => "Utf8Error",
    std::string::FromUtf8Error => "FromUtf8Error",
    std::fmt::Error => "FmtError",
    std::io::Error => "IoError",
    std::convert::Infallible => "Infallible",
}

// ============================================================================
// 4. context and clock
// ============================================================================

/// The invocation's context (the request's `context` map). Strings borrow
/// the request buffer.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context {
    pub request_id: &'static str,
    pub function_name: &'static str,
    pub function_version: &'static str,
    pub memory_limit_mb: i64,
    /// Unix epoch ms at which the host stops the invocation (`Timeout`); 0
    /// if the host sent none.
    pub deadline_ms: i64,
}

impl Context {
    /// Milliseconds left before `Timeout` (negative once past it; i64::MAX
    /// without a deadline).
    pub fn remaining_ms(&self) -> i64 {
        if self.deadline_ms <= 0 {
            return i64::MAX;
        }
        self.deadline_ms - now_ms()
    }

    /// Time left before `Timeout` (zero once past it).
    pub fn remaining(&self) -> Duration {
        Duration::from_millis(self.remaining_ms().max(0) as u64)
    }
}

/// Wall clock, Unix epoch milliseconds (WASI `clock_time_get(realtime)`).
pub fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(_) => 0,
    }
}

// ============================================================================
// 5. arena allocator
// ============================================================================

const ARENA_SIZE: usize = 64 * 1024;

#[repr(C, align(16))]
struct ArenaMem([u8; ARENA_SIZE]);

static mut ARENA: ArenaMem = ArenaMem([0; ARENA_SIZE]);
static mut ARENA_USED: usize = 0;

/// The global allocator `handler!` installs: a bump arena of 64 KiB in
/// static memory (the request buffer, the context, the response and small
/// allocations of the handler), then the system allocator (wasi-libc's
/// malloc) once it is full. Every invocation runs in a fresh instance, so
/// arena memory is never reused; freeing or growing the most recent arena
/// block is done in place. Small invocations thus never call malloc and
/// never grow linear memory.
pub struct ArenaAlloc;

#[inline]
#[allow(unused_unsafe)] // needed before Rust 1.82 (addr_of_mut! of a static mut)
fn arena_base() -> usize {
    unsafe { std::ptr::addr_of_mut!(ARENA) as usize }
}

#[inline]
fn in_arena(p: *mut u8) -> bool {
    let a = p as usize;
    let base = arena_base();
    a >= base && a < base + ARENA_SIZE
}

unsafe impl GlobalAlloc for ArenaAlloc {
    #[inline]
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // wasm is single-threaded: no synchronisation needed.
        let base = arena_base();
        let start = (base + ARENA_USED + l.align() - 1) & !(l.align() - 1);
        let off = start - base;
        if off <= ARENA_SIZE && l.size() <= ARENA_SIZE - off {
            ARENA_USED = off + l.size();
            return start as *mut u8;
        }
        System.alloc(l)
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if in_arena(p) {
            // pop the most recent block; other arena blocks are just dropped
            if p as usize + l.size() == arena_base() + ARENA_USED {
                ARENA_USED = p as usize - arena_base();
            }
        } else {
            System.dealloc(p, l)
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        if !in_arena(p) {
            return System.realloc(p, l, new_size);
        }
        let off = p as usize - arena_base();
        // the most recent block grows or shrinks in place when it fits
        if off + l.size() == ARENA_USED && new_size <= ARENA_SIZE - off {
            ARENA_USED = off + new_size;
            return p;
        }
        if new_size <= l.size() {
            return p;
        }
        let nl = Layout::from_size_align_unchecked(new_size, l.align());
        let np = self.alloc(nl);
        if !np.is_null() {
            std::ptr::copy_nonoverlapping(p, np, l.size());
            self.dealloc(p, l);
        }
        np
    }
}

// ============================================================================
// 6. ABI glue (used by handler!)
// ============================================================================

/// Define the module's ABI exports for `handler` and install [`ArenaAlloc`]
/// as the global allocator. `handler` is a `fn(Value, &Context) -> Result<T,
/// E>` (or a closure) with `T: Encode` and `E: FunctionError`. Use once per
/// module.
#[macro_export]
macro_rules! handler {
    ($handler:expr) => {
        #[global_allocator]
        static __WASMHOST_ALLOC: $crate::ArenaAlloc = $crate::ArenaAlloc;

        #[no_mangle]
        pub extern "C" fn wasmhost_alloc(len: u32) -> u32 {
            $crate::__alloc(len)
        }

        #[no_mangle]
        pub unsafe extern "C" fn wasmhost_handle(ptr: u32, len: u32) -> u64 {
            $crate::__handle(ptr, len, $handler)
        }
    };
}

#[doc(hidden)]
pub fn __alloc(len: u32) -> u32 {
    let layout = match Layout::from_size_align((len as usize).max(1), 8) {
        Ok(l) => l,
        Err(_) => return 0,
    };
    // the global allocator is ArenaAlloc (installed by handler!)
    unsafe { std::alloc::alloc(layout) as u32 }
}

/// `{"ok":`
const OK_PREFIX: [u8; 4] = [0x81, 0xa2, b'o', b'k'];

#[inline]
fn pack(p: *const u8, len: usize) -> u64 {
    ((p as u32 as u64) << 32) | (len as u32 as u64)
}

fn respond(buf: Vec<u8>) -> u64 {
    let r = pack(buf.as_ptr(), buf.len());
    std::mem::forget(buf); // the instance is discarded after the call
    r
}

fn error_response(kind: &str, message: &str) -> u64 {
    let mut w = Writer::with_capacity(24 + kind.len() + message.len());
    w.write_map_header(1);
    w.write_str("error");
    w.write_map_header(2);
    w.write_str("type");
    w.write_str(kind);
    w.write_str("message");
    w.write_str(message);
    respond(w.buf)
}

/// Parse the request map. Returns (event, context) or the InvalidRequest
/// message.
fn parse_request(req: &'static [u8]) -> std::result::Result<(Value, Context), &'static str> {
    const BAD: &str = "request is not valid msgpack";
    let mut r = Reader::new(req);
    let n = r.read_map_len().map_err(|_| "request is not a msgpack map")?;
    let mut event = None;
    let mut ctx = None;
    for _ in 0..n {
        let key = match r.read_str_bytes() {
            Ok(k) => k,
            Err(_) => {
                r.skip().map_err(|_| BAD)?;
                r.skip().map_err(|_| BAD)?;
                continue;
            }
        };
        match key {
            b"event" => event = Some(r.read_value().map_err(|_| BAD)?),
            b"context" => ctx = Some(parse_context(&mut r)?),
            _ => r.skip().map_err(|_| BAD)?,
        }
    }
    if !r.is_empty() {
        return Err("trailing bytes after the request map");
    }
    let event = event.ok_or("request has no \"event\" key")?;
    let ctx = ctx.ok_or("request has no \"context\" key")?;
    Ok((event, ctx))
}

fn parse_context(r: &mut Reader<'static>) -> std::result::Result<Context, &'static str> {
    const BAD: &str = "request is not valid msgpack";
    let mut c = Context::default();
    let n = r.read_map_len().map_err(|_| "\"context\" is not a map")?;
    for _ in 0..n {
        let key = match r.read_str_bytes() {
            Ok(k) => k,
            Err(_) => {
                r.skip().map_err(|_| BAD)?;
                r.skip().map_err(|_| BAD)?;
                continue;
            }
        };
        let s = |r: &mut Reader<'static>, e: &'static str| r.read_str().map_err(|_| e);
        let i = |r: &mut Reader<'static>, e: &'static str| r.read_i64().map_err(|_| e);
        match key {
            b"request_id" => c.request_id = s(r, "context.request_id is not a string")?,
            b"function_name" => c.function_name = s(r, "context.function_name is not a string")?,
            b"function_version" => c.function_version = s(r, "context.function_version is not a string")?,
            b"memory_limit_mb" => c.memory_limit_mb = i(r, "context.memory_limit_mb is not an integer")?,
            b"deadline_ms" => c.deadline_ms = i(r, "context.deadline_ms is not an integer")?,
            _ => r.skip().map_err(|_| BAD)?,
        }
    }
    Ok(c)
}

fn flush_stdout() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

#[doc(hidden)]
pub unsafe fn __handle<F, T, E>(ptr: u32, len: u32, handler: F) -> u64
where
    F: FnOnce(Value, &Context) -> std::result::Result<T, E>,
    T: Encode,
    E: FunctionError,
{
    let base = ptr as usize as *mut u8;
    let req: &'static [u8] = std::slice::from_raw_parts(base, len as usize);
    let (event, ctx) = match parse_request(req) {
        Ok(v) => v,
        Err(msg) => return error_response("InvalidRequest", msg),
    };
    let result = handler(event, &ctx);
    flush_stdout();
    match result {
        Ok(v) => {
            if let Some(val) = v.as_value() {
                let raw = val.raw();
                let off = raw.as_ptr() as usize - base as usize;
                // The result is the event itself (echo): answer in place. The
                // 4 bytes before the event are the tail of its "event" key
                // (5 bytes of key text always precede the value), which nothing
                // refers to: overwrite them with {"ok": and point at them.
                if raw.as_ptr() == event.raw().as_ptr() && raw.len() == event.raw().len() && off >= 5 {
                    let start = base.add(off - 4);
                    std::ptr::copy_nonoverlapping(OK_PREFIX.as_ptr(), start, 4);
                    return pack(start, raw.len() + 4);
                }
            }
            let mut w = Writer::with_capacity(4 + v.size_hint());
            w.write_raw(&OK_PREFIX);
            v.encode(&mut w);
            respond(w.buf)
        }
        Err(e) => {
            let kind = e.error_type();
            let message = e.to_string();
            error_response(&kind, &message)
        }
    }
}

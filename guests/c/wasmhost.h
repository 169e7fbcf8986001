/*
 * wasmhost.h - C guest SDK for wasmhost (guest ABI v1), single header.
 *
 * Build a function with (guests/build.py does this for the examples):
 *
 *     python -m ziglang cc -target wasm32-wasi -mexec-model=reactor -O2 -s \
 *         -Wl,-z,stack-size=1048576 -I guests/c -o hello.wasm hello.c
 *
 * (-s drops zig's ~900 KiB of libc DWARF; the stack size replaces zig's
 * 16 MiB default, which would force >16 MiB of initial memory.)
 *
 * Write it as:
 *
 *     #include "wasmhost.h"
 *
 *     static int handle(wh_reader event, const wh_context *ctx, wh_writer *out) {
 *         uint32_t len;
 *         const char *name = wh_get_str(event, "name", &len); // not NUL-terminated
 *         if (!name) return wh_fail(out, "ValidationError", "name is required");
 *         wh_write_map(out, 1);
 *         wh_write_str(out, "greeting");
 *         wh_write_strn(out, name, len);
 *         return 0;
 *     }
 *     WASMHOST_HANDLER(handle);
 *
 * The handler writes exactly ONE msgpack value (its result) into `out` and
 * returns 0, or returns wh_fail(...). See guests/ABI.md for the wire format.
 *
 * Contents:
 *   1. msgpack reader  (wh_reader, wh_peek, wh_read_*, wh_skip, wh_map_find,
 *                       wh_get_*)
 *   2. msgpack writer  (wh_writer, wh_write_*)
 *   3. guest ABI glue  (wh_context, wh_fail, wh_now_ms, wh_remaining_ms,
 *                       WASMHOST_HANDLER)
 *
 * Everything is `static`; the only non-static symbols are the two exports
 * that WASMHOST_HANDLER defines (use it exactly once per module).
 *
 * Reader conventions: errors are sticky. The first failure (truncated input,
 * wrong type, out-of-range integer, reserved byte 0xc1) sets `r->err`; from
 * then on every read on that reader returns a zero value / NULL and does not
 * move. Reads never look past `end`. Check `r.err` once after a sequence of
 * reads, or `wh_peek` first when a value may have several types.
 *
 * Writer conventions: the buffer grows with realloc. If an allocation fails
 * `w->err` is set and further writes are ignored; the ABI glue then answers
 * {"error": {"type": "OutOfMemory", ...}}.
 *
 * Output buffering: after the handler returns the glue calls fflush(NULL), so
 * buffered stdout reaches the invocation's log. (Define WASMHOST_NO_AUTOFLUSH
 * before including this header to drop that.) Output still buffered when the
 * guest traps is lost; stderr is unbuffered.
 */
#ifndef WASMHOST_H
#define WASMHOST_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifndef WASMHOST_NO_AUTOFLUSH
#include <stdio.h>
#endif

#define WH_ABI_VERSION 1

#define WH_API static __attribute__((unused))

/* ========================================================================== */
/* 1. msgpack reader                                                          */
/* ========================================================================== */

/* Value types as seen by wh_peek. WH_INT covers every integer encoding
 * (fixint, negative fixint, uint8..64, int8..64); WH_FLOAT covers float32 and
 * float64. WH_NONE means: no more input, reader in error, or byte 0xc1. */
typedef enum {
    WH_NONE = 0,
    WH_NIL,
    WH_BOOL,
    WH_INT,
    WH_FLOAT,
    WH_STR,
    WH_BIN,
    WH_ARRAY,
    WH_MAP,
    WH_EXT
} wh_type;

/* Values of wh_reader.err. */
enum {
    WH_OK = 0,
    WH_ERR_EOF = 1,    /* value runs past `end` */
    WH_ERR_TYPE = 2,   /* value is not of the requested type */
    WH_ERR_RANGE = 3,  /* integer does not fit the requested C type */
    WH_ERR_INVALID = 4 /* reserved byte 0xc1 */
};

typedef struct {
    const uint8_t *p;   /* next byte to read */
    const uint8_t *end; /* one past the last readable byte */
    int err;            /* WH_OK or the first WH_ERR_* met (sticky) */
} wh_reader;

/* A reader over `len` bytes at `data`. */
WH_API wh_reader wh_reader_init(const void *data, size_t len) {
    wh_reader r;
    r.p = (const uint8_t *)data;
    r.end = r.p ? r.p + len : r.p;
    r.err = WH_OK;
    return r;
}

static inline uint16_t wh__be16(const uint8_t *q) {
    return (uint16_t)(((uint16_t)q[0] << 8) | q[1]);
}
static inline uint32_t wh__be32(const uint8_t *q) {
    return ((uint32_t)q[0] << 24) | ((uint32_t)q[1] << 16) | ((uint32_t)q[2] << 8) | q[3];
}
static inline uint64_t wh__be64(const uint8_t *q) {
    return ((uint64_t)wh__be32(q) << 32) | wh__be32(q + 4);
}
/* Big-endian unsigned integer of n (1, 2, 4, 8) bytes. */
static inline uint64_t wh__ben(const uint8_t *q, size_t n) {
    switch (n) {
    case 1: return q[0];
    case 2: return wh__be16(q);
    case 4: return wh__be32(q);
    default: return wh__be64(q);
    }
}

/* Is there room for n more bytes? Sets WH_ERR_EOF if not. */
static inline int wh__need(wh_reader *r, size_t n) {
    if (r->err) return 0;
    if ((size_t)(r->end - r->p) < n) {
        r->err = WH_ERR_EOF;
        return 0;
    }
    return 1;
}

static inline size_t wh__left(const wh_reader *r) {
    return (size_t)(r->end - r->p);
}

/* Type of the next value, without consuming it. */
WH_API wh_type wh_peek(const wh_reader *r) {
    if (r->err || r->p >= r->end) return WH_NONE;
    uint8_t b = r->p[0];
    if (b <= 0x7f || b >= 0xe0) return WH_INT;
    if (b <= 0x8f) return WH_MAP;
    if (b <= 0x9f) return WH_ARRAY;
    if (b <= 0xbf) return WH_STR;
    switch (b) {
    case 0xc0: return WH_NIL;
    case 0xc2: case 0xc3: return WH_BOOL;
    case 0xc4: case 0xc5: case 0xc6: return WH_BIN;
    case 0xc7: case 0xc8: case 0xc9: return WH_EXT;
    case 0xca: case 0xcb: return WH_FLOAT;
    case 0xd9: case 0xda: case 0xdb: return WH_STR;
    case 0xdc: case 0xdd: return WH_ARRAY;
    case 0xde: case 0xdf: return WH_MAP;
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: return WH_EXT;
    case 0xc1: return WH_NONE;
    default: return WH_INT; /* 0xcc..0xd3 */
    }
}

/* True if the reader has consumed all its bytes without error. */
WH_API int wh_at_end(const wh_reader *r) {
    return !r->err && r->p == r->end;
}

/* Consume a nil. Returns 1 on success. */
WH_API int wh_read_nil(wh_reader *r) {
    if (!wh__need(r, 1)) return 0;
    if (r->p[0] != 0xc0) { r->err = WH_ERR_TYPE; return 0; }
    r->p++;
    return 1;
}

/* Consume a bool; returns 0 or 1 (0 on error). */
WH_API int wh_read_bool(wh_reader *r) {
    if (!wh__need(r, 1)) return 0;
    uint8_t b = r->p[0];
    if (b != 0xc2 && b != 0xc3) { r->err = WH_ERR_TYPE; return 0; }
    r->p++;
    return b == 0xc3;
}

/* Decode any integer encoding into a 64-bit two's complement value.
 * *neg is set when the value is negative (only possible for signed
 * encodings). Returns 1 on success. */
WH_API int wh__read_intval(wh_reader *r, uint64_t *v, int *neg) {
    if (!wh__need(r, 1)) return 0;
    uint8_t b = r->p[0];
    if (b <= 0x7f) { *v = b; *neg = 0; r->p++; return 1; }
    if (b >= 0xe0) { *v = (uint64_t)(int64_t)(int8_t)b; *neg = 1; r->p++; return 1; }
    size_t n;
    int is_signed;
    switch (b) {
    case 0xcc: n = 1; is_signed = 0; break;
    case 0xcd: n = 2; is_signed = 0; break;
    case 0xce: n = 4; is_signed = 0; break;
    case 0xcf: n = 8; is_signed = 0; break;
    case 0xd0: n = 1; is_signed = 1; break;
    case 0xd1: n = 2; is_signed = 1; break;
    case 0xd2: n = 4; is_signed = 1; break;
    case 0xd3: n = 8; is_signed = 1; break;
    default: r->err = WH_ERR_TYPE; return 0;
    }
    if (!wh__need(r, 1 + n)) return 0;
    uint64_t x = wh__ben(r->p + 1, n);
    if (is_signed && n < 8 && ((x >> (8 * n - 1)) & 1)) x |= ~(uint64_t)0 << (8 * n);
    *v = x;
    *neg = is_signed && (int64_t)x < 0;
    r->p += 1 + n;
    return 1;
}

/* Consume an integer of any encoding as int64_t. uint64 values above
 * INT64_MAX set WH_ERR_RANGE. Returns 0 on error. */
WH_API int64_t wh_read_int(wh_reader *r) {
    uint64_t v;
    int neg;
    if (!wh__read_intval(r, &v, &neg)) return 0;
    if (!neg && v > (uint64_t)INT64_MAX) { r->err = WH_ERR_RANGE; return 0; }
    return (int64_t)v;
}

/* Consume a non-negative integer of any encoding as uint64_t. Negative
 * values set WH_ERR_RANGE. Returns 0 on error. */
WH_API uint64_t wh_read_uint(wh_reader *r) {
    uint64_t v;
    int neg;
    if (!wh__read_intval(r, &v, &neg)) return 0;
    if (neg) { r->err = WH_ERR_RANGE; return 0; }
    return v;
}

/* Consume a float32 or float64. Returns 0.0 on error. */
WH_API double wh_read_float(wh_reader *r) {
    if (!wh__need(r, 1)) return 0.0;
    uint8_t b = r->p[0];
    if (b == 0xca) {
        if (!wh__need(r, 5)) return 0.0;
        uint32_t bits = wh__be32(r->p + 1);
        float f;
        memcpy(&f, &bits, sizeof f);
        r->p += 5;
        return (double)f;
    }
    if (b == 0xcb) {
        if (!wh__need(r, 9)) return 0.0;
        uint64_t bits = wh__be64(r->p + 1);
        double d;
        memcpy(&d, &bits, sizeof d);
        r->p += 9;
        return d;
    }
    r->err = WH_ERR_TYPE;
    return 0.0;
}

/* Consume any number (integer or float) as a double. */
WH_API double wh_read_number(wh_reader *r) {
    wh_type t = wh_peek(r);
    if (t == WH_FLOAT) return wh_read_float(r);
    if (t == WH_INT) {
        uint64_t v;
        int neg;
        if (!wh__read_intval(r, &v, &neg)) return 0.0;
        return neg ? (double)(int64_t)v : (double)v;
    }
    if (!r->err) r->err = (t == WH_NONE && r->p >= r->end) ? WH_ERR_EOF : WH_ERR_TYPE;
    return 0.0;
}

/* Consume a length-prefixed value: `hdr` header bytes (tag included) whose
 * last `lenbytes` bytes are the big-endian payload length. */
WH_API const uint8_t *wh__read_lp(wh_reader *r, size_t hdr, size_t lenbytes, uint32_t *len) {
    if (!wh__need(r, hdr)) return NULL;
    uint32_t n = (uint32_t)wh__ben(r->p + hdr - lenbytes, lenbytes);
    if (wh__left(r) - hdr < n) { r->err = WH_ERR_EOF; return NULL; }
    const uint8_t *data = r->p + hdr;
    r->p = data + n;
    *len = n;
    return data;
}

/* Consume a str (fixstr, str8/16/32). Returns a pointer into the input (NOT
 * NUL-terminated) and stores its length in *len; NULL on error. */
WH_API const char *wh_read_str(wh_reader *r, uint32_t *len) {
    uint32_t dummy;
    if (!len) len = &dummy;
    *len = 0;
    if (!wh__need(r, 1)) return NULL;
    uint8_t b = r->p[0];
    const uint8_t *s;
    if ((b & 0xe0) == 0xa0) {
        uint32_t n = b & 0x1f;
        if (!wh__need(r, 1 + (size_t)n)) return NULL;
        s = r->p + 1;
        r->p = s + n;
        *len = n;
        return (const char *)s;
    }
    switch (b) {
    case 0xd9: s = wh__read_lp(r, 2, 1, len); break;
    case 0xda: s = wh__read_lp(r, 3, 2, len); break;
    case 0xdb: s = wh__read_lp(r, 5, 4, len); break;
    default: r->err = WH_ERR_TYPE; return NULL;
    }
    return (const char *)s;
}

/* Consume a bin (bin8/16/32). Returns a pointer into the input and stores the
 * length in *len; NULL on error. */
WH_API const uint8_t *wh_read_bin(wh_reader *r, uint32_t *len) {
    uint32_t dummy;
    if (!len) len = &dummy;
    *len = 0;
    if (!wh__need(r, 1)) return NULL;
    switch (r->p[0]) {
    case 0xc4: return wh__read_lp(r, 2, 1, len);
    case 0xc5: return wh__read_lp(r, 3, 2, len);
    case 0xc6: return wh__read_lp(r, 5, 4, len);
    default: r->err = WH_ERR_TYPE; return NULL;
    }
}

/* Consume an ext (fixext1..16, ext8/16/32). Stores its type byte in *type and
 * its payload length in *len; returns a pointer to the payload, NULL on
 * error. */
WH_API const uint8_t *wh_read_ext(wh_reader *r, int8_t *type, uint32_t *len) {
    int8_t dummy_t;
    uint32_t dummy_l;
    if (!type) type = &dummy_t;
    if (!len) len = &dummy_l;
    *type = 0;
    *len = 0;
    if (!wh__need(r, 1)) return NULL;
    uint8_t b = r->p[0];
    size_t fixed = 0;
    switch (b) {
    case 0xd4: fixed = 1; break;
    case 0xd5: fixed = 2; break;
    case 0xd6: fixed = 4; break;
    case 0xd7: fixed = 8; break;
    case 0xd8: fixed = 16; break;
    case 0xc7: case 0xc8: case 0xc9: break;
    default: r->err = WH_ERR_TYPE; return NULL;
    }
    if (fixed) {
        if (!wh__need(r, 2 + fixed)) return NULL;
        *type = (int8_t)r->p[1];
        *len = (uint32_t)fixed;
        const uint8_t *data = r->p + 2;
        r->p = data + fixed;
        return data;
    }
    size_t lenbytes = b == 0xc7 ? 1 : b == 0xc8 ? 2 : 4;
    size_t hdr = 1 + lenbytes + 1; /* tag, length, type */
    if (!wh__need(r, hdr)) return NULL;
    uint32_t n = (uint32_t)wh__ben(r->p + 1, lenbytes);
    if (wh__left(r) - hdr < n) { r->err = WH_ERR_EOF; return NULL; }
    *type = (int8_t)r->p[hdr - 1];
    *len = n;
    const uint8_t *data = r->p + hdr;
    r->p = data + n;
    return data;
}

/* Consume an array header; returns the element count (0 on error). The
 * elements follow; read or wh_skip each of them. */
WH_API uint32_t wh_read_array(wh_reader *r) {
    if (!wh__need(r, 1)) return 0;
    uint8_t b = r->p[0];
    uint32_t n;
    size_t hdr;
    if ((b & 0xf0) == 0x90) { n = b & 0x0f; hdr = 1; }
    else if (b == 0xdc) { if (!wh__need(r, 3)) return 0; n = wh__be16(r->p + 1); hdr = 3; }
    else if (b == 0xdd) { if (!wh__need(r, 5)) return 0; n = wh__be32(r->p + 1); hdr = 5; }
    else { r->err = WH_ERR_TYPE; return 0; }
    /* every element takes at least one byte */
    if ((uint64_t)n > wh__left(r) - hdr) { r->err = WH_ERR_EOF; return 0; }
    r->p += hdr;
    return n;
}

/* Consume a map header; returns the number of key/value PAIRS (0 on error).
 * 2*n values follow: key, value, key, value... */
WH_API uint32_t wh_read_map(wh_reader *r) {
    if (!wh__need(r, 1)) return 0;
    uint8_t b = r->p[0];
    uint32_t n;
    size_t hdr;
    if ((b & 0xf0) == 0x80) { n = b & 0x0f; hdr = 1; }
    else if (b == 0xde) { if (!wh__need(r, 3)) return 0; n = wh__be16(r->p + 1); hdr = 3; }
    else if (b == 0xdf) { if (!wh__need(r, 5)) return 0; n = wh__be32(r->p + 1); hdr = 5; }
    else { r->err = WH_ERR_TYPE; return 0; }
    if (2 * (uint64_t)n > wh__left(r) - hdr) { r->err = WH_ERR_EOF; return 0; }
    r->p += hdr;
    return n;
}

/* Skip one complete value of any type (nested arrays/maps and ext included).
 * Iterative: no recursion, so deep nesting cannot overflow the stack.
 * Returns 1 on success, 0 on error (r->err set). */
WH_API int wh_skip(wh_reader *r) {
    uint64_t pending = 1; /* values still to skip */
    while (pending) {
        if (!wh__need(r, 1)) return 0;
        uint8_t b = r->p[0];
        pending--;
        size_t hdr = 1, lenbytes = 0, fixed = 0;
        uint64_t children = 0;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) { r->p++; continue; }
        if ((b & 0xf0) == 0x80) { children = 2u * (b & 0x0fu); }
        else if ((b & 0xf0) == 0x90) { children = b & 0x0fu; }
        else if ((b & 0xe0) == 0xa0) { fixed = b & 0x1fu; }
        else {
            switch (b) {
            case 0xc4: case 0xd9: hdr = 2; lenbytes = 1; break;      /* bin8, str8 */
            case 0xc5: case 0xda: hdr = 3; lenbytes = 2; break;      /* bin16, str16 */
            case 0xc6: case 0xdb: hdr = 5; lenbytes = 4; break;      /* bin32, str32 */
            case 0xc7: hdr = 3; lenbytes = 1; break;                 /* ext8: tag len type */
            case 0xc8: hdr = 4; lenbytes = 2; break;                 /* ext16 */
            case 0xc9: hdr = 6; lenbytes = 4; break;                 /* ext32 */
            case 0xca: fixed = 4; break;                             /* float32 */
            case 0xcb: fixed = 8; break;                             /* float64 */
            case 0xcc: case 0xd0: fixed = 1; break;
            case 0xcd: case 0xd1: fixed = 2; break;
            case 0xce: case 0xd2: fixed = 4; break;
            case 0xcf: case 0xd3: fixed = 8; break;
            case 0xd4: fixed = 2; break;                             /* fixext1: type + 1 */
            case 0xd5: fixed = 3; break;
            case 0xd6: fixed = 5; break;
            case 0xd7: fixed = 9; break;
            case 0xd8: fixed = 17; break;
            case 0xdc: case 0xde: hdr = 3; break;                    /* array16, map16 */
            case 0xdd: case 0xdf: hdr = 5; break;                    /* array32, map32 */
            default: r->err = WH_ERR_INVALID; return 0;              /* 0xc1 */
            }
            if (b >= 0xdc && b <= 0xdf) {
                if (!wh__need(r, hdr)) return 0;
                uint64_t n = wh__ben(r->p + 1, hdr - 1);
                children = (b == 0xde || b == 0xdf) ? 2 * n : n;
            }
        }
        if (!wh__need(r, hdr)) return 0;
        uint64_t payload = fixed;
        if (lenbytes) payload = wh__ben(r->p + 1, lenbytes);
        if (payload > wh__left(r) - hdr) { r->err = WH_ERR_EOF; return 0; }
        r->p += hdr + (size_t)payload;
        pending += children;
        /* every pending value needs at least one byte */
        if (pending > wh__left(r)) { r->err = WH_ERR_EOF; return 0; }
    }
    return 1;
}

/* Consume one complete value and return its encoded bytes (pointer into the
 * input, length in *len), e.g. to copy it verbatim with wh_write_raw.
 * NULL on error. */
WH_API const uint8_t *wh_read_raw(wh_reader *r, size_t *len) {
    const uint8_t *start = r->p;
    size_t dummy;
    if (!len) len = &dummy;
    *len = 0;
    if (!wh_skip(r)) return NULL;
    *len = (size_t)(r->p - start);
    return start;
}

/* Look up `key` (klen bytes) in the map that `map` is positioned at (the
 * reader is taken by value and is not moved). On success stores in *out a
 * reader spanning exactly the value and returns 1. Returns 0 if the key is
 * absent, `map` is not a map, or the map is malformed; *out is then an empty
 * reader. Non-string keys are skipped. */
WH_API int wh_map_findn(wh_reader map, const char *key, size_t klen, wh_reader *out) {
    if (out) { out->p = out->end = NULL; out->err = WH_OK; }
    if (wh_peek(&map) != WH_MAP) return 0;
    uint32_t n = wh_read_map(&map);
    for (uint32_t i = 0; i < n && !map.err; i++) {
        int match = 0;
        if (wh_peek(&map) == WH_STR) {
            uint32_t l;
            const char *k = wh_read_str(&map, &l);
            match = k && l == klen && memcmp(k, key, klen) == 0;
        } else {
            wh_skip(&map);
        }
        const uint8_t *start = map.p;
        if (!wh_skip(&map)) return 0;
        if (match) {
            if (out) { out->p = start; out->end = map.p; out->err = WH_OK; }
            return 1;
        }
    }
    return 0;
}

/* wh_map_findn with a NUL-terminated key. */
WH_API int wh_map_find(wh_reader map, const char *key, wh_reader *out) {
    return wh_map_findn(map, key, strlen(key), out);
}

/* 1 if `map` is a map containing `key`. */
WH_API int wh_has(wh_reader map, const char *key) {
    return wh_map_find(map, key, NULL);
}

/* map[key] as int64_t, or `def` if absent / not an integer / out of range. */
WH_API int64_t wh_get_int(wh_reader map, const char *key, int64_t def) {
    wh_reader v;
    if (!wh_map_find(map, key, &v) || wh_peek(&v) != WH_INT) return def;
    int64_t x = wh_read_int(&v);
    return v.err ? def : x;
}

/* map[key] as a double (integers are converted), or `def`. */
WH_API double wh_get_number(wh_reader map, const char *key, double def) {
    wh_reader v;
    if (!wh_map_find(map, key, &v)) return def;
    wh_type t = wh_peek(&v);
    if (t != WH_INT && t != WH_FLOAT) return def;
    double x = wh_read_number(&v);
    return v.err ? def : x;
}

/* map[key] as 0/1, or `def` if absent / not a bool. */
WH_API int wh_get_bool(wh_reader map, const char *key, int def) {
    wh_reader v;
    if (!wh_map_find(map, key, &v) || wh_peek(&v) != WH_BOOL) return def;
    return wh_read_bool(&v);
}

/* map[key] as a string: pointer into the input (NOT NUL-terminated, use
 * *len), or NULL if absent / not a str. `len` may be NULL. */
WH_API const char *wh_get_str(wh_reader map, const char *key, uint32_t *len) {
    wh_reader v;
    if (len) *len = 0;
    if (!wh_map_find(map, key, &v) || wh_peek(&v) != WH_STR) return NULL;
    return wh_read_str(&v, len);
}

/* ========================================================================== */
/* 2. msgpack writer                                                          */
/* ========================================================================== */

/* A bump arena in .bss for the ABI's own buffers (request, context strings,
 * the first response buffer). Every invocation runs in a fresh instance, so
 * nothing is ever freed; small requests and answers then need no malloc and
 * never grow linear memory (growing costs the host an mprotect per page run).
 * Define WH_ARENA_SIZE before including this header to change its size. */
#ifndef WH_ARENA_SIZE
#define WH_ARENA_SIZE (64 * 1024)
#endif
static _Alignas(16) uint8_t wh__arena[WH_ARENA_SIZE];
static size_t wh__arena_used;

static inline int wh__in_arena(const void *p) {
    return (const uint8_t *)p >= wh__arena && (const uint8_t *)p < wh__arena + WH_ARENA_SIZE;
}

/* n bytes from the arena, or from malloc once the arena is full. */
static void *wh__bump(size_t n) {
    size_t start = (wh__arena_used + 15) & ~(size_t)15;
    if (n <= WH_ARENA_SIZE && start <= WH_ARENA_SIZE - n) {
        wh__arena_used = start + n;
        return wh__arena + start;
    }
    return malloc(n ? n : 1);
}

typedef struct {
    uint8_t *buf; /* bytes written so far (arena or malloc) */
    size_t len;   /* bytes used */
    size_t cap;   /* bytes allocated */
    int err;      /* 1 once an allocation failed (further writes ignored) */
    int failed;   /* 1 once wh_fail was called */
} wh_writer;

WH_API void wh_writer_init(wh_writer *w) {
    w->buf = NULL;
    w->len = w->cap = 0;
    w->err = w->failed = 0;
}

WH_API void wh_writer_free(wh_writer *w) {
    if (!wh__in_arena(w->buf)) free(w->buf);
    wh_writer_init(w);
}

/* Make room for n more bytes (grows to max(2*cap, needed)). Returns 1 on
 * success; 0 (and w->err set) if the allocation failed. Call it before a
 * big wh_write_raw to avoid repeated reallocs. */
WH_API int wh_writer_reserve(wh_writer *w, size_t n) {
    if (w->err) return 0;
    if (n > SIZE_MAX - w->len) { w->err = 1; return 0; }
    size_t need = w->len + n;
    if (need <= w->cap) return 1;
    size_t cap = w->cap < 32 ? 64 : (w->cap > SIZE_MAX / 2 ? SIZE_MAX : w->cap * 2);
    if (cap < need) cap = need;
    uint8_t *nb;
    if (w->buf == NULL) {
        nb = (uint8_t *)wh__bump(cap);
    } else if (wh__in_arena(w->buf)) {
        nb = (uint8_t *)malloc(cap);
        if (nb) memcpy(nb, w->buf, w->len);
    } else {
        nb = (uint8_t *)realloc(w->buf, cap);
    }
    if (!nb) { w->err = 1; return 0; }
    w->buf = nb;
    w->cap = cap;
    return 1;
}

WH_API void wh__put(wh_writer *w, const void *data, size_t n) {
    if (!wh_writer_reserve(w, n)) return;
    if (n) memcpy(w->buf + w->len, data, n);
    w->len += n;
}

/* tag byte followed by the low `n` bytes of v, big-endian. */
WH_API void wh__put_tagged(wh_writer *w, uint8_t tag, uint64_t v, size_t n) {
    uint8_t tmp[9];
    tmp[0] = tag;
    for (size_t i = 0; i < n; i++) tmp[1 + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    wh__put(w, tmp, 1 + n);
}

/* Copy already-encoded msgpack bytes (e.g. from wh_read_raw). */
WH_API void wh_write_raw(wh_writer *w, const void *data, size_t len) {
    wh__put(w, data, len);
}

WH_API void wh_write_nil(wh_writer *w) {
    uint8_t b = 0xc0;
    wh__put(w, &b, 1);
}

WH_API void wh_write_bool(wh_writer *w, int v) {
    uint8_t b = v ? 0xc3 : 0xc2;
    wh__put(w, &b, 1);
}

/* Smallest encoding: positive fixint, uint8/16/32/64. */
WH_API void wh_write_uint(wh_writer *w, uint64_t v) {
    if (v <= 0x7f) { uint8_t b = (uint8_t)v; wh__put(w, &b, 1); }
    else if (v <= 0xff) wh__put_tagged(w, 0xcc, v, 1);
    else if (v <= 0xffff) wh__put_tagged(w, 0xcd, v, 2);
    else if (v <= 0xffffffffu) wh__put_tagged(w, 0xce, v, 4);
    else wh__put_tagged(w, 0xcf, v, 8);
}

/* Smallest encoding: non-negative values as wh_write_uint; negative as
 * negative fixint, int8/16/32/64. */
WH_API void wh_write_int(wh_writer *w, int64_t v) {
    if (v >= 0) { wh_write_uint(w, (uint64_t)v); return; }
    if (v >= -32) { uint8_t b = (uint8_t)(int8_t)v; wh__put(w, &b, 1); }
    else if (v >= INT8_MIN) wh__put_tagged(w, 0xd0, (uint64_t)v, 1);
    else if (v >= INT16_MIN) wh__put_tagged(w, 0xd1, (uint64_t)v, 2);
    else if (v >= INT32_MIN) wh__put_tagged(w, 0xd2, (uint64_t)v, 4);
    else wh__put_tagged(w, 0xd3, (uint64_t)v, 8);
}

/* float64 */
WH_API void wh_write_double(wh_writer *w, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    wh__put_tagged(w, 0xcb, bits, 8);
}

/* float32 */
WH_API void wh_write_float(wh_writer *w, float v) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    wh__put_tagged(w, 0xca, bits, 4);
}

/* Only the header of a str of `len` bytes; append the bytes with
 * wh_write_raw (handy for building a string from pieces). */
WH_API void wh_write_str_header(wh_writer *w, size_t len) {
    if ((uint64_t)len > 0xffffffffu) { w->err = 1; return; }
    if (len <= 31) { uint8_t b = (uint8_t)(0xa0 | len); wh__put(w, &b, 1); }
    else if (len <= 0xff) wh__put_tagged(w, 0xd9, len, 1);
    else if (len <= 0xffff) wh__put_tagged(w, 0xda, len, 2);
    else wh__put_tagged(w, 0xdb, len, 4);
}

WH_API void wh_write_strn(wh_writer *w, const char *s, size_t len) {
    wh_write_str_header(w, len);
    wh__put(w, s, len);
}

/* NUL-terminated string (NULL writes ""). */
WH_API void wh_write_str(wh_writer *w, const char *s) {
    if (!s) s = "";
    wh_write_strn(w, s, strlen(s));
}

/* Only the header of a bin of `len` bytes; append the bytes with
 * wh_write_raw. */
WH_API void wh_write_bin_header(wh_writer *w, size_t len) {
    if ((uint64_t)len > 0xffffffffu) { w->err = 1; return; }
    if (len <= 0xff) wh__put_tagged(w, 0xc4, len, 1);
    else if (len <= 0xffff) wh__put_tagged(w, 0xc5, len, 2);
    else wh__put_tagged(w, 0xc6, len, 4);
}

WH_API void wh_write_bin(wh_writer *w, const void *data, size_t len) {
    wh_write_bin_header(w, len);
    wh__put(w, data, len);
}

/* Array header: `n` values must follow. */
WH_API void wh_write_array(wh_writer *w, uint32_t n) {
    if (n <= 15) { uint8_t b = (uint8_t)(0x90 | n); wh__put(w, &b, 1); }
    else if (n <= 0xffff) wh__put_tagged(w, 0xdc, n, 2);
    else wh__put_tagged(w, 0xdd, n, 4);
}

/* Map header: `n` key/value PAIRS (2*n values) must follow. */
WH_API void wh_write_map(wh_writer *w, uint32_t n) {
    if (n <= 15) { uint8_t b = (uint8_t)(0x80 | n); wh__put(w, &b, 1); }
    else if (n <= 0xffff) wh__put_tagged(w, 0xde, n, 2);
    else wh__put_tagged(w, 0xdf, n, 4);
}

/* Ext value with the smallest encoding (fixext when len is 1/2/4/8/16). */
WH_API void wh_write_ext(wh_writer *w, int8_t type, const void *data, size_t len) {
    if ((uint64_t)len > 0xffffffffu) { w->err = 1; return; }
    uint8_t t = (uint8_t)type;
    switch (len) {
    case 1: wh__put_tagged(w, 0xd4, t, 1); break;
    case 2: wh__put_tagged(w, 0xd5, t, 1); break;
    case 4: wh__put_tagged(w, 0xd6, t, 1); break;
    case 8: wh__put_tagged(w, 0xd7, t, 1); break;
    case 16: wh__put_tagged(w, 0xd8, t, 1); break;
    default:
        if (len <= 0xff) wh__put_tagged(w, 0xc7, len, 1);
        else if (len <= 0xffff) wh__put_tagged(w, 0xc8, len, 2);
        else wh__put_tagged(w, 0xc9, len, 4);
        wh__put(w, &t, 1);
    }
    wh__put(w, data, len);
}

/* ========================================================================== */
/* 3. guest ABI v1 glue                                                       */
/* ========================================================================== */

/* A string from the request. `ptr` is NUL-terminated (a private copy), `len`
 * excludes the NUL. */
typedef struct {
    const char *ptr;
    uint32_t len;
} wh_str;

typedef struct {
    wh_str request_id;
    wh_str function_name;
    wh_str function_version;
    int64_t memory_limit_mb;
    int64_t deadline_ms; /* Unix epoch milliseconds; 0 if the host sent none */
} wh_context;

/* The user's handler. `event` spans exactly the event value. Write one value
 * into `out` and return 0, or return wh_fail(out, ...). */
typedef int (*wh_handler_fn)(wh_reader event, const wh_context *ctx, wh_writer *out);

/* Discard whatever the handler wrote and make the response
 *   {"error": {"type": type, "message": message, <extra_pairs more keys>}}
 * The caller must then write `extra_pairs` key/value pairs. Returns 1 (a
 * nonzero value to return from the handler). */
WH_API int wh_fail_ex(wh_writer *out, const char *type, const char *message, uint32_t extra_pairs) {
    out->len = 0;
    out->err = 0;
    out->failed = 1;
    wh_write_map(out, 1);
    wh_write_str(out, "error");
    wh_write_map(out, 2 + extra_pairs);
    wh_write_str(out, "type");
    wh_write_str(out, type ? type : "Error");
    wh_write_str(out, "message");
    wh_write_str(out, message);
    return 1;
}

/* Respond {"error": {"type": type, "message": message}}. Returns 1; use as
 * `return wh_fail(out, "ValidationError", "name is required");`. If wh_fail
 * was called, the response is that error whatever the handler returns. */
WH_API int wh_fail(wh_writer *out, const char *type, const char *message) {
    return wh_fail_ex(out, type, message, 0);
}

/* clock_gettime is POSIX, so <time.h> hides it under a strict -std=c11.
 * On WASI re-declare it (compatibly); elsewhere (native tests of the
 * header) fall back to C11 timespec_get when it is hidden. */
#if defined(__wasi__)
int clock_gettime(clockid_t, struct timespec *);
#define WH__CLOCK_GETTIME 1
#elif defined(CLOCK_REALTIME)
#define WH__CLOCK_GETTIME 1
#endif

/* Wall clock, Unix epoch milliseconds (WASI clock_time_get(realtime)). */
WH_API int64_t wh_now_ms(void) {
    struct timespec ts;
#ifdef WH__CLOCK_GETTIME
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return 0;
#else
    if (timespec_get(&ts, TIME_UTC) != TIME_UTC) return 0;
#endif
    return (int64_t)ts.tv_sec * 1000 + (int64_t)(ts.tv_nsec / 1000000);
}

/* Milliseconds left until the host stops the invocation (negative once past
 * the deadline; INT64_MAX if the request carried no deadline). */
WH_API int64_t wh_remaining_ms(const wh_context *ctx) {
    if (!ctx || ctx->deadline_ms <= 0) return INT64_MAX;
    return ctx->deadline_ms - wh_now_ms();
}

/* --- internals used by WASMHOST_HANDLER ----------------------------------- */

/* {"error":{"type":"OutOfMemory","message":"guest could not allocate"}},
 * static so it can be returned when malloc fails. */
static const char wh__oom_response[] =
    "\x81\xa5" "error" "\x82"
    "\xa4" "type" "\xab" "OutOfMemory"
    "\xa7" "message" "\xb8" "guest could not allocate";

static const char wh__oom_marker[] = "oom";

static inline uint64_t wh__pack(const void *p, size_t len) {
    return ((uint64_t)(uint32_t)(uintptr_t)p << 32) | (uint32_t)len;
}

WH_API void *wh__alloc(uint32_t len) {
    return wh__bump(len);
}

WH_API const char *wh__cat3(char *buf, size_t cap, const char *a, const char *b, const char *c) {
    size_t n = 0;
    const char *parts[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        for (const char *s = parts[i]; *s && n + 1 < cap; s++) buf[n++] = *s;
    buf[n] = 0;
    return buf;
}

/* Parse the "context" map into *c. Returns NULL, an error message, or
 * wh__oom_marker. */
WH_API const char *wh__parse_context(wh_reader *r, wh_context *c) {
    static char msg[96];
    static const char *const str_keys[3] = {"request_id", "function_name", "function_version"};
    if (wh_peek(r) != WH_MAP) return "\"context\" is not a map";
    uint32_t n = wh_read_map(r);
    for (uint32_t i = 0; i < n && !r->err; i++) {
        if (wh_peek(r) != WH_STR) { wh_skip(r); wh_skip(r); continue; }
        uint32_t kl;
        const char *k = wh_read_str(r, &kl);
        if (!k) break;
        wh_str *dst = NULL;
        const char *name = NULL;
        for (int j = 0; j < 3; j++)
            if (kl == strlen(str_keys[j]) && memcmp(k, str_keys[j], kl) == 0) name = str_keys[j];
        if (name) {
            dst = name == str_keys[0] ? &c->request_id
                : name == str_keys[1] ? &c->function_name : &c->function_version;
            if (wh_peek(r) != WH_STR) return wh__cat3(msg, sizeof msg, "context.", name, " is not a string");
            uint32_t sl;
            const char *s = wh_read_str(r, &sl);
            if (!s) break;
            char *copy = (char *)wh__bump((size_t)sl + 1);
            if (!copy) return wh__oom_marker;
            memcpy(copy, s, sl);
            copy[sl] = 0;
            dst->ptr = copy;
            dst->len = sl;
            continue;
        }
        int64_t *num = NULL;
        if (kl == 15 && memcmp(k, "memory_limit_mb", 15) == 0) { num = &c->memory_limit_mb; name = "memory_limit_mb"; }
        else if (kl == 11 && memcmp(k, "deadline_ms", 11) == 0) { num = &c->deadline_ms; name = "deadline_ms"; }
        if (num) {
            if (wh_peek(r) != WH_INT) return wh__cat3(msg, sizeof msg, "context.", name, " is not an integer");
            *num = wh_read_int(r);
            if (r->err == WH_ERR_RANGE) return wh__cat3(msg, sizeof msg, "context.", name, " is out of range");
            continue;
        }
        wh_skip(r); /* unknown key: ignore its value */
    }
    return r->err ? "request is not valid msgpack" : NULL;
}

WH_API uint64_t wh__handle(const uint8_t *req, uint32_t req_len, wh_handler_fn fn) {
    wh_writer w;
    wh_writer_init(&w);
    wh_context ctx;
    ctx.request_id.ptr = ctx.function_name.ptr = ctx.function_version.ptr = "";
    ctx.request_id.len = ctx.function_name.len = ctx.function_version.len = 0;
    ctx.memory_limit_mb = 0;
    ctx.deadline_ms = 0;

    wh_reader r = wh_reader_init(req, req_len);
    wh_reader event = wh_reader_init(NULL, 0);
    int have_event = 0, have_context = 0;
    const char *bad = NULL;

    if (wh_peek(&r) != WH_MAP) {
        bad = "request is not a msgpack map";
    } else {
        uint32_t n = wh_read_map(&r);
        for (uint32_t i = 0; i < n && !r.err && !bad; i++) {
            if (wh_peek(&r) != WH_STR) { wh_skip(&r); wh_skip(&r); continue; }
            uint32_t kl;
            const char *k = wh_read_str(&r, &kl);
            if (!k) break;
            if (kl == 5 && memcmp(k, "event", 5) == 0) {
                const uint8_t *start = r.p;
                if (!wh_skip(&r)) break;
                event.p = start;
                event.end = r.p;
                have_event = 1;
            } else if (kl == 7 && memcmp(k, "context", 7) == 0) {
                bad = wh__parse_context(&r, &ctx);
                have_context = 1;
            } else {
                wh_skip(&r);
            }
        }
        if (bad == wh__oom_marker) return wh__pack(wh__oom_response, sizeof wh__oom_response - 1);
        if (!bad && r.err) bad = "request is not valid msgpack";
        if (!bad && r.p != r.end) bad = "trailing bytes after the request map";
        if (!bad && !have_event) bad = "request has no \"event\" key";
        if (!bad && !have_context) bad = "request has no \"context\" key";
    }
    if (bad) {
        wh_fail(&w, "InvalidRequest", bad);
    } else {
        static const uint8_t ok_prefix[4] = {0x81, 0xa2, 'o', 'k'}; /* {"ok": */
        wh_writer_reserve(&w, 256);
        wh__put(&w, ok_prefix, sizeof ok_prefix);
        if (w.err) return wh__pack(wh__oom_response, sizeof wh__oom_response - 1);
        int rc = fn(event, &ctx, &w);
#ifndef WASMHOST_NO_AUTOFLUSH
        fflush(NULL);
#endif
        if (w.err) return wh__pack(wh__oom_response, sizeof wh__oom_response - 1);
        if (!w.failed) {
            if (rc != 0) {
                wh_fail(&w, "HandlerError", "handler returned nonzero without calling wh_fail");
            } else if (w.len == sizeof ok_prefix) {
                wh_write_nil(&w); /* handler wrote nothing: result is nil */
            } else {
                wh_reader chk = wh_reader_init(w.buf + sizeof ok_prefix, w.len - sizeof ok_prefix);
                if (!wh_skip(&chk) || chk.p != chk.end)
                    wh_fail(&w, "InvalidResult", "handler must write exactly one msgpack value");
            }
        }
    }
    if (w.err) return wh__pack(wh__oom_response, sizeof wh__oom_response - 1);
    return wh__pack(w.buf, w.len);
}

/* Define the module's exports for handler `fn` (once per module):
 *   wasmhost_alloc(len: i32) -> i32
 *   wasmhost_handle(ptr: i32, len: i32) -> i64 = (out_ptr << 32) | out_len
 * Use as:   WASMHOST_HANDLER(my_handler);                                   */
#define WASMHOST_HANDLER(fn)                                                   \
    __attribute__((export_name("wasmhost_alloc")))                             \
    void *wasmhost_alloc(uint32_t len) { return wh__alloc(len); }              \
    __attribute__((export_name("wasmhost_handle")))                            \
    uint64_t wasmhost_handle(uint32_t ptr, uint32_t len) {                     \
        return wh__handle((const uint8_t *)(uintptr_t)ptr, len, (fn));        \
    }                                                                          \
    _Static_assert(1, "WASMHOST_HANDLER")

#endif /* WASMHOST_H */

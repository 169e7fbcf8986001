package wasmhost

// msgpack reader (Reader, Value) and writer (Append* functions). Reads are
// bounds-checked and never look past the end of their input; every Append*
// uses the smallest encoding.

import (
	"errors"
	"iter"
	"math"
	"strconv"
	"unsafe"
)

// Kind is the type of a msgpack value. Int covers every integer encoding,
// Float float32 and float64. Invalid is a missing value (Value{}).
type Kind uint8

const (
	Invalid Kind = iota
	Nil
	Bool
	Int
	Float
	Str
	Bin
	Array
	Map
	Ext
)

var kindNames = [...]string{"invalid", "nil", "bool", "int", "float", "str", "bin", "array", "map", "ext"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Decoding errors.
var (
	ErrEOF      = errors.New("msgpack: value is truncated")
	ErrType     = errors.New("msgpack: value has another type")
	ErrRange    = errors.New("msgpack: integer out of range")
	ErrInvalid  = errors.New("msgpack: invalid byte 0xc1")
	ErrTrailing = errors.New("msgpack: trailing bytes after the value")
)

// kindOf is the kind of a value starting with byte b (Invalid for 0xc1).
func kindOf(b byte) Kind {
	switch {
	case b <= 0x7f || b >= 0xe0:
		return Int
	case b <= 0x8f:
		return Map
	case b <= 0x9f:
		return Array
	case b <= 0xbf:
		return Str
	}
	switch b {
	case 0xc0:
		return Nil
	case 0xc2, 0xc3:
		return Bool
	case 0xc4, 0xc5, 0xc6:
		return Bin
	case 0xc7, 0xc8, 0xc9, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return Ext
	case 0xca, 0xcb:
		return Float
	case 0xd9, 0xda, 0xdb:
		return Str
	case 0xdc, 0xdd:
		return Array
	case 0xde, 0xdf:
		return Map
	case 0xc1:
		return Invalid
	}
	return Int // 0xcc..0xd3
}

// be reads a big-endian unsigned integer of n (1, 2, 4, 8) bytes at b[i:].
// The caller has checked the bounds.
func be(b []byte, i, n int) uint64 {
	var v uint64
	for _, c := range b[i : i+n] {
		v = v<<8 | uint64(c)
	}
	return v
}

// Reader reads msgpack values from a byte slice, in order. A failed read
// returns an error and does not move the reader.
type Reader struct {
	buf []byte
	pos int
}

// NewReader reads b.
func NewReader(b []byte) *Reader { return &Reader{buf: b} }

// Rest is the unread input.
func (r *Reader) Rest() []byte { return r.buf[r.pos:] }

// Done reports whether all input was read.
func (r *Reader) Done() bool { return r.pos >= len(r.buf) }

// Peek is the kind of the next value (Invalid at the end or at byte 0xc1).
func (r *Reader) Peek() Kind {
	if r.pos >= len(r.buf) {
		return Invalid
	}
	return kindOf(r.buf[r.pos])
}

func (r *Reader) need(n int) error {
	if n < 0 || len(r.buf)-r.pos < n {
		return ErrEOF
	}
	return nil
}

// ReadNil consumes a nil.
func (r *Reader) ReadNil() error {
	if err := r.need(1); err != nil {
		return err
	}
	if r.buf[r.pos] != 0xc0 {
		return ErrType
	}
	r.pos++
	return nil
}

// ReadBool consumes a bool.
func (r *Reader) ReadBool() (bool, error) {
	if err := r.need(1); err != nil {
		return false, err
	}
	switch r.buf[r.pos] {
	case 0xc2:
		r.pos++
		return false, nil
	case 0xc3:
		r.pos++
		return true, nil
	}
	return false, ErrType
}

// intRaw decodes any integer encoding at the reader: (value as uint64 bits,
// negative?, encoded size).
func (r *Reader) intRaw() (u uint64, neg bool, n int, err error) {
	if err = r.need(1); err != nil {
		return
	}
	b := r.buf[r.pos]
	switch {
	case b <= 0x7f:
		return uint64(b), false, 1, nil
	case b >= 0xe0:
		return uint64(int64(int8(b))), true, 1, nil
	}
	var size int
	switch b {
	case 0xcc, 0xd0:
		size = 1
	case 0xcd, 0xd1:
		size = 2
	case 0xce, 0xd2:
		size = 4
	case 0xcf, 0xd3:
		size = 8
	default:
		return 0, false, 0, ErrType
	}
	if err = r.need(1 + size); err != nil {
		return
	}
	u = be(r.buf, r.pos+1, size)
	if b >= 0xd0 { // signed: sign-extend
		shift := 64 - 8*size
		s := int64(u<<shift) >> shift
		return uint64(s), s < 0, 1 + size, nil
	}
	return u, false, 1 + size, nil
}

// ReadInt consumes any integer that fits an int64.
func (r *Reader) ReadInt() (int64, error) {
	u, neg, n, err := r.intRaw()
	if err != nil {
		return 0, err
	}
	if !neg && u > math.MaxInt64 {
		return 0, ErrRange
	}
	r.pos += n
	return int64(u), nil
}

// ReadUint consumes any non-negative integer.
func (r *Reader) ReadUint() (uint64, error) {
	u, neg, n, err := r.intRaw()
	if err != nil {
		return 0, err
	}
	if neg {
		return 0, ErrRange
	}
	r.pos += n
	return u, nil
}

// ReadFloat consumes a float32 or float64 (not integers: see ReadNumber).
func (r *Reader) ReadFloat() (float64, error) {
	if err := r.need(1); err != nil {
		return 0, err
	}
	switch r.buf[r.pos] {
	case 0xca:
		if err := r.need(5); err != nil {
			return 0, err
		}
		f := math.Float32frombits(uint32(be(r.buf, r.pos+1, 4)))
		r.pos += 5
		return float64(f), nil
	case 0xcb:
		if err := r.need(9); err != nil {
			return 0, err
		}
		f := math.Float64frombits(be(r.buf, r.pos+1, 8))
		r.pos += 9
		return f, nil
	}
	return 0, ErrType
}

// ReadNumber consumes any integer or float, as a float64.
func (r *Reader) ReadNumber() (float64, error) {
	if r.Peek() == Float {
		return r.ReadFloat()
	}
	u, neg, n, err := r.intRaw()
	if err != nil {
		return 0, err
	}
	r.pos += n
	if neg {
		return float64(int64(u)), nil
	}
	return float64(u), nil
}

// span decodes the header of a str (str true) or bin at the reader: (header
// size, payload size), checked to fit the input.
func (r *Reader) span(str bool) (h, n int, err error) {
	if err = r.need(1); err != nil {
		return
	}
	b := r.buf[r.pos]
	var n64 uint64
	switch {
	case str && b >= 0xa0 && b <= 0xbf:
		h, n64 = 1, uint64(b&0x1f)
	case (str && b == 0xd9) || (!str && b == 0xc4):
		h = 2
	case (str && b == 0xda) || (!str && b == 0xc5):
		h = 3
	case (str && b == 0xdb) || (!str && b == 0xc6):
		h = 5
	default:
		return 0, 0, ErrType
	}
	if err = r.need(h); err != nil {
		return
	}
	if h > 1 {
		n64 = be(r.buf, r.pos+1, h-1)
	}
	if n64 > uint64(len(r.buf)-r.pos-h) {
		return 0, 0, ErrEOF
	}
	return h, int(n64), nil
}

// ReadStrBytes consumes a str and returns its bytes (a sub-slice of the
// input, not copied).
func (r *Reader) ReadStrBytes() ([]byte, error) {
	h, n, err := r.span(true)
	if err != nil {
		return nil, err
	}
	s := r.buf[r.pos+h : r.pos+h+n : r.pos+h+n]
	r.pos += h + n
	return s, nil
}

// ReadStr consumes a str. The string shares memory with the input (no
// copy): the input must not be modified afterwards. UTF-8 is not checked.
func (r *Reader) ReadStr() (string, error) {
	b, err := r.ReadStrBytes()
	if err != nil {
		return "", err
	}
	return bytesToString(b), nil
}

// ReadBin consumes a bin and returns its bytes (a sub-slice of the input).
func (r *Reader) ReadBin() ([]byte, error) {
	h, n, err := r.span(false)
	if err != nil {
		return nil, err
	}
	s := r.buf[r.pos+h : r.pos+h+n : r.pos+h+n]
	r.pos += h + n
	return s, nil
}

// ReadExt consumes an ext: its type and data (a sub-slice of the input).
func (r *Reader) ReadExt() (int8, []byte, error) {
	if err := r.need(1); err != nil {
		return 0, nil, err
	}
	var h, n int
	switch b := r.buf[r.pos]; b {
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		h, n = 2, 1<<(b-0xd4)
	case 0xc7, 0xc8, 0xc9:
		lb := 1 << (b - 0xc7)
		h = 2 + lb
		if err := r.need(h); err != nil {
			return 0, nil, err
		}
		n64 := be(r.buf, r.pos+1, lb)
		if n64 > uint64(len(r.buf)-r.pos-h) {
			return 0, nil, ErrEOF
		}
		n = int(n64)
	default:
		return 0, nil, ErrType
	}
	if err := r.need(h + n); err != nil {
		return 0, nil, err
	}
	t := int8(r.buf[r.pos+h-1])
	d := r.buf[r.pos+h : r.pos+h+n : r.pos+h+n]
	r.pos += h + n
	return t, d, nil
}

func (r *Reader) header(fix, b16, b32 byte) (int, error) {
	if err := r.need(1); err != nil {
		return 0, err
	}
	b := r.buf[r.pos]
	switch {
	case b&0xf0 == fix:
		r.pos++
		return int(b & 0x0f), nil
	case b == b16:
		if err := r.need(3); err != nil {
			return 0, err
		}
		n := int(be(r.buf, r.pos+1, 2))
		r.pos += 3
		return n, nil
	case b == b32:
		if err := r.need(5); err != nil {
			return 0, err
		}
		n := int(be(r.buf, r.pos+1, 4))
		r.pos += 5
		return n, nil
	}
	return 0, ErrType
}

// ReadArrayHeader consumes an array header: the number of values that follow.
func (r *Reader) ReadArrayHeader() (int, error) { return r.header(0x90, 0xdc, 0xdd) }

// ReadMapHeader consumes a map header: the number of key/value PAIRS that follow.
func (r *Reader) ReadMapHeader() (int, error) { return r.header(0x80, 0xde, 0xdf) }

// Skip consumes one complete value of any type (ext included). It works
// iteratively, so deep nesting cannot overflow the stack.
func (r *Reader) Skip() error {
	buf := r.buf
	p := r.pos
	pending := uint64(1)
	for pending > 0 {
		pending--
		if p >= len(buf) {
			return ErrEOF
		}
		b := buf[p]
		h, lenBytes := 1, 0
		var n, children uint64
		switch {
		case b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3:
			p++
			continue
		case b <= 0x8f:
			children = 2 * uint64(b&0x0f)
		case b <= 0x9f:
			children = uint64(b & 0x0f)
		case b <= 0xbf:
			n = uint64(b & 0x1f)
		default:
			switch b {
			case 0xc4, 0xd9:
				h, lenBytes = 2, 1
			case 0xc5, 0xda:
				h, lenBytes = 3, 2
			case 0xc6, 0xdb:
				h, lenBytes = 5, 4
			case 0xc7:
				h, lenBytes = 3, 1
			case 0xc8:
				h, lenBytes = 4, 2
			case 0xc9:
				h, lenBytes = 6, 4
			case 0xca, 0xce, 0xd2:
				n = 4
			case 0xcb, 0xcf, 0xd3:
				n = 8
			case 0xcc, 0xd0:
				n = 1
			case 0xcd, 0xd1:
				n = 2
			case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
				h, n = 2, 1<<(b-0xd4)
			case 0xdc, 0xde:
				h = 3
			case 0xdd, 0xdf:
				h = 5
			default: // 0xc1
				return ErrInvalid
			}
			if len(buf)-p < h {
				return ErrEOF
			}
			if lenBytes > 0 {
				n = be(buf, p+1, lenBytes)
			} else if b >= 0xdc && b <= 0xdf {
				children = be(buf, p+1, h-1)
				if b >= 0xde {
					children *= 2
				}
			}
		}
		if uint64(h)+n > uint64(len(buf)-p) {
			return ErrEOF
		}
		p += h + int(n)
		pending += children
		// every pending value needs at least one byte
		if pending > uint64(len(buf)-p) {
			return ErrEOF
		}
	}
	r.pos = p
	return nil
}

// ReadRaw consumes one complete value and returns its encoded bytes (a
// sub-slice of the input).
func (r *Reader) ReadRaw() ([]byte, error) {
	start := r.pos
	if err := r.Skip(); err != nil {
		return nil, err
	}
	return r.buf[start:r.pos:r.pos], nil
}

// ReadValue consumes one complete value.
func (r *Reader) ReadValue() (Value, error) {
	raw, err := r.ReadRaw()
	return Value{raw}, err
}

// bytesToString is a string sharing b's memory (no copy).
func bytesToString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// ---------------------------------------------------------------------------
// Value

// Value is one complete, well-formed msgpack value: a zero-copy view of its
// encoded bytes. The event handed to a handler is a Value over the request,
// which lives until the instance is discarded. The zero Value is "missing"
// (Kind Invalid): Get and Index return it for absent keys and indexes, and
// every accessor on it reports ok == false, so lookups can be chained:
//
//	name, ok := event.Get("user").Get("name").Str()
//
// Strings and byte slices returned by a Value share the request's memory.
type Value struct {
	raw []byte
}

// Parse checks that b is exactly one well-formed msgpack value and returns
// it as a Value (not copied).
func Parse(b []byte) (Value, error) {
	r := Reader{buf: b}
	if err := r.Skip(); err != nil {
		return Value{}, err
	}
	if !r.Done() {
		return Value{}, ErrTrailing
	}
	return Value{b}, nil
}

// Raw is the value's encoded bytes (do not modify them).
func (v Value) Raw() []byte { return v.raw }

// Exists reports whether v is a value (not the zero, missing Value).
func (v Value) Exists() bool { return len(v.raw) > 0 }

// Kind is the value's type (Invalid for a missing value).
func (v Value) Kind() Kind {
	if len(v.raw) == 0 {
		return Invalid
	}
	return kindOf(v.raw[0])
}

func (v Value) reader() Reader { return Reader{buf: v.raw} }

// IsNil reports whether v is msgpack nil.
func (v Value) IsNil() bool { return len(v.raw) > 0 && v.raw[0] == 0xc0 }

// Bool is v as a bool.
func (v Value) Bool() (bool, bool) {
	r := v.reader()
	b, err := r.ReadBool()
	return b, err == nil
}

// Int is v as an int64 (any integer that fits).
func (v Value) Int() (int64, bool) {
	r := v.reader()
	i, err := r.ReadInt()
	return i, err == nil
}

// Uint is v as a uint64 (any non-negative integer).
func (v Value) Uint() (uint64, bool) {
	r := v.reader()
	u, err := r.ReadUint()
	return u, err == nil
}

// Float is v as a float64 (floats and integers).
func (v Value) Float() (float64, bool) {
	r := v.reader()
	f, err := r.ReadNumber()
	return f, err == nil
}

// Str is v as a string (shares the request's memory).
func (v Value) Str() (string, bool) {
	r := v.reader()
	s, err := r.ReadStr()
	return s, err == nil
}

// Bytes is v as bin data (shares the request's memory).
func (v Value) Bytes() ([]byte, bool) {
	r := v.reader()
	b, err := r.ReadBin()
	return b, err == nil
}

// ExtData is v as an ext: its type and data.
func (v Value) ExtData() (int8, []byte, bool) {
	r := v.reader()
	t, d, err := r.ReadExt()
	return t, d, err == nil
}

// Len is the number of elements of an array, pairs of a map, or bytes of a
// str, bin or ext; 0 for anything else.
func (v Value) Len() int {
	r := v.reader()
	switch v.Kind() {
	case Array:
		n, _ := r.ReadArrayHeader()
		return n
	case Map:
		n, _ := r.ReadMapHeader()
		return n
	case Str:
		b, _ := r.ReadStrBytes()
		return len(b)
	case Bin:
		b, _ := r.ReadBin()
		return len(b)
	case Ext:
		_, d, _ := r.ReadExt()
		return len(d)
	}
	return 0
}

// Get is the value of key in a map (str keys; other keys are skipped), or
// the missing Value.
func (v Value) Get(key string) Value {
	r := v.reader()
	n, err := r.ReadMapHeader()
	if err != nil {
		return Value{}
	}
	for i := 0; i < n; i++ {
		k, err := r.ReadStrBytes()
		if err != nil {
			if r.Skip() != nil {
				return Value{}
			}
		} else if string(k) == key {
			val, _ := r.ReadValue()
			return val
		}
		if r.Skip() != nil {
			return Value{}
		}
	}
	return Value{}
}

// Index is element i of an array, or the missing Value.
func (v Value) Index(i int) Value {
	r := v.reader()
	n, err := r.ReadArrayHeader()
	if err != nil || i < 0 || i >= n {
		return Value{}
	}
	for ; i > 0; i-- {
		if r.Skip() != nil {
			return Value{}
		}
	}
	val, _ := r.ReadValue()
	return val
}

// Items iterates over an array's elements (nothing if v is not an array):
//
//	for item := range event.Get("items").Items() { ... }
func (v Value) Items() iter.Seq[Value] {
	return func(yield func(Value) bool) {
		r := v.reader()
		n, err := r.ReadArrayHeader()
		if err != nil {
			return
		}
		for ; n > 0; n-- {
			item, err := r.ReadValue()
			if err != nil || !yield(item) {
				return
			}
		}
	}
}

// Entries iterates over a map's key/value pairs (nothing if v is not a map):
//
//	for k, val := range event.Entries() { ... }
func (v Value) Entries() iter.Seq2[Value, Value] {
	return func(yield func(Value, Value) bool) {
		r := v.reader()
		n, err := r.ReadMapHeader()
		if err != nil {
			return
		}
		for ; n > 0; n-- {
			k, err := r.ReadValue()
			if err != nil {
				return
			}
			val, err := r.ReadValue()
			if err != nil || !yield(k, val) {
				return
			}
		}
	}
}

// ExtValue is a decoded msgpack ext.
type ExtValue struct {
	Type int8
	Data []byte
}

// Interface decodes v into plain Go values: nil, bool, int64 (uint64 above
// MaxInt64), float64 (float32 for a float32), string, []byte (bin), []any,
// map[string]any (map[any]any if a key is not a str), ExtValue. Strings and
// byte slices share the request's memory. A missing Value gives nil.
func (v Value) Interface() any {
	r := v.reader()
	x, _ := decodeAny(&r, 0)
	return x
}

const maxDepth = 10000

func decodeAny(r *Reader, depth int) (any, error) {
	if depth > maxDepth {
		return nil, ErrRange
	}
	switch r.Peek() {
	case Nil:
		return nil, r.ReadNil()
	case Bool:
		return r.ReadBool()
	case Int:
		u, neg, n, err := r.intRaw()
		if err != nil {
			return nil, err
		}
		r.pos += n
		if !neg && u > math.MaxInt64 {
			return u, nil
		}
		return int64(u), nil
	case Float:
		if r.buf[r.pos] == 0xca {
			f, err := r.ReadFloat()
			return float32(f), err
		}
		return r.ReadFloat()
	case Str:
		return r.ReadStr()
	case Bin:
		return r.ReadBin()
	case Ext:
		t, d, err := r.ReadExt()
		return ExtValue{t, d}, err
	case Array:
		n, err := r.ReadArrayHeader()
		if err != nil {
			return nil, err
		}
		if n > len(r.buf)-r.pos {
			return nil, ErrEOF
		}
		a := make([]any, n)
		for i := range a {
			if a[i], err = decodeAny(r, depth+1); err != nil {
				return nil, err
			}
		}
		return a, nil
	case Map:
		n, err := r.ReadMapHeader()
		if err != nil {
			return nil, err
		}
		if n > len(r.buf)-r.pos {
			return nil, ErrEOF
		}
		m := make(map[string]any, n)
		var mm map[any]any // once a key is not a str
		for i := 0; i < n; i++ {
			k, err := decodeAny(r, depth+1)
			if err != nil {
				return nil, err
			}
			val, err := decodeAny(r, depth+1)
			if err != nil {
				return nil, err
			}
			if s, ok := k.(string); ok && mm == nil {
				m[s] = val
				continue
			}
			if mm == nil {
				mm = make(map[any]any, n)
				for ks, vs := range m {
					mm[ks] = vs
				}
			}
			switch k.(type) { // unhashable keys cannot be kept
			case []any, map[string]any, map[any]any, []byte:
				continue
			}
			mm[k] = val
		}
		if mm != nil {
			return mm, nil
		}
		return m, nil
	}
	if r.Done() {
		return nil, ErrEOF
	}
	return nil, ErrInvalid
}

// String renders v for humans, JSON-like (bin as b"…" hex, ext as ext(t, hex)).
// It is for logs and debugging, not a stable format.
func (v Value) String() string {
	if len(v.raw) == 0 {
		return "<missing>"
	}
	r := v.reader()
	out, _ := appendText(nil, &r, 0)
	return string(out)
}

const hexDigits = "0123456789abcdef"

func appendText(b []byte, r *Reader, depth int) ([]byte, error) {
	if depth > maxDepth {
		return b, ErrRange
	}
	switch r.Peek() {
	case Nil:
		return append(b, "null"...), r.ReadNil()
	case Bool:
		t, err := r.ReadBool()
		return strconv.AppendBool(b, t), err
	case Int:
		u, neg, n, err := r.intRaw()
		r.pos += n
		if neg {
			return strconv.AppendInt(b, int64(u), 10), err
		}
		return strconv.AppendUint(b, u, 10), err
	case Float:
		bits := 64
		if r.buf[r.pos] == 0xca {
			bits = 32
		}
		f, err := r.ReadFloat()
		return strconv.AppendFloat(b, f, 'g', -1, bits), err
	case Str:
		s, err := r.ReadStr()
		return strconv.AppendQuote(b, s), err
	case Bin:
		d, err := r.ReadBin()
		b = append(b, `b"`...)
		b = appendHex(b, d)
		return append(b, '"'), err
	case Ext:
		t, d, err := r.ReadExt()
		b = append(b, "ext("...)
		b = strconv.AppendInt(b, int64(t), 10)
		b = append(b, `, "`...)
		b = appendHex(b, d)
		return append(b, `")`...), err
	case Array, Map:
		isMap := r.Peek() == Map
		var n int
		var err error
		if isMap {
			n, err = r.ReadMapHeader()
			b = append(b, '{')
		} else {
			n, err = r.ReadArrayHeader()
			b = append(b, '[')
		}
		for i := 0; i < n && err == nil; i++ {
			if i > 0 {
				b = append(b, ", "...)
			}
			if b, err = appendText(b, r, depth+1); err == nil && isMap {
				b = append(b, ": "...)
				b, err = appendText(b, r, depth+1)
			}
		}
		if isMap {
			return append(b, '}'), err
		}
		return append(b, ']'), err
	}
	return append(b, '?'), ErrInvalid
}

func appendHex(b, d []byte) []byte {
	for _, c := range d {
		b = append(b, hexDigits[c>>4], hexDigits[c&15])
	}
	return b
}

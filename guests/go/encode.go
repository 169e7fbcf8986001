package wasmhost

// msgpack writer: Append* functions in the style of strconv.Append*, each
// appending one value (or header) in its smallest encoding to b and returning
// the extended slice. Append (and Marshal) encode any Go value.

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
)

// AppendNil appends nil.
func AppendNil(b []byte) []byte { return append(b, 0xc0) }

// AppendBool appends a bool.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 0xc3)
	}
	return append(b, 0xc2)
}

func appendTagged(b []byte, tag byte, v uint64, n int) []byte {
	switch n {
	case 1:
		return append(b, tag, byte(v))
	case 2:
		return append(b, tag, byte(v>>8), byte(v))
	case 4:
		return append(b, tag, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return append(b, tag, byte(v>>56), byte(v>>48), byte(v>>40), byte(v>>32),
		byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// AppendUint appends a non-negative integer: positive fixint, uint8/16/32/64.
func AppendUint(b []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(b, byte(v))
	case v <= 0xff:
		return appendTagged(b, 0xcc, v, 1)
	case v <= 0xffff:
		return appendTagged(b, 0xcd, v, 2)
	case v <= 0xffffffff:
		return appendTagged(b, 0xce, v, 4)
	}
	return appendTagged(b, 0xcf, v, 8)
}

// AppendInt appends an integer: non-negative ones as AppendUint, negative
// ones as negative fixint, int8/16/32/64.
func AppendInt(b []byte, v int64) []byte {
	switch {
	case v >= 0:
		return AppendUint(b, uint64(v))
	case v >= -32:
		return append(b, byte(v))
	case v >= math.MinInt8:
		return appendTagged(b, 0xd0, uint64(v), 1)
	case v >= math.MinInt16:
		return appendTagged(b, 0xd1, uint64(v), 2)
	case v >= math.MinInt32:
		return appendTagged(b, 0xd2, uint64(v), 4)
	}
	return appendTagged(b, 0xd3, uint64(v), 8)
}

// AppendFloat64 appends a float64.
func AppendFloat64(b []byte, v float64) []byte {
	return appendTagged(b, 0xcb, math.Float64bits(v), 8)
}

// AppendFloat32 appends a float32.
func AppendFloat32(b []byte, v float32) []byte {
	return appendTagged(b, 0xca, uint64(math.Float32bits(v)), 4)
}

// AppendStringHeader appends only the header of a str of n bytes.
func AppendStringHeader(b []byte, n int) []byte {
	switch {
	case n <= 31:
		return append(b, 0xa0|byte(n))
	case n <= 0xff:
		return appendTagged(b, 0xd9, uint64(n), 1)
	case n <= 0xffff:
		return appendTagged(b, 0xda, uint64(n), 2)
	}
	return appendTagged(b, 0xdb, uint64(n), 4)
}

// AppendString appends a str.
func AppendString(b []byte, s string) []byte {
	return append(AppendStringHeader(b, len(s)), s...)
}

// AppendBinHeader appends only the header of a bin of n bytes.
func AppendBinHeader(b []byte, n int) []byte {
	switch {
	case n <= 0xff:
		return appendTagged(b, 0xc4, uint64(n), 1)
	case n <= 0xffff:
		return appendTagged(b, 0xc5, uint64(n), 2)
	}
	return appendTagged(b, 0xc6, uint64(n), 4)
}

// AppendBytes appends a bin.
func AppendBytes(b []byte, d []byte) []byte {
	return append(AppendBinHeader(b, len(d)), d...)
}

// AppendArrayHeader appends an array header; n values must follow.
func AppendArrayHeader(b []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(b, 0x90|byte(n))
	case n <= 0xffff:
		return appendTagged(b, 0xdc, uint64(n), 2)
	}
	return appendTagged(b, 0xdd, uint64(n), 4)
}

// AppendMapHeader appends a map header; n key/value PAIRS must follow.
func AppendMapHeader(b []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(b, 0x80|byte(n))
	case n <= 0xffff:
		return appendTagged(b, 0xde, uint64(n), 2)
	}
	return appendTagged(b, 0xdf, uint64(n), 4)
}

// AppendExt appends an ext (fixext when len(data) is 1, 2, 4, 8 or 16).
func AppendExt(b []byte, typ int8, data []byte) []byte {
	switch n := len(data); n {
	case 1:
		b = append(b, 0xd4)
	case 2:
		b = append(b, 0xd5)
	case 4:
		b = append(b, 0xd6)
	case 8:
		b = append(b, 0xd7)
	case 16:
		b = append(b, 0xd8)
	default:
		switch {
		case n <= 0xff:
			b = appendTagged(b, 0xc7, uint64(n), 1)
		case n <= 0xffff:
			b = appendTagged(b, 0xc8, uint64(n), 2)
		default:
			b = appendTagged(b, 0xc9, uint64(n), 4)
		}
	}
	return append(append(b, byte(typ)), data...)
}

// Raw is already-encoded msgpack (exactly one value), written verbatim.
type Raw []byte

// Marshaler is implemented by types that encode themselves: append exactly
// one msgpack value to b.
type Marshaler interface {
	AppendMsgpack(b []byte) ([]byte, error)
}

// Field is one key/value pair of an Object.
type Field struct {
	Key   string
	Value any
}

// Object is a map whose keys keep their order (a map[string]any is written
// with its keys sorted). Build one with Obj.
type Object []Field

// Obj builds an Object from alternating keys and values (like log/slog):
//
//	return wasmhost.Obj("statusCode", 200, "body", "hi"), nil
//
// It panics if a key is not a string or the last key has no value.
func Obj(kv ...any) Object {
	if len(kv)%2 != 0 {
		panic("wasmhost.Obj: odd number of arguments")
	}
	o := make(Object, len(kv)/2)
	for i := range o {
		k, ok := kv[2*i].(string)
		if !ok {
			panic("wasmhost.Obj: a key is not a string")
		}
		o[i] = Field{Key: k, Value: kv[2*i+1]}
	}
	return o
}

// Marshal encodes v (see Append).
func Marshal(v any) ([]byte, error) { return Append(nil, v) }

// ErrUnsupported wraps the error for a value Append cannot encode.
var ErrUnsupported = errors.New("msgpack: cannot encode")

const maxEncodeDepth = 1000

// Append appends v as one msgpack value:
//
//   - nil, bool, every int/uint/float type, string
//   - []byte and Raw: bin, and already-encoded msgpack
//   - Value: its bytes, verbatim (so returning the event echoes it exactly)
//   - Marshaler, Object (ordered map), ExtValue
//   - []any, map[string]any (keys sorted) and other common slices and maps
//   - anything else through reflection: pointers (nil → nil), slices,
//     arrays, maps (str or other keys), structs (exported fields, named by
//     the `msgpack` or else the `json` tag; "-" skips, ",omitempty" omits
//     zero values; embedded structs are flattened)
func Append(b []byte, v any) ([]byte, error) { return appendAny(b, v, 0) }

func appendAny(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxEncodeDepth {
		return b, errors.New("msgpack: value nests too deeply (a cycle?)")
	}
	switch x := v.(type) {
	case nil:
		return append(b, 0xc0), nil
	case Value:
		if len(x.raw) == 0 {
			return append(b, 0xc0), nil
		}
		return append(b, x.raw...), nil
	case Raw:
		return append(b, x...), nil
	case string:
		return AppendString(b, x), nil
	case bool:
		return AppendBool(b, x), nil
	case int:
		return AppendInt(b, int64(x)), nil
	case int64:
		return AppendInt(b, x), nil
	case int32:
		return AppendInt(b, int64(x)), nil
	case int16:
		return AppendInt(b, int64(x)), nil
	case int8:
		return AppendInt(b, int64(x)), nil
	case uint:
		return AppendUint(b, uint64(x)), nil
	case uint64:
		return AppendUint(b, x), nil
	case uint32:
		return AppendUint(b, uint64(x)), nil
	case uint16:
		return AppendUint(b, uint64(x)), nil
	case uint8:
		return AppendUint(b, uint64(x)), nil
	case float64:
		return AppendFloat64(b, x), nil
	case float32:
		return AppendFloat32(b, x), nil
	case []byte:
		return AppendBytes(b, x), nil
	case Marshaler:
		return x.AppendMsgpack(b)
	case Object:
		b = AppendMapHeader(b, len(x))
		var err error
		for _, f := range x {
			b = AppendString(b, f.Key)
			if b, err = appendAny(b, f.Value, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case ExtValue:
		return AppendExt(b, x.Type, x.Data), nil
	case []any:
		b = AppendArrayHeader(b, len(x))
		var err error
		for _, e := range x {
			if b, err = appendAny(b, e, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case []string:
		b = AppendArrayHeader(b, len(x))
		for _, e := range x {
			b = AppendString(b, e)
		}
		return b, nil
	case map[string]any:
		b = AppendMapHeader(b, len(x))
		var err error
		for _, k := range sortedKeys(x) {
			b = AppendString(b, k)
			if b, err = appendAny(b, x[k], depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case map[string]string:
		b = AppendMapHeader(b, len(x))
		for _, k := range sortedKeys(x) {
			b = AppendString(AppendString(b, k), x[k])
		}
		return b, nil
	}
	return appendReflect(b, reflect.ValueOf(v), depth)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var (
	marshalerType = reflect.TypeFor[Marshaler]()
	bytesType     = reflect.TypeFor[[]byte]()
)

func appendReflect(b []byte, rv reflect.Value, depth int) ([]byte, error) {
	if depth > maxEncodeDepth {
		return b, errors.New("msgpack: value nests too deeply (a cycle?)")
	}
	if !rv.IsValid() {
		return append(b, 0xc0), nil
	}
	if rv.Type().Implements(marshalerType) && rv.CanInterface() {
		if (rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface) && rv.IsNil() {
			return append(b, 0xc0), nil
		}
		return rv.Interface().(Marshaler).AppendMsgpack(b)
	}
	var err error
	switch rv.Kind() {
	case reflect.Bool:
		return AppendBool(b, rv.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return AppendInt(b, rv.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return AppendUint(b, rv.Uint()), nil
	case reflect.Float32:
		return AppendFloat32(b, float32(rv.Float())), nil
	case reflect.Float64:
		return AppendFloat64(b, rv.Float()), nil
	case reflect.String:
		return AppendString(b, rv.String()), nil
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return append(b, 0xc0), nil
		}
		if rv.Kind() == reflect.Interface && rv.Elem().CanInterface() {
			return appendAny(b, rv.Elem().Interface(), depth+1)
		}
		return appendReflect(b, rv.Elem(), depth+1)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return append(b, 0xc0), nil
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			if rv.Kind() == reflect.Slice {
				return AppendBytes(b, rv.Convert(bytesType).Bytes()), nil
			}
			b = AppendBinHeader(b, rv.Len())
			for i := 0; i < rv.Len(); i++ {
				b = append(b, byte(rv.Index(i).Uint()))
			}
			return b, nil
		}
		b = AppendArrayHeader(b, rv.Len())
		for i := 0; i < rv.Len(); i++ {
			if b, err = appendElem(b, rv.Index(i), depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case reflect.Map:
		if rv.IsNil() {
			return append(b, 0xc0), nil
		}
		keys := rv.MapKeys()
		if rv.Type().Key().Kind() == reflect.String {
			slices.SortFunc(keys, func(a, c reflect.Value) int { return strings.Compare(a.String(), c.String()) })
		}
		b = AppendMapHeader(b, len(keys))
		for _, k := range keys {
			if b, err = appendElem(b, k, depth+1); err != nil {
				return b, err
			}
			if b, err = appendElem(b, rv.MapIndex(k), depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	case reflect.Struct:
		fields := structFields(rv.Type())
		n := 0
		for _, f := range fields {
			if fv, ok := fieldValue(rv, f); ok && !(f.omitEmpty && fv.IsZero()) {
				n++
			}
		}
		b = AppendMapHeader(b, n)
		for _, f := range fields {
			fv, ok := fieldValue(rv, f)
			if !ok || (f.omitEmpty && fv.IsZero()) {
				continue
			}
			b = AppendString(b, f.name)
			if b, err = appendElem(b, fv, depth+1); err != nil {
				return b, err
			}
		}
		return b, nil
	}
	return b, &unsupportedTypeError{rv.Type().String()}
}

// unsupportedTypeError is returned for a value Append cannot encode; it
// matches ErrUnsupported with errors.Is.
type unsupportedTypeError struct{ typ string }

func (e *unsupportedTypeError) Error() string {
	return "msgpack: cannot encode a value of type " + e.typ
}
func (e *unsupportedTypeError) Unwrap() error { return ErrUnsupported }

// appendElem encodes an element reached through reflection, going back to
// the fast type switch when the element can be turned into an interface.
func appendElem(b []byte, rv reflect.Value, depth int) ([]byte, error) {
	if rv.CanInterface() {
		return appendAny(b, rv.Interface(), depth)
	}
	return appendReflect(b, rv, depth)
}

type structField struct {
	name      string
	index     []int
	omitEmpty bool
}

var structCache = map[reflect.Type][]structField{}

// structFields lists t's encoded fields in declaration order: exported,
// named by tag, embedded structs flattened; when names clash the shallowest
// field wins (as in encoding/json).
func structFields(t reflect.Type) []structField {
	if fs, ok := structCache[t]; ok {
		return fs
	}
	type candidate struct {
		structField
		depth int
	}
	var all []candidate
	var walk func(t reflect.Type, index []int, depth int)
	walk = func(t reflect.Type, index []int, depth int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, ok := f.Tag.Lookup("msgpack")
			if !ok {
				tag = f.Tag.Get("json")
			}
			if tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			path := append(append([]int(nil), index...), i)
			if f.Anonymous && name == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					if depth < 16 {
						walk(ft, path, depth+1)
					}
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			all = append(all, candidate{structField{name, path, strings.Contains(","+opts+",", ",omitempty,")}, depth})
		}
	}
	walk(t, nil, 0)
	best := map[string]int{} // name -> shallowest depth
	for _, c := range all {
		if d, ok := best[c.name]; !ok || c.depth < d {
			best[c.name] = c.depth
		}
	}
	var fs []structField
	for _, c := range all { // all is in declaration (index path) order
		if best[c.name] == c.depth {
			fs = append(fs, c.structField)
			best[c.name] = -1 // first of equal depth wins
		}
	}
	structCache[t] = fs
	return fs
}

// fieldValue is rv's field at f.index; ok is false when a nil embedded
// pointer is on the way.
func fieldValue(rv reflect.Value, f structField) (reflect.Value, bool) {
	for i, x := range f.index {
		if i > 0 && rv.Kind() == reflect.Pointer {
			if rv.IsNil() {
				return reflect.Value{}, false
			}
			rv = rv.Elem()
		}
		rv = rv.Field(x)
	}
	return rv, true
}

// Package wasmhost is the Go guest SDK for wasmhost (guest ABI v1, see
// guests/ABI.md). A function registers one handler:
//
//	package main
//
//	import "wasmhost.local/wasmhost"
//
//	func greet(event wasmhost.Value, ctx *wasmhost.Context) (any, error) {
//		name, ok := event.Get("name").Str()
//		if !ok {
//			return nil, wasmhost.NewError("ValidationError", "name is required")
//		}
//		return map[string]any{"greeting": "hello " + name}, nil
//	}
//
//	func init() { wasmhost.Handle(greet) }
//
//	func main() {} // required by Go, never called
//
// and is built as a WASI reactor:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o fn.wasm .
//
// The package exports the ABI functions wasmhost_alloc and wasmhost_handle;
// Go's c-shared build exports _initialize, which runs the Go runtime's
// initialisation and the init functions (so Handle must be called from an
// init function; main never runs).
//
// The handler's result is encoded with Append (a Value is copied verbatim; a
// result that is the event itself is answered without copying). A returned
// error becomes {"error": {"type": T, "message": err.Error()}}, where T
// comes from an ErrorType() string method found with errors.As (see Error),
// else "Error". A panic becomes the error type "Panic" (the stack goes to
// stderr, i.e. the invocation's logs).
package wasmhost

import (
	"errors"
	"math"
	"runtime"
	"time"
	"unsafe"
)

// ABIVersion is the guest ABI version this SDK implements.
const ABIVersion = 1

// Context is the invocation's context (the request's "context" map). Its
// strings share the request's memory.
type Context struct {
	RequestID       string
	FunctionName    string
	FunctionVersion string
	MemoryLimitMB   int64
	// DeadlineMS is the Unix epoch millisecond at which the host stops the
	// invocation with Timeout (0 if the host sent none).
	DeadlineMS int64
}

// Deadline is the instant the host stops the invocation (the zero Time if
// there is none).
func (c *Context) Deadline() time.Time {
	if c.DeadlineMS <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(c.DeadlineMS)
}

// RemainingMS is the number of milliseconds left before Timeout (negative
// once past it; math.MaxInt64 without a deadline), from the wall clock.
func (c *Context) RemainingMS() int64 {
	if c.DeadlineMS <= 0 {
		return math.MaxInt64
	}
	return c.DeadlineMS - NowMS()
}

// Remaining is the time left before Timeout (zero once past it).
func (c *Context) Remaining() time.Duration {
	ms := c.RemainingMS()
	switch {
	case ms <= 0:
		return 0
	case ms >= math.MaxInt64/int64(time.Millisecond):
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(ms) * time.Millisecond
}

// NowMS is the wall clock in Unix epoch milliseconds (WASI
// clock_time_get(realtime)).
func NowMS() int64 { return time.Now().UnixMilli() }

// Error is a function error with an explicit type:
//
//	return nil, wasmhost.NewError("ValidationError", "name is required")
//
// Any error type can choose its type by having an ErrorType() string method;
// errors.As finds it through wrapping (fmt.Errorf("...: %w", err)).
type Error struct {
	Type    string
	Message string
}

func (e *Error) Error() string     { return e.Message }
func (e *Error) ErrorType() string { return e.Type }

// NewError is an *Error with this type and message.
func NewError(typ, message string) error { return &Error{Type: typ, Message: message} }

// errorType is err's type for the response.
func errorType(err error) string {
	var t interface{ ErrorType() string }
	if errors.As(err, &t) {
		if s := t.ErrorType(); s != "" {
			return s
		}
	}
	return "Error"
}

var (
	handler      func(Value, *Context) (any, error)
	valueHandler func(Value, *Context) (Value, error) // a handler returning Value: no boxing
)

// Handle registers the function's handler. Call it once, from an init
// function (main never runs in a c-shared module). The handler may return
// any type Append encodes: a Value (e.g. the event, or part of it), a map,
// a struct, an Object, ...
func Handle[T any](h func(event Value, ctx *Context) (T, error)) {
	handler, valueHandler = nil, nil
	switch f := any(h).(type) {
	case func(Value, *Context) (any, error):
		handler = f
	case func(Value, *Context) (Value, error):
		valueHandler = f
	default:
		handler = func(event Value, ctx *Context) (any, error) {
			r, err := h(event, ctx)
			return r, err
		}
	}
}

// --- ABI glue -----------------------------------------------------------

// arena holds requests of up to 64 KiB: no heap allocation, no memory
// growth for them.
var arena [64 << 10]byte

var (
	request  []byte  // the buffer handed out by wasmhost_alloc (kept alive)
	response []byte  // the response (kept alive until the instance is discarded)
	context  Context // the invocation's context (static: no heap allocation)
)

//go:wasmexport wasmhost_alloc
func wasmhostAlloc(n uint32) uint32 {
	if uint64(n) <= uint64(len(arena)) {
		request = arena[:n:n]
	} else {
		request = make([]byte, n)
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(request))))
}

//go:wasmexport wasmhost_handle
func wasmhostHandle(ptr, n uint32) uint64 {
	if ptr != uint32(uintptr(unsafe.Pointer(unsafe.SliceData(request)))) || int(n) > cap(request) {
		response = errorResponse("InvalidRequest", "wasmhost_handle was not given the buffer wasmhost_alloc returned")
	} else {
		response = handle(request[:n:n])
	}
	if len(response) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(response))))<<32 | uint64(len(response))
}

var okPrefix = [4]byte{0x81, 0xa2, 'o', 'k'} // {"ok":

// errorResponse is {"error": {"type": typ, "message": msg}}.
func errorResponse(typ, msg string) []byte {
	b := make([]byte, 0, 24+len(typ)+len(msg))
	b = append(b, 0x81, 0xa5, 'e', 'r', 'r', 'o', 'r', 0x82, 0xa4, 't', 'y', 'p', 'e')
	b = AppendString(b, typ)
	b = append(b, 0xa7, 'm', 'e', 's', 's', 'a', 'g', 'e')
	return AppendString(b, msg)
}

func handle(req []byte) (resp []byte) {
	defer func() {
		if p := recover(); p != nil {
			resp = panicResponse(p)
		}
	}()
	event, bad := parseRequest(req, &context)
	if bad != "" {
		return errorResponse("InvalidRequest", bad)
	}
	var result any
	var err error
	switch {
	case valueHandler != nil:
		var v Value
		if v, err = valueHandler(event, &context); err == nil {
			return valueResponse(req, event, v)
		}
	case handler != nil:
		result, err = handler(event, &context)
	default:
		return errorResponse("NoHandler", "no handler registered: call wasmhost.Handle from an init function")
	}
	if err != nil {
		return errorResponse(errorType(err), err.Error())
	}
	if v, ok := result.(Value); ok {
		return valueResponse(req, event, v)
	}
	out, err := Append(responseBuffer(len(req), 256), result)
	if err != nil {
		return errorResponse("InvalidResult", err.Error())
	}
	return out
}

// responseBuffer is {"ok": with room for size more bytes: in the arena
// (after the request if that is there) when it fits, so small responses
// need no heap; append moves it to the heap if it outgrows the arena.
func responseBuffer(reqLen, size int) []byte {
	start := 0
	if reqLen <= len(arena) { // the request is in the arena
		start = (reqLen + 7) &^ 7
	}
	if start+4+size <= len(arena) {
		return append(arena[start:start:len(arena)], okPrefix[:]...)
	}
	return append(make([]byte, 0, 4+size), okPrefix[:]...)
}

// valueResponse answers {"ok": v}.
func valueResponse(req []byte, event, v Value) []byte {
	if len(v.raw) == 0 {
		return append(responseBuffer(len(req), 1), 0xc0)
	}
	if len(v.raw) == len(event.raw) && unsafe.SliceData(v.raw) == unsafe.SliceData(event.raw) {
		// The result is the event itself (echo): answer in place. The 4
		// bytes before the event are the tail of its "event" key (5 bytes of
		// key text always precede the value), which nothing refers to.
		off := int(uintptr(unsafe.Pointer(unsafe.SliceData(event.raw))) - uintptr(unsafe.Pointer(unsafe.SliceData(req))))
		if off >= 5 && off+len(event.raw) <= len(req) {
			copy(req[off-4:off], okPrefix[:])
			return req[off-4 : off+len(event.raw)]
		}
	}
	return append(responseBuffer(len(req), len(v.raw)), v.raw...)
}

func panicResponse(p any) []byte {
	var msg string
	switch x := p.(type) {
	case error:
		msg = x.Error()
	case string:
		msg = x
	case interface{ String() string }:
		msg = x.String()
	default:
		msg = "panic of a non-error, non-string value"
	}
	stack := make([]byte, 8<<10)
	stack = stack[:runtime.Stack(stack, false)]
	println("panic:", msg) // builtin println writes to stderr: the invocation's logs
	println(bytesToString(stack))
	return errorResponse("Panic", msg)
}

// parseRequest decodes the request map: the event's span, and the context
// into *ctx. bad is the InvalidRequest message, or "".
func parseRequest(req []byte, ctx *Context) (event Value, bad string) {
	const invalid = "request is not valid msgpack"
	r := Reader{buf: req}
	n, err := r.ReadMapHeader()
	if err != nil {
		return event, "request is not a msgpack map"
	}
	haveEvent, haveContext := false, false
	for ; n > 0; n-- {
		k, err := r.ReadStrBytes()
		if err != nil {
			if r.Skip() != nil || r.Skip() != nil {
				return event, invalid
			}
			continue
		}
		switch string(k) {
		case "event":
			if event, err = r.ReadValue(); err != nil {
				return event, invalid
			}
			haveEvent = true
		case "context":
			if bad = parseContext(&r, ctx); bad != "" {
				return event, bad
			}
			haveContext = true
		default:
			if r.Skip() != nil {
				return event, invalid
			}
		}
	}
	switch {
	case !r.Done():
		return event, "trailing bytes after the request map"
	case !haveEvent:
		return event, `request has no "event" key`
	case !haveContext:
		return event, `request has no "context" key`
	}
	return event, ""
}

func parseContext(r *Reader, c *Context) string {
	n, err := r.ReadMapHeader()
	if err != nil {
		return `"context" is not a map`
	}
	for ; n > 0; n-- {
		k, err := r.ReadStrBytes()
		if err != nil {
			if r.Skip() != nil || r.Skip() != nil {
				return "request is not valid msgpack"
			}
			continue
		}
		var s *string
		var i *int64
		switch string(k) {
		case "request_id":
			s = &c.RequestID
		case "function_name":
			s = &c.FunctionName
		case "function_version":
			s = &c.FunctionVersion
		case "memory_limit_mb":
			i = &c.MemoryLimitMB
		case "deadline_ms":
			i = &c.DeadlineMS
		default:
			if r.Skip() != nil {
				return "request is not valid msgpack"
			}
			continue
		}
		if s != nil {
			if *s, err = r.ReadStr(); err != nil {
				return "context." + string(k) + " is not a string"
			}
		} else if *i, err = r.ReadInt(); err != nil {
			return "context." + string(k) + " is not an integer"
		}
	}
	return ""
}

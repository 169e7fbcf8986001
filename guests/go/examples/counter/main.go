// counter: a package-level counter, incremented and returned. Every invocation
// gets a fresh instance, so it answers 1 every time.
package main

import "wasmhost.local/wasmhost"

var calls int

func counter(event wasmhost.Value, ctx *wasmhost.Context) (int, error) {
	calls++
	return calls, nil
}

func init() { wasmhost.Handle(counter) }

func main() {} // required by Go; a c-shared module never runs it

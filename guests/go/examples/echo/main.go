// echo: returns the event unchanged (its msgpack bytes, verbatim).
package main

import "wasmhost.local/wasmhost"

func echo(event wasmhost.Value, ctx *wasmhost.Context) (wasmhost.Value, error) {
	return event, nil
}

func init() { wasmhost.Handle(echo) }

func main() {} // required by Go; a c-shared module never runs it

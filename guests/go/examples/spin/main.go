// spin: never returns (the host stops it with Timeout or FuelExhausted).
package main

import "wasmhost.local/wasmhost"

var spins uint64

func spin(event wasmhost.Value, ctx *wasmhost.Context) (any, error) {
	for {
		spins++ // a package-level variable: the loop cannot be optimised away
	}
}

func init() { wasmhost.Handle(spin) }

func main() {} // required by Go; a c-shared module never runs it

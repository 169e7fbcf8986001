// hog: keeps 1 MiB blocks until the memory limit stops it. The Go runtime
// dies with "fatal error: out of memory", which the host reports as OutOfMemory.
package main

import "wasmhost.local/wasmhost"

var kept [][]byte

func hog(event wasmhost.Value, ctx *wasmhost.Context) (int, error) {
	for {
		block := make([]byte, 1<<20)
		for i := range block {
			block[i] = 1
		}
		kept = append(kept, block)
	}
}

func init() { wasmhost.Handle(hog) }

func main() {}

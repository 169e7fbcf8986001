// env: answers the whole environment it sees, as a map of name -> value.
// The host passes only the function's configured variables (env and secrets),
// nothing of its own; Go's runtime reads them with WASI environ_get at start.
package main

import (
	"os"
	"strings"

	"wasmhost.local/wasmhost"
)

func env(event wasmhost.Value, ctx *wasmhost.Context) (map[string]string, error) {
	vars := map[string]string{}
	for _, kv := range os.Environ() {
		name, value, _ := strings.Cut(kv, "=")
		vars[name] = value
	}
	return vars, nil
}

func init() { wasmhost.Handle(env) }

func main() {} // required by Go; a c-shared module never runs it

// error: a function error unless the event has a "name" string.
package main

import "wasmhost.local/wasmhost"

type greeting struct {
	Greeting string `json:"greeting"`
}

func greet(event wasmhost.Value, ctx *wasmhost.Context) (*greeting, error) {
	name, ok := event.Get("name").Str()
	if !ok {
		return nil, wasmhost.NewError("ValidationError", "name is required")
	}
	return &greeting{Greeting: "hello " + name}, nil
}

func init() { wasmhost.Handle(greet) }

func main() {} // required by Go; a c-shared module never runs it

// hello: the canonical first function. Prints one log line and answers an
// API-gateway style response.
package main

import (
	"fmt"

	"wasmhost.local/wasmhost"
)

func hello(event wasmhost.Value, ctx *wasmhost.Context) (any, error) {
	fmt.Println("hello: invoked")
	return map[string]any{"statusCode": 200, "body": "Hello from Serverless!"}, nil
}

func init() { wasmhost.Handle(hello) }

func main() {} // required by Go; a c-shared module never runs it

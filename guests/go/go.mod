module wasmhost.local/wasmhost

go 1.24

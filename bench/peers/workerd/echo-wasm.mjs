// The `workerd-wasm` peer: the echo runs in WebAssembly (echo.wat), with a FRESH instance
// per request, as wasmhost does. workerd compiles the module once (a wasm module binding);
// each request instantiates it, copies the body in, calls handle() and copies the answer out.
import echoModule from "echo.wasm";

export default {
  async fetch(request) {
    const body = new Uint8Array(await request.arrayBuffer());
    const { memory, alloc, handle } = new WebAssembly.Instance(echoModule, {}).exports;
    const ptr = alloc(body.length);
    if (ptr === 0 && body.length > 0) return new Response("out of memory", { status: 500 });
    new Uint8Array(memory.buffer, ptr, body.length).set(body);
    const r = BigInt.asUintN(64, handle(ptr, body.length));
    const outPtr = Number(r >> 32n);
    const outLen = Number(r & 0xffffffffn);
    // slice() copies the bytes out of the instance's memory.
    const out = new Uint8Array(memory.buffer).slice(outPtr, outPtr + outLen);
    return new Response(out, { headers: { "content-type": "application/json" } });
  },
};

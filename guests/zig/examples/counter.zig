//! counter: increments a global on each call. Every invocation runs in a
//! fresh instance, so this must always answer 1.
const wasmhost = @import("wasmhost");

pub const panic = wasmhost.panic;
comptime {
    wasmhost.exportHandler(handle);
}

var count: u32 = 0;

fn handle(event: wasmhost.Reader, ctx: *const wasmhost.Context, out: *wasmhost.Writer) !u32 {
    _ = event;
    _ = ctx;
    _ = out;
    count += 1;
    return count; // a returned value becomes the result: {"ok": count}
}

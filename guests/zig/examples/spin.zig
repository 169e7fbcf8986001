//! spin: never returns; the host must stop it (Timeout or FuelExhausted).
const wasmhost = @import("wasmhost");

pub const panic = wasmhost.panic;
comptime {
    wasmhost.exportHandler(handle);
}

var counter: u64 = 0;

fn handle(event: wasmhost.Reader, ctx: *const wasmhost.Context, out: *wasmhost.Writer) !void {
    _ = event;
    _ = ctx;
    _ = out;
    // A volatile store on every iteration: the loop cannot be optimised away.
    const p: *volatile u64 = &counter;
    while (true) p.* +%= 1;
}

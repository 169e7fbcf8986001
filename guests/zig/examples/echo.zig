//! echo: returns the event unchanged (its msgpack bytes copied verbatim).
const wasmhost = @import("wasmhost");

pub const panic = wasmhost.panic;
comptime {
    wasmhost.exportHandler(handle);
}

fn handle(event: wasmhost.Reader, ctx: *const wasmhost.Context, out: *wasmhost.Writer) !void {
    _ = ctx;
    var ev = event;
    try out.writeRaw(try ev.readRaw());
}

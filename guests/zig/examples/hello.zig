//! hello: the canonical first function. Prints one log line and answers an
//! API-gateway style response.
const wasmhost = @import("wasmhost");

pub const panic = wasmhost.panic;
comptime {
    wasmhost.exportHandler(handle);
}

fn handle(event: wasmhost.Reader, ctx: *const wasmhost.Context, out: *wasmhost.Writer) !void {
    _ = event;
    _ = ctx;
    wasmhost.print("hello: invoked\n", .{});
    try out.write(.{ .statusCode = 200, .body = "Hello from Serverless!" });
}

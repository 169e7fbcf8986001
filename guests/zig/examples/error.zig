//! error: a function error unless the event has a "name" string.
//!   {"name": "x"}        -> {"greeting": "hello x"}
//!   no "name"            -> FunctionError, error_type "ValidationError"
//!   {"name": "x", "fail": true} -> FunctionError, error_type "Unlucky"
//!                                  (a bare Zig error, message "error.Unlucky")
const wasmhost = @import("wasmhost");

pub const panic = wasmhost.panic;
comptime {
    wasmhost.exportHandler(handle);
}

fn handle(event: wasmhost.Reader, ctx: *const wasmhost.Context, out: *wasmhost.Writer) !void {
    _ = ctx;
    const name = event.getStr("name") orelse
        return out.raise(error.ValidationError, "name is required");
    if (event.getBool("fail") orelse false) return error.Unlucky;
    try out.writeMap(1);
    try out.writeStr("greeting");
    try out.writeStrFmt("hello {s}", .{name});
}

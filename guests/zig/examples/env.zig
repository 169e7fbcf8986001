//! env: answers the whole environment it sees, as a map of name -> value.
//! The host passes only the function's configured variables (env and secrets),
//! nothing of its own. On WASI without libc, std reads them with
//! environ_sizes_get + environ_get when the map is created.
const std = @import("std");
const wasmhost = @import("wasmhost");

pub const panic = wasmhost.panic;
comptime {
    wasmhost.exportHandler(handle);
}

fn handle(event: wasmhost.Reader, ctx: *const wasmhost.Context, out: *wasmhost.Writer) !void {
    _ = event;
    _ = ctx;
    // A reactor has no main(), so no std.process.Init: `.global` is the process's own environment.
    const environ: std.process.Environ = .{ .block = .global };
    var vars = environ.createMap(wasmhost.allocator) catch |err| switch (err) {
        error.OutOfMemory => return error.OutOfMemory,
        error.Unexpected => return out.fail("EnvironmentError", "environ_get failed"),
    };
    try out.writeMap(@intCast(vars.count()));
    var it = vars.iterator();
    while (it.next()) |entry| {
        try out.writeStr(entry.key_ptr.*);
        try out.writeStr(entry.value_ptr.*);
    }
}

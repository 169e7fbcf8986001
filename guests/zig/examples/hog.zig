//! hog: allocates 1 MiB blocks until the memory limit stops it. A Zig error
//! named OutOfMemory is reported by the host as OutOfMemory.
const std = @import("std");
const wasmhost = @import("wasmhost");

pub const panic = wasmhost.panic;
comptime {
    wasmhost.exportHandler(handle);
}

fn handle(event: wasmhost.Reader, ctx: *const wasmhost.Context, out: *wasmhost.Writer) !u32 {
    _ = event;
    _ = ctx;
    _ = out;
    var blocks: u32 = 0;
    while (true) {
        const block = try wasmhost.allocator.alloc(u8, 1024 * 1024);
        @memset(block, 1);
        blocks += 1;
    }
    return blocks;
}

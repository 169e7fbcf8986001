//! spin: never returns (the host stops it with Timeout or FuelExhausted).
use wasmhost::{Context, Value};

fn spin(_event: Value, _ctx: &Context) -> wasmhost::Result<()> {
    let mut n: u64 = 0;
    loop {
        // a volatile store the optimiser must keep: the loop cannot be removed
        unsafe { std::ptr::write_volatile(&mut n, n.wrapping_add(1)) };
    }
}

wasmhost::handler!(spin);

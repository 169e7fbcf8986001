//! counter: a global counter, incremented and returned. Every invocation gets a
//! fresh instance, so it answers 1 every time.
use std::sync::atomic::{AtomicU64, Ordering};
use wasmhost::{Context, Value};

static CALLS: AtomicU64 = AtomicU64::new(0);

fn counter(_event: Value, _ctx: &Context) -> wasmhost::Result<u64> {
    Ok(CALLS.fetch_add(1, Ordering::SeqCst) + 1)
}

wasmhost::handler!(counter);

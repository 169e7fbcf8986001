//! hog: grows a vector of 1 MiB blocks until the memory limit stops it. Rust
//! aborts on a failed allocation ("memory allocation of N bytes failed"),
//! which the host reports as OutOfMemory.
use wasmhost::{Context, Value};

fn hog(_event: Value, _ctx: &Context) -> wasmhost::Result<u64> {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![1u8; 1024 * 1024]);
        if blocks.len() == usize::MAX {
            return Ok(blocks.len() as u64);
        }
    }
}

wasmhost::handler!(hog);

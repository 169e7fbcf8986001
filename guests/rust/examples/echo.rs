//! echo: returns the event unchanged (its msgpack bytes, verbatim).
use wasmhost::{Context, Value};

fn echo(event: Value, _ctx: &Context) -> wasmhost::Result<Value> {
    Ok(event)
}

wasmhost::handler!(echo);

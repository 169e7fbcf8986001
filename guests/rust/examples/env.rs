//! env: answers the whole environment it sees, as a map of name -> value.
//! The host passes only the function's configured variables (env and secrets),
//! nothing of its own; std reads them through wasi-libc (WASI environ_get).
use std::collections::BTreeMap;

use wasmhost::{Context, Value};

fn env(_event: Value, _ctx: &Context) -> wasmhost::Result<BTreeMap<String, String>> {
    Ok(std::env::vars().collect())
}

wasmhost::handler!(env);

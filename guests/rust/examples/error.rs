//! error: a function error unless the event has a "name" string.
use wasmhost::{Context, Encode, Error, Value};

fn greet(event: Value, _ctx: &Context) -> Result<impl Encode, Error> {
    let name = event
        .get_str("name")
        .ok_or_else(|| Error::new("ValidationError", "name is required"))?;
    Ok(wasmhost::obj! { "greeting" => format!("hello {}", name) })
}

wasmhost::handler!(greet);

//! hello: the canonical first function. Prints one log line and answers an
//! API-gateway style response.
use wasmhost::{Context, Encode, Value};

fn hello(_event: Value, _ctx: &Context) -> wasmhost::Result<impl Encode> {
    println!("hello: invoked");
    Ok(wasmhost::obj! {
        "statusCode" => 200,
        "body" => "Hello from Serverless!",
    })
}

wasmhost::handler!(hello);

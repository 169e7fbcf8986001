"""``wasmhost init``: a new function folder per language."""

from __future__ import annotations

from pathlib import Path

from .base import BuildError

PYTHON_HANDLER = """import json


def handler(event, context):
    print(f"Received event: {json.dumps(event)}")
    print(f"Time remaining (ms): {context.get_remaining_time_in_millis()}")
    return {"statusCode": 200, "body": json.dumps({"message": "Hello from Serverless!"})}
"""

C_HANDLER = """#include <stdio.h>
#include "wasmhost.h"

static int handle(wh_reader event, const wh_context *ctx, wh_writer *out) {
    (void)event;
    printf("invoked with %lld ms left\\n", (long long)wh_remaining_ms(ctx));
    wh_write_map(out, 2);
    wh_write_str(out, "statusCode");
    wh_write_int(out, 200);
    wh_write_str(out, "body");
    wh_write_str(out, "Hello from Serverless!");
    return 0;
}

WASMHOST_HANDLER(handle);
"""

ZIG_HANDLER = """const wasmhost = @import("wasmhost");

pub const panic = wasmhost.panic;
comptime {
    wasmhost.exportHandler(handle);
}

fn handle(event: wasmhost.Reader, ctx: *const wasmhost.Context, out: *wasmhost.Writer) !void {
    _ = event;
    wasmhost.print("invoked with {d} ms left\\n", .{ctx.remainingMs()});
    try out.write(.{ .statusCode = 200, .body = "Hello from Serverless!" });
}
"""

ASSEMBLYSCRIPT_HANDLER = """import { Reader, Context, Writer, print, register } from "./wasmhost";
export { wasmhost_alloc, wasmhost_handle } from "./wasmhost";

function handle(event: Reader, ctx: Context, out: Writer): void {
  print("invoked with " + ctx.remainingMs().toString() + " ms left");
  out.writeMap(2);
  out.writeStr("statusCode");
  out.writeInt(200);
  out.writeStr("body");
  out.writeStr("Hello from Serverless!");
}

register(handle);
"""

JS_HANDLER = """export const handler = async (event, context) => {
  console.log(`Received event: ${JSON.stringify(event)}`);
  console.log(`Time remaining (ms): ${context.getRemainingTimeInMillis()}`);
  return { statusCode: 200, body: JSON.stringify({ message: "Hello from Serverless!" }) };
};
"""

GO_HANDLER = """package main

import (
	"fmt"

	"wasmhost.local/wasmhost"
)

func handle(event wasmhost.Value, ctx *wasmhost.Context) (any, error) {
	fmt.Println("invoked with", ctx.RemainingMS(), "ms left")
	return map[string]any{"statusCode": 200, "body": "Hello from Serverless!"}, nil
}

func init() { wasmhost.Handle(handle) }

func main() {}
"""

RUST_HANDLER = """use wasmhost::{Context, Value};

fn handle(_event: Value, ctx: &Context) -> wasmhost::Result<impl wasmhost::Encode> {
    println!("invoked with {} ms left", ctx.remaining_ms());
    Ok(wasmhost::obj! { "statusCode" => 200, "body" => "Hello from Serverless!" })
}

wasmhost::handler!(handle);
"""

TEMPLATES: dict[str, tuple[str, str, str]] = {
    # lang: (file name, contents, handler setting)
    "python": ("handler.py", PYTHON_HANDLER, "handler.handler"),
    "js": ("index.js", JS_HANDLER, "index.handler"),
    "c": ("handler.c", C_HANDLER, ""),
    "zig": ("handler.zig", ZIG_HANDLER, ""),
    "assemblyscript": ("handler.ts", ASSEMBLYSCRIPT_HANDLER, ""),
    "go": ("main.go", GO_HANDLER, ""),
    "rust": ("handler.rs", RUST_HANDLER, ""),
}


def init(name: str, lang: str, parent: Path) -> Path:
    """Create ``parent/name`` with a handler, ``wasmhost.toml`` and a README. Raises ``BuildError``."""
    if lang not in TEMPLATES:
        raise BuildError(f"wasmhost init does not have a {lang} template yet (available: {', '.join(TEMPLATES)})")
    root = parent / name
    if root.exists():
        raise BuildError(f"{root} already exists")
    filename, contents, handler = TEMPLATES[lang]
    root.mkdir(parents=True)
    (root / filename).write_text(contents)
    handler_line = f'handler = "{handler}"\n' if handler else ""
    (root / "wasmhost.toml").write_text(
        f'name = "{name}"\nlang = "{lang}"\n{handler_line}memory_mb = 128\ntimeout_ms = 3000\n\n[env]\n'
    )
    (root / "README.md").write_text(
        f"# {name}\nA wasmhost function in {lang}: edit `{filename}`.\n"
        f"Deploy it with `wasmhost deploy {name} .` and call it with `wasmhost invoke {name} --data '{{}}'`.\n"
    )
    return root

// error: a function error unless the event has a "name" string.
import { Reader, Context, Writer, fail, register } from "../assembly/wasmhost";
export { wasmhost_alloc, wasmhost_handle } from "../assembly/wasmhost";

function handle(event: Reader, ctx: Context, out: Writer): void {
  const name = event.getStr("name");
  if (name == null) {
    fail("ValidationError", "name is required");
    return;
  }
  out.writeMap(1);
  out.writeStr("greeting");
  out.writeStr("hello " + name);
}

register(handle);

// echo: returns the event unchanged (its msgpack bytes copied verbatim).
import { Reader, Context, Writer, fail, register } from "../assembly/wasmhost";
export { wasmhost_alloc, wasmhost_handle } from "../assembly/wasmhost";

function handle(event: Reader, ctx: Context, out: Writer): void {
  const raw = event.readRaw();
  if (event.err) { fail("InvalidEvent", "event is not valid msgpack"); return; }
  out.writeSpan(raw);
}

register(handle);

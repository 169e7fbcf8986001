// counter: a global counter, incremented and returned. Every invocation gets a
// fresh instance, so it answers 1 every time.
import { Reader, Context, Writer, register } from "../assembly/wasmhost";
export { wasmhost_alloc, wasmhost_handle } from "../assembly/wasmhost";

let calls: i64 = 0;

function handle(event: Reader, ctx: Context, out: Writer): void {
  calls += 1;
  out.writeInt(calls);
}

register(handle);

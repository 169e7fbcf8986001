// spin: never returns; the host must stop it (timeout or fuel).
import { Reader, Context, Writer, register } from "../assembly/wasmhost";
export { wasmhost_alloc, wasmhost_handle } from "../assembly/wasmhost";

let counter: u64 = 0;

function handle(event: Reader, ctx: Context, out: Writer): void {
  while (true) counter++;
}

register(handle);

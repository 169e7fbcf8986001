// hog: keeps 1 MiB arrays until the memory limit stops it.
import { Reader, Context, Writer, register } from "../assembly/wasmhost";
export { wasmhost_alloc, wasmhost_handle } from "../assembly/wasmhost";

const kept: Array<Uint8Array> = [];

function handle(event: Reader, ctx: Context, out: Writer): void {
  while (true) {
    const block = new Uint8Array(1024 * 1024);
    block.fill(1);
    kept.push(block);
  }
}

register(handle);

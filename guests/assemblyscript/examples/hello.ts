// hello: the canonical first function. Prints one log line and answers an
// API-gateway style response.
import { Reader, Context, Writer, print, register } from "../assembly/wasmhost";
export { wasmhost_alloc, wasmhost_handle } from "../assembly/wasmhost";

function handle(event: Reader, ctx: Context, out: Writer): void {
  print("hello: invoked");
  out.writeMap(2);
  out.writeStr("statusCode");
  out.writeInt(200);
  out.writeStr("body");
  out.writeStr("Hello from Serverless!");
}

register(handle);

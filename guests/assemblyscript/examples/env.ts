// env: answers the whole environment it sees, as a map of name -> value.
// The host passes only the function's configured variables (env and secrets),
// nothing of its own.
// The SDK's env() reads it from WASI (AssemblyScript's process.env is empty there).
import { Reader, Context, Writer, env, fail, register } from "../assembly/wasmhost";
export { wasmhost_alloc, wasmhost_handle } from "../assembly/wasmhost";

function handle(event: Reader, ctx: Context, out: Writer): void {
  const vars = env();
  if (vars == null) { fail("EnvironmentError", "environ_get failed"); return; }
  const names = vars.keys();
  out.writeMap(<u32>names.length);
  for (let i = 0; i < names.length; i++) {
    out.writeStr(names[i]);
    out.writeStr(vars.get(names[i]));
  }
}

register(handle);

/* trap: executes `unreachable`; the host reports Trap. */
#include "wasmhost.h"

static int handle(wh_reader event, const wh_context *ctx, wh_writer *out) {
    (void)event;
    (void)ctx;
    (void)out;
    __builtin_trap();
}

WASMHOST_HANDLER(handle);

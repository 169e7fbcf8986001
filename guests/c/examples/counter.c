/* counter: increments a global on each call. Every invocation runs in a fresh
 * instance, so this must always answer 1. */
#include "wasmhost.h"

static int count;

static int handle(wh_reader event, const wh_context *ctx, wh_writer *out) {
    (void)event;
    (void)ctx;
    count++;
    wh_write_int(out, count);
    return 0;
}

WASMHOST_HANDLER(handle);

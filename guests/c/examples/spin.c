/* spin: never returns; the host must stop it (timeout or fuel). */
#include "wasmhost.h"

static int handle(wh_reader event, const wh_context *ctx, wh_writer *out) {
    (void)event;
    (void)ctx;
    (void)out;
    volatile uint64_t counter = 0;
    for (;;) counter++;
    return 0;
}

WASMHOST_HANDLER(handle);

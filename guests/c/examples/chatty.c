/* chatty: prints event.lines numbered lines to stdout (for log capture and
 * its bound), then answers how many it printed. */
#include <stdio.h>
#include "wasmhost.h"

static int handle(wh_reader event, const wh_context *ctx, wh_writer *out) {
    (void)ctx;
    int64_t lines = wh_get_int(event, "lines", 10);
    for (int64_t i = 0; i < lines; i++) printf("line %lld of %lld\n", (long long)i + 1, (long long)lines);
    wh_write_int(out, lines);
    return 0;
}

WASMHOST_HANDLER(handle);

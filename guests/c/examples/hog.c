/* hog: allocates (and touches) memory until malloc fails, then aborts, which
 * traps with linear memory at the function's cap: the host reports
 * OutOfMemory. It takes 1 MiB chunks, then ever smaller ones, so that the
 * last few KiB below the cap get used too. */
#include <stdio.h>
#include "wasmhost.h"

static int handle(wh_reader event, const wh_context *ctx, wh_writer *out) {
    (void)event;
    (void)ctx;
    (void)out;
    size_t total = 0;
    for (size_t chunk = (size_t)1 << 20; chunk >= 64; chunk /= 2) {
        for (;;) {
            volatile char *p = (volatile char *)malloc(chunk);
            if (!p) break;
            for (size_t i = 0; i < chunk; i += 4096) p[i] = 1;
            total += chunk;
        }
    }
    fprintf(stderr, "hog: allocated %lu KiB before malloc failed\n", (unsigned long)(total >> 10));
    abort();
}

WASMHOST_HANDLER(handle);

/* hello: the canonical first function. Prints one log line and answers an
 * API-gateway style response. */
#include <stdio.h>
#include "wasmhost.h"

static int handle(wh_reader event, const wh_context *ctx, wh_writer *out) {
    (void)event;
    (void)ctx;
    printf("hello: invoked\n");
    fflush(stdout);
    wh_write_map(out, 2);
    wh_write_str(out, "statusCode");
    wh_write_int(out, 200);
    wh_write_str(out, "body");
    wh_write_str(out, "Hello from Serverless!");
    return 0;
}

WASMHOST_HANDLER(handle);

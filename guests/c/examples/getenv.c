/* getenv: answers the whole environment it sees, as a map of name -> value.
 * The host passes only the function's configured variables, nothing of its own. */
#include <string.h>
#include "wasmhost.h"

extern char **environ;

static int handle(wh_reader event, const wh_context *ctx, wh_writer *out) {
    (void)event;
    (void)ctx;
    uint32_t count = 0;
    for (char **e = environ; e && *e; e++) count++;
    wh_write_map(out, count);
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t name_len = eq ? (size_t)(eq - *e) : strlen(*e);
        wh_write_strn(out, *e, name_len);
        wh_write_str(out, eq ? eq + 1 : "");
    }
    return 0;
}

WASMHOST_HANDLER(handle);

/* fuzz_oai_parse.c - libFuzzer harness for the server's request parser: any
 * body must parse into a valid struct srv_request or fail with a 400 that
 * names a field, for every endpoint, without leaks or out-of-bounds access.
 * Build and run: make fuzz; build/fuzz/fuzz_oai_parse -max_total_time=60 */
#include "server/server_int.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void touch(const struct srv_request *r)
{
    size_t n = 0;
    for (size_t i = 0; i < r->n_messages; i++)
        for (size_t j = 0; j < r->messages[i].n_parts; j++) {
            const struct srv_part *p = &r->messages[i].parts[j];
            n += strlen(p->kind == SRV_PART_TEXT ? p->text : p->image_url);
        }
    for (size_t i = 0; i < r->n_inputs; i++)
        n += r->inputs[i].text ? strlen(r->inputs[i].text) : r->inputs[i].n_ids;
    for (size_t i = 0; i < r->sampling.n_stop; i++)
        n += strlen(r->sampling.stop[i]);
    if (n == (size_t)-1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    for (int ep = SRV_EP_CHAT; ep <= SRV_EP_EMBEDDING; ep++) {
        struct srv_parsed p;
        struct srv_perr e = {0};
        if (srv__parse_request((enum srv_endpoint)ep, body, size, &p, &e) == KM_OK) {
            touch(&p.req);
            srv__parsed_free(&p);
        } else if (e.status != 400) {
            abort();
        }
    }
    struct srv_parsed p;
    struct srv_perr e = {0};
    bool special = false;
    if (srv__parse_tokenize(body, size, &p, &special, &e) == KM_OK)
        srv__parsed_free(&p);
    if (srv__parse_detokenize(body, size, &p, &e) == KM_OK)
        srv__parsed_free(&p);
    return 0;
}

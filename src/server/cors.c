/* cors.c - the CORS allowlist (--cors-origin). An origin is allowed when it
 * equals one entry exactly (scheme://host[:port], compared case-insensitively)
 * or when the list holds "*". With an empty list no CORS headers are sent. */
#include "server/server_int.h"

#include <string.h>
#include <strings.h>

bool srv__cors_allowed(const struct srv_strlist *origins, const char *origin)
{
    if (!origin || !origin[0])
        return false;
    for (size_t i = 0; i < origins->n; i++) {
        if (strcmp(origins->v[i], "*") == 0)
            return true;
        if (strcasecmp(origins->v[i], origin) == 0)
            return true;
    }
    return false;
}

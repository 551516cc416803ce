/* err.c - error codes, names and messages (see err.h). */
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *km_strerror(int code)
{
    switch (code) {
#define KM_ERR_MSG(name, num, msg) case num: return msg;
        KM_ERR_MAP(KM_ERR_MSG)
#undef KM_ERR_MSG
    }
    return "unknown error";
}

const char *km_errname(int code)
{
    switch (code) {
#define KM_ERR_NAME(name, num, msg) case num: return #name;
        KM_ERR_MAP(KM_ERR_NAME)
#undef KM_ERR_NAME
    }
    return "KM_E?";
}

int km_fail(struct km_err *e, int code, const char *fmt, ...)
{
    if (!e)
        return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

int km_err_prefix(struct km_err *e, const char *fmt, ...)
{
    if (!e)
        return KM_OK;
    char head[KM_ERR_LEN];
    char old[KM_ERR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    if (old[0])
        snprintf(e->msg, sizeof e->msg, "%s: %s", head, old);
    else
        snprintf(e->msg, sizeof e->msg, "%s: %s", head, km_strerror(e->code));
    return e->code;
}

void km_err_clear(struct km_err *e)
{
    if (!e)
        return;
    e->code = KM_OK;
    e->msg[0] = '\0';
}

const char *km_err_text(const struct km_err *e)
{
    if (!e)
        return "";
    return e->msg[0] ? e->msg : km_strerror(e->code);
}

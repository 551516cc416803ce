/* gateway_fake.h - test helper (gateway): start tests/gateway/fault_upstream.py
 * on a loopback port and talk to it with tiny blocking HTTP calls.
 * gw_fake_stop kills and reaps the process. Not thread-safe. */
#ifndef TESTS_GATEWAY_FAKE_H
#define TESTS_GATEWAY_FAKE_H

#include <stddef.h>
#include <sys/types.h>

struct gw_fake {
    pid_t pid;
    int port;
    char url[64];       /* http://127.0.0.1:PORT */
};

/* args: extra flags for fault_upstream.py, NULL-terminated. 0 on success. */
int gw_fake_start(struct gw_fake *f, const char *const *args);
void gw_fake_stop(struct gw_fake *f);
/* Blocking request; returns the HTTP status (0 on failure), body in out. */
int gw_http(const char *method, const char *url, const char *body, char *out,
            size_t cap);

#endif

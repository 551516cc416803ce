/* scripted_server.c - a test-only server process: `kanoa-mlops serve` with
 * the scripted backend (tests/helpers/server_scripted.c) instead of a model,
 * for the npm SDK suite and the hostile-request suite. Built by
 * tests/compat/build-scripted.sh; never part of the shipped binary.
 *
 * usage: scripted_server [serve settings as key=value ...]
 * Prints "port N" on stdout once listening; SIGTERM/SIGINT drain and exit 0. */
#include "server/server.h"
#include "helpers/server_scripted.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    struct srv_config cfg;
    struct km_err err;
    srv_config_init(&cfg);
    srv_config_set(&cfg, SRV_LAYER_DEFAULT, "port", "0", &err);
    for (int i = 1; i < argc; i++) {
        char key[64];
        const char *eq = strchr(argv[i], '=');
        if (!eq || eq - argv[i] >= (long)sizeof key) {
            fprintf(stderr, "scripted_server: bad setting '%s'\n", argv[i]);
            return 2;
        }
        snprintf(key, sizeof key, "%.*s", (int)(eq - argv[i]), argv[i]);
        if (srv_config_set(&cfg, SRV_LAYER_FLAG, key, eq + 1, &err)) {
            fprintf(stderr, "scripted_server: %s\n", err.msg);
            return 2;
        }
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    km_log_set_format(strcmp(cfg.log_format, "json") ? KM_LOG_TEXT : KM_LOG_JSON);
    struct srv_server *srv = NULL;
    int rc = srv_server_new(&cfg, &srv, &err);
    if (!rc)
        rc = srv_server_add_backend(srv, scripted_backend_new(), &err);
    if (!rc)
        rc = srv_server_start(srv, &err);
    if (rc) {
        fprintf(stderr, "scripted_server: %s\n", err.msg);
        srv_server_free(srv);
        srv_config_free(&cfg);
        return 1;
    }
    printf("port %d\n", srv_server_port(srv));
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    srv_server_drain(srv, cfg.drain_timeout);
    srv_server_free(srv);
    srv_config_free(&cfg);
    return 0;
}

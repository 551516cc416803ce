/* cmd_db.c - `kanoa-mlops db start|stop|status`: the embedded PostgreSQL +
 * pgvector cluster (rag/db.c does the work). */
#include "cli/cli.h"
#include "rag/rag.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: kanoa-mlops db start|stop|status [--data-dir DIR]\n"
    "\n"
    "Run a private PostgreSQL cluster with pgvector for the knowledge base.\n"
    "  start   initdb on first use (role 'kanoa' with a random password,\n"
    "          scram-sha-256), start the server on 127.0.0.1 on a free port\n"
    "          and on a unix socket in DIR, create the database 'kanoa' with\n"
    "          the 'vector' extension, and print the connection URL\n"
    "  stop    stop the server (fast shutdown)\n"
    "  status  print whether it runs and its URL; exit 3 when it does not\n"
    "\n"
    "The URL printed by start/status is what --database-url and\n"
    "KANOA_DATABASE_URL take; 'rag' commands find this cluster by itself\n"
    "when neither is given. Use any other PostgreSQL server with pgvector\n"
    "through --database-url instead of this one.\n"
    "\n"
    "PostgreSQL refuses to run as root: when run as root, initdb and the\n"
    "server run as the 'postgres' user and DIR is owned by it (every parent\n"
    "folder of DIR must be searchable by that user).\n"
    "\n"
    "options:\n"
    "  -d, --data-dir DIR  cluster folder (default $KANOA_DB_DIR, else\n"
    "                      /var/lib/kanoa-mlops/pgdata as root, else\n"
    "                      ~/.local/share/kanoa-mlops/pgdata)\n"
    "  -q, --quiet         print only the URL (start, status)\n"
    "  -h, --help          show this help\n";

static void print_status(const struct db_status *st, bool quiet)
{
    if (quiet) {
        if (st->running)
            printf("%s\n", st->url);
        return;
    }
    printf("data dir: %s\n", st->data_dir);
    printf("state:    %s\n", st->running ? "running" : "stopped");
    if (st->running) {
        printf("port:     %d\n", st->port);
        printf("url:      %s\n", st->url);
        printf("export KANOA_DATABASE_URL='%s'\n", st->url);
    }
}

int cmd_db(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data-dir", required_argument, NULL, 'd'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    char dir[4096] = "";
    bool quiet = false;
    for (;;) {
        int c = getopt_long(argc, argv, "d:qh", opts, NULL);
        if (c == -1)
            break;
        switch (c) {
        case 'd': snprintf(dir, sizeof dir, "%s", optarg); break;
        case 'q': quiet = true; break;
        case 'h': fputs(usage, stdout); return CLI_EXIT_OK;
        default: return cli_usage_error(usage);
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "kanoa-mlops db: expected one of start, stop, status\n");
        return cli_usage_error(usage);
    }
    const char *action = argv[optind];
    struct km_err err;
    km_err_clear(&err);
    struct db_status st;
    int rc = dir[0] ? KM_OK : db_default_dir(dir, sizeof dir, &err);
    if (rc == KM_OK && strcmp(action, "start") == 0) {
        if (!quiet)
            fprintf(stderr, "kanoa-mlops db: starting the cluster in %s ...\n", dir);
        rc = db_start(dir, &st, &err);
    } else if (rc == KM_OK && strcmp(action, "stop") == 0) {
        rc = db_stop(dir, &err);
        if (rc == KM_OK && !quiet)
            printf("stopped: %s\n", dir);
        return rc == KM_OK ? CLI_EXIT_OK : cli_fail("db", &err);
    } else if (rc == KM_OK && strcmp(action, "status") == 0) {
        rc = db_status_get(dir, &st, &err);
    } else if (rc == KM_OK) {
        fprintf(stderr, "kanoa-mlops db: unknown action '%s'\n", action);
        return cli_usage_error(usage);
    }
    if (rc != KM_OK)
        return cli_fail("db", &err);
    print_status(&st, quiet);
    return st.running ? CLI_EXIT_OK : 3;
}

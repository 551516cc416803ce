/* db.c - the embedded PostgreSQL cluster: initdb, pg_ctl start/stop/status.
 *
 * Layout of a data dir DIR (created by `db start`):
 *   DIR/PG_VERSION ...      the cluster (initdb -U kanoa, scram-sha-256)
 *   DIR/kanoa.conf          port, listen_addresses = '127.0.0.1', socket dir;
 *                           rewritten at each start (included from
 *                           postgresql.conf)
 *   DIR/kanoa.password      the `kanoa` role's random password (mode 0600)
 *   DIR/server.log          the server log
 * The server listens on 127.0.0.1 on a port that was free at start, and on a
 * unix socket in DIR (or /tmp when DIR is too long for a socket path).
 *
 * PostgreSQL refuses to run as root: when the caller is root, initdb,
 * pg_ctl and so the server run as the `postgres` user (setuid in the child),
 * and DIR is owned by that user. Programs run without a shell; data dirs
 * with characters outside [A-Za-z0-9/._+-] are refused because pg_ctl
 * passes the path through /bin/sh.
 */
#include "rag/rag.h"

#include "base/mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define DB_USER "kanoa"
#define DB_NAME "kanoa"
#define RUN_AS "postgres"

int db_default_dir(char *out, size_t cap, struct km_err *err)
{
    const char *env = getenv("KANOA_DB_DIR");
    const char *xdg = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    int n;
    if (env && env[0])
        n = snprintf(out, cap, "%s", env);
    else if (geteuid() == 0)
        n = snprintf(out, cap, "/var/lib/kanoa-mlops/pgdata");
    else if (xdg && xdg[0])
        n = snprintf(out, cap, "%s/kanoa-mlops/pgdata", xdg);
    else if (home && home[0])
        n = snprintf(out, cap, "%s/.local/share/kanoa-mlops/pgdata", home);
    else
        return km_fail(err, KM_EINVAL, "no data dir: set HOME or KANOA_DB_DIR, or pass --data-dir");
    if (n < 0 || (size_t)n >= cap)
        return km_fail(err, KM_ERANGE, "data dir path too long");
    return KM_OK;
}

static int check_dir_name(const char *dir, struct km_err *err)
{
    if (dir[0] != '/')
        return km_fail(err, KM_EINVAL, "data dir '%s' must be an absolute path", dir);
    for (const char *p = dir; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._+-", *p))
            return km_fail(err, KM_EINVAL, "data dir '%s': character '%c' is not allowed "
                           "(use letters, digits and / . _ + -)", dir, *p);
    if (strlen(dir) > 3000)
        return km_fail(err, KM_ERANGE, "data dir path too long");
    return KM_OK;
}

/* ---- running programs --------------------------------------------------- */

static void find_prog(const char *name, char *out, size_t cap)
{
    static const char *const dirs[] = {"/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin",
                                       "/usr/lib/postgresql/15/bin", NULL};
    const char *env = getenv("KANOA_PG_BINDIR");
    if (env && env[0]) {
        snprintf(out, cap, "%s/%s", env, name);
        return;
    }
    for (int i = 0; dirs[i]; i++) {
        snprintf(out, cap, "%s/%s", dirs[i], name);
        if (access(out, X_OK) == 0)
            return;
    }
    snprintf(out, cap, "%s", name); /* from PATH */
}

static void become_postgres(const struct passwd *pw)
{
    if (!pw)
        return;
    if (setgid(pw->pw_gid) != 0 || initgroups(pw->pw_name, pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0)
        _exit(126);
}

/* Run argv (no shell), as `postgres` when root; its output (capped) goes
 * to `out`. Returns the exit status or -1. */
static int run(char *const argv[], const struct passwd *pw, char *out, size_t cap)
{
    int p[2];
    out[0] = '\0';
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        if (chdir("/") != 0)
            _exit(126);
        become_postgres(pw);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    size_t n = 0;
    char tmp[4096];
    for (ssize_t r = 1; r > 0;) {
        r = read(p[0], tmp, sizeof tmp);
        for (ssize_t i = 0; i < r && n + 1 < cap; i++)
            out[n++] = tmp[i];
    }
    out[n] = '\0';
    close(p[0]);
    int st = 0;
    if (pid < 0)
        return -1;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Last non-empty line of a program's output, for error messages. */
static const char *last_line(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    char *nl = strrchr(s, '\n');
    return nl ? nl + 1 : s;
}

static const struct passwd *run_as(struct km_err *err, int *rc)
{
    *rc = KM_OK;
    if (geteuid() != 0)
        return NULL;
    const struct passwd *pw = getpwnam(RUN_AS);
    if (!pw)
        *rc = km_fail(err, KM_EINVAL, "running as root needs a '%s' user to run the "
                      "server (PostgreSQL refuses root)", RUN_AS);
    return pw;
}

/* ---- files in the data dir ---------------------------------------------- */

static int write_file(const char *path, const char *text, mode_t mode,
                      const struct passwd *pw, struct km_err *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return km_fail(err, KM_EIO, "file %s: %s", path, strerror(errno));
    size_t n = strlen(text);
    bool ok = write(fd, text, n) == (ssize_t)n;
    if (pw && fchown(fd, pw->pw_uid, pw->pw_gid) != 0)
        ok = false;
    close(fd);
    return ok ? KM_OK : km_fail(err, KM_EIO, "file %s: write failed", path);
}

static int read_small(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return KM_ENOTFOUND;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    fclose(f);
    return KM_OK;
}

static int random_hex(char *out, size_t nbytes, struct km_err *err)
{
    unsigned char b[64];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    bool ok = fd >= 0 && nbytes <= sizeof b && read(fd, b, nbytes) == (ssize_t)nbytes;
    if (fd >= 0)
        close(fd);
    if (!ok)
        return km_fail(err, KM_EIO, "cannot read /dev/urandom");
    for (size_t i = 0; i < nbytes; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return KM_OK;
}

static int mkdirs(const char *path, mode_t mode, struct km_err *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return km_fail(err, KM_EIO, "folder %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST)
        return km_fail(err, KM_EIO, "folder %s: %s", tmp, strerror(errno));
    return KM_OK;
}

/* ---- initdb --------------------------------------------------------------- */

static int init_cluster(const char *dir, const struct passwd *pw, struct km_err *err)
{
    char pass[65], path[4200], pwfile[4200], prog[PATH_MAX], out[8192];
    int rc = random_hex(pass, 24, err);
    if (rc == KM_OK)
        rc = mkdirs(dir, 0700, err);
    if (rc == KM_OK && pw && chown(dir, pw->pw_uid, pw->pw_gid) != 0)
        rc = km_fail(err, KM_EIO, "folder %s: chown to %s: %s", dir, RUN_AS, strerror(errno));
    if (rc == KM_OK && chmod(dir, 0700) != 0)
        rc = km_fail(err, KM_EIO, "folder %s: chmod: %s", dir, strerror(errno));
    /* initdb wants an empty dir: keep the password file outside it. */
    snprintf(pwfile, sizeof pwfile, "%s.pw.%d", dir, (int)getpid());
    if (rc == KM_OK)
        rc = write_file(pwfile, pass, 0600, pw, err);
    if (rc != KM_OK)
        return rc;
    find_prog("initdb", prog, sizeof prog);
    char pwarg[4300];
    snprintf(pwarg, sizeof pwarg, "--pwfile=%s", pwfile);
    char *argv[] = {prog, "-D", (char *)dir, "-U", DB_USER, pwarg, "--auth=scram-sha-256",
                    "-E", "UTF8", "--locale=C", NULL};
    int st = run(argv, pw, out, sizeof out);
    unlink(pwfile);
    if (st != 0)
        return km_fail(err, KM_EIO, "initdb %s failed (exit %d): %s", dir, st, last_line(out));
    snprintf(path, sizeof path, "%s/postgresql.conf", dir);
    FILE *f = fopen(path, "ae");
    if (!f)
        return km_fail(err, KM_EIO, "file %s: %s", path, strerror(errno));
    fputs("\n# kanoa-mlops: port and addresses are set at each start\n"
          "include_if_exists = 'kanoa.conf'\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/kanoa.password", dir);
    return write_file(path, pass, 0600, pw, err);
}

static int free_port(int *port, struct km_err *err)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof a;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = s >= 0 && bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
              getsockname(s, (struct sockaddr *)&a, &len) == 0;
    if (s >= 0)
        close(s);
    if (!ok)
        return km_fail(err, KM_ENET, "cannot find a free port on 127.0.0.1: %s", strerror(errno));
    *port = ntohs(a.sin_port);
    return KM_OK;
}

static int write_conf(const char *dir, int port, const struct passwd *pw, struct km_err *err)
{
    char path[4200], text[4400];
    const char *sock = strlen(dir) < 80 ? dir : "/tmp";
    snprintf(path, sizeof path, "%s/kanoa.conf", dir);
    snprintf(text, sizeof text,
             "port = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n"
             "max_connections = 100\nshared_buffers = 256MB\nmaintenance_work_mem = 512MB\n",
             port, sock);
    return write_file(path, text, 0600, pw, err);
}

/* ---- status, start, stop ------------------------------------------------ */

int db_status_get(const char *dir, struct db_status *st, struct km_err *err)
{
    memset(st, 0, sizeof *st);
    snprintf(st->data_dir, sizeof st->data_dir, "%s", dir);
    char path[4200], pid_text[1024], pass[128];
    snprintf(path, sizeof path, "%s/postmaster.pid", dir);
    if (read_small(path, pid_text, sizeof pid_text) != KM_OK)
        return KM_OK; /* not running (or not created) */
    /* postmaster.pid: pid, data dir, start time, port, socket dir, ... */
    long pid = atol(pid_text);
    const char *l = pid_text;
    for (int i = 0; i < 3 && l; i++) {
        l = strchr(l, '\n');
        l = l ? l + 1 : NULL;
    }
    st->port = l ? atoi(l) : 0;
    st->running = pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
    snprintf(path, sizeof path, "%s/kanoa.password", dir);
    if (st->running && read_small(path, pass, sizeof pass) == KM_OK)
        snprintf(st->url, sizeof st->url, "postgresql://%s:%s@127.0.0.1:%d/%s",
                 DB_USER, pass, st->port, DB_NAME);
    (void)err;
    return KM_OK;
}

/* Create the kanoa database and the vector extension (idempotent). */
static int bootstrap(const struct db_status *st, struct km_err *err)
{
    char url[600];
    snprintf(url, sizeof url, "%.*s/postgres", (int)(strrchr(st->url, '/') - st->url), st->url);
    struct rag_db *db = NULL;
    int rc = rag_open(url, &db, err);
    if (rc == KM_OK)
        rc = rag_exec(db, "SELECT 1", err);
    if (rc == KM_OK) {
        struct km_err ignored;
        /* Fails harmlessly when the database exists already. */
        rag_exec(db, "CREATE DATABASE " DB_NAME, &ignored);
    }
    rag_close(db);
    db = NULL;
    if (rc == KM_OK)
        rc = rag_open(st->url, &db, err);
    if (rc == KM_OK)
        rc = rag_exec(db, "CREATE EXTENSION IF NOT EXISTS vector", err);
    rag_close(db);
    if (rc != KM_OK)
        km_err_prefix(err, "setting up database '%s'", DB_NAME);
    return rc;
}

int db_start(const char *dir, struct db_status *st, struct km_err *err)
{
    int rc = check_dir_name(dir, err);
    const struct passwd *pw = rc == KM_OK ? run_as(err, &rc) : NULL;
    char path[4200], prog[PATH_MAX], out[8192];
    if (rc != KM_OK)
        return rc;
    snprintf(path, sizeof path, "%s/PG_VERSION", dir);
    if (access(path, F_OK) != 0)
        rc = init_cluster(dir, pw, err);
    if (rc == KM_OK)
        rc = db_status_get(dir, st, err);
    if (rc != KM_OK || st->running)
        return rc == KM_OK ? bootstrap(st, err) : rc;
    int port = 0;
    rc = free_port(&port, err);
    if (rc == KM_OK)
        rc = write_conf(dir, port, pw, err);
    if (rc != KM_OK)
        return rc;
    find_prog("pg_ctl", prog, sizeof prog);
    snprintf(path, sizeof path, "%s/server.log", dir);
    char *argv[] = {prog, "-D", (char *)dir, "-l", path, "-w", "-t", "60", "start", NULL};
    int code = run(argv, pw, out, sizeof out);
    if (code != 0)
        return km_fail(err, KM_EIO, "pg_ctl start failed (exit %d): %s; see %s",
                       code, last_line(out), path);
    rc = db_status_get(dir, st, err);
    if (rc == KM_OK && !st->running)
        rc = km_fail(err, KM_EIO, "the server in %s did not stay up; see %s", dir, path);
    return rc == KM_OK ? bootstrap(st, err) : rc;
}

int db_stop(const char *dir, struct km_err *err)
{
    int rc = check_dir_name(dir, err);
    const struct passwd *pw = rc == KM_OK ? run_as(err, &rc) : NULL;
    struct db_status st;
    if (rc == KM_OK)
        rc = db_status_get(dir, &st, err);
    if (rc != KM_OK || !st.running)
        return rc;
    char prog[PATH_MAX], out[8192];
    find_prog("pg_ctl", prog, sizeof prog);
    char *argv[] = {prog, "-D", (char *)dir, "-m", "fast", "-w", "-t", "60", "stop", NULL};
    int code = run(argv, pw, out, sizeof out);
    if (code != 0)
        return km_fail(err, KM_EIO, "pg_ctl stop failed (exit %d): %s", code, last_line(out));
    return KM_OK;
}

/* compose.c - the `docker compose` wrapper behind `kanoa-mlops up|down|logs`
 * (see ops.h). The docker program is $KANOA_DOCKER or `docker` on PATH;
 * Compose v2 (`docker compose`) is preferred, `docker-compose` v1 (Debian's
 * package) is the fallback. */
#include "ops/ops.h"
#include "ops/ops_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROBE_TIMEOUT_MS 15000
#define PROBE_OUT_MAX (256u << 10)
#define MAX_ARGS 48

int ops_compose_find(struct ops_compose *c, const char *compose_file,
                     const char *env_file, struct km_err *err)
{
    const char *docker = getenv("KANOA_DOCKER");
    struct km_buf b;
    int status = -1;
    memset(c, 0, sizeof *c);
    snprintf(c->file, sizeof c->file, "%s", compose_file);
    snprintf(c->env_file, sizeof c->env_file, "%s", env_file);
    if (access(compose_file, R_OK) != 0)
        return km_fail(err, KM_ENOTFOUND, "compose file %s: %s (pass --file "
                       "or run from the kanoa-mlops checkout)", compose_file,
                       strerror(errno));
    if (access(env_file, R_OK) != 0)
        return km_fail(err, KM_ENOTFOUND, "%s: %s (run 'kanoa-mlops init' "
                       "first)", env_file, strerror(errno));
    if (!docker || !*docker)
        docker = "docker";
    km_buf_init(&b, PROBE_OUT_MAX);
    if (ops__have_program(docker)) {
        const char *argv[] = {docker, "compose", "version", NULL};
        struct km_err e;
        if (ops__run_capture(argv, &b, 1, PROBE_TIMEOUT_MS, &status, &e) ==
                KM_OK && status == 0) {
            snprintf(c->docker, sizeof c->docker, "%s", docker);
            c->v2 = true;
            km_buf_free(&b);
            return KM_OK;
        }
    }
    km_buf_free(&b);
    if (ops__have_program("docker-compose")) {
        snprintf(c->docker, sizeof c->docker, "docker-compose");
        return KM_OK;
    }
    if (!ops__have_program(docker))
        return km_fail(err, KM_ENOTFOUND, "%s not found on PATH: install "
                       "Docker Engine and the Compose plugin (Debian 12: "
                       "apt-get install docker.io docker-compose)", docker);
    return km_fail(err, KM_ENOTFOUND, "'%s compose' is not available and "
                   "docker-compose is not on PATH: install the Docker Compose "
                   "plugin (or Debian's docker-compose)", docker);
}

int ops_compose_check_nvidia(const struct ops_compose *c, struct km_err *err)
{
    const char *docker = c->v2 ? c->docker : "docker";
    const char *argv[] = {docker, "info", "--format", "{{json .Runtimes}}",
                          NULL};
    struct km_buf b;
    int status = -1;
    km_buf_init(&b, PROBE_OUT_MAX);
    int rc = ops__run_capture(argv, &b, 1, PROBE_TIMEOUT_MS, &status, err);
    if (rc != KM_OK)
        goto out;
    if (status != 0) {
        const char *t = km_buf_str(&b);
        rc = km_fail(err, KM_EIO, "cannot talk to the Docker daemon (%s info "
                     "exited %d): %.200s", docker, status, t);
        goto out;
    }
    if (!strstr(km_buf_str(&b), "\"nvidia\""))
        rc = km_fail(err, KM_ENOTFOUND, "the NVIDIA container runtime is not "
                     "registered with Docker: install nvidia-container-toolkit "
                     "and run 'nvidia-ctk runtime configure --runtime=docker', "
                     "then restart Docker");
out:
    km_buf_free(&b);
    return rc;
}

static int build_argv(const struct ops_compose *c, const char *profile,
                      const char *const *args, const char **argv,
                      struct km_err *err)
{
    int n = 0;
    argv[n++] = c->docker;
    if (c->v2)
        argv[n++] = "compose";
    argv[n++] = "--project-name";
    argv[n++] = "kanoa-mlops";
    argv[n++] = "--env-file";
    argv[n++] = c->env_file;
    argv[n++] = "-f";
    argv[n++] = c->file;
    if (profile) {
        argv[n++] = "--profile";
        argv[n++] = profile;
    }
    for (size_t i = 0; args[i]; i++) {
        if (n >= MAX_ARGS - 1)
            return km_fail(err, KM_ERANGE, "more than %d compose arguments",
                           MAX_ARGS);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    return KM_OK;
}

int ops_compose_run(const struct ops_compose *c, const char *profile,
                    const char *const *args, int *status, struct km_err *err)
{
    const char *argv[MAX_ARGS];
    *status = -1;
    int rc = build_argv(c, profile, args, argv, err);
    if (rc != KM_OK)
        return rc;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return km_fail(err, KM_EIO, "fork: %s", strerror(errno));
    if (pid == 0) {
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "kanoa-mlops: cannot run %s: %s\n", argv[0],
                strerror(errno));
        _exit(127);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(ws))
        *status = WEXITSTATUS(ws);
    else
        *status = 128 + (WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
    return KM_OK;
}

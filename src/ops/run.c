/* run.c - run a helper program with a bounded capture and a timeout
 * (nvidia-smi, docker info); see ops_int.h. */
#include "ops/ops_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Exit code the child uses when exec fails (as the shell does). */
#define EXEC_FAILED 127

int ops__have_program(const char *prog)
{
    if (strchr(prog, '/'))
        return access(prog, X_OK) == 0;
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    char dir[1024];
    while (*path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && n < sizeof dir - 1) {
            char full[2048];
            memcpy(dir, path, n);
            dir[n] = '\0';
            snprintf(full, sizeof full, "%s/%s", dir, prog);
            struct stat st;
            if (stat(full, &st) == 0 && S_ISREG(st.st_mode) &&
                access(full, X_OK) == 0)
                return 1;
        }
        path += n;
        if (*path == ':')
            path++;
    }
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void child_exec(const char *const *argv, int wfd, int merge_stderr)
{
    int nul = open("/dev/null", O_RDWR);
    if (nul >= 0) {
        dup2(nul, 0);
        if (!merge_stderr)
            dup2(nul, 2);
    }
    dup2(wfd, 1);
    if (merge_stderr)
        dup2(wfd, 2);
    execvp(argv[0], (char *const *)argv);
    _exit(EXEC_FAILED);
}

/* Read from fd into out until EOF or the deadline; 1 when timed out. */
static int drain_pipe(int fd, struct km_buf *out, double deadline)
{
    for (;;) {
        double left = deadline - now_ms();
        if (left <= 0)
            return 1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)left + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        /* past the buffer's maximum, keep reading but drop the bytes */
        km_buf_append(out, chunk, (size_t)n);
    }
}

int ops__run_capture(const char *const *argv, struct km_buf *out,
                     int merge_stderr, long timeout_ms, int *status,
                     struct km_err *err)
{
    int fds[2];
    *status = -1;
    if (!ops__have_program(argv[0]))
        return km_fail(err, KM_ENOTFOUND, "%s: not found on PATH", argv[0]);
    if (pipe2(fds, O_CLOEXEC) != 0)
        return km_fail(err, KM_EIO, "pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return km_fail(err, KM_EIO, "fork: %s", strerror(errno));
    }
    if (pid == 0)
        child_exec(argv, fds[1], merge_stderr);
    close(fds[1]);
    int timed_out = drain_pipe(fds[0], out, now_ms() + (double)timeout_ms);
    close(fds[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(ws))
        *status = WEXITSTATUS(ws);
    else if (WIFSIGNALED(ws))
        *status = 128 + WTERMSIG(ws);
    if (timed_out)
        return km_fail(err, KM_ETIMEOUT, "%s: no answer within %ld ms",
                       argv[0], timeout_ms);
    if (*status == EXEC_FAILED)
        return km_fail(err, KM_ENOTFOUND, "%s: cannot be executed", argv[0]);
    return KM_OK;
}

/* gateway_fake.c - see gateway_fake.h. */
#include "gateway_fake.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *script_path(void)
{
    static const char *const cands[] = {
        "tests/gateway/fault_upstream.py", "../tests/gateway/fault_upstream.py",
        "gateway/fault_upstream.py",
    };
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++)
        if (access(cands[i], R_OK) == 0)
            return cands[i];
    return cands[0];
}

int gw_fake_start(struct gw_fake *f, const char *const *args)
{
    int fd[2];
    memset(f, 0, sizeof *f);
    if (pipe(fd) != 0)
        return -1;
    const char *argv[40] = {"/usr/bin/python3", script_path(), "--lifetime", "120"};
    size_t n = 4;
    for (; args && *args && n < 38; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    f->pid = fork();
    if (f->pid == 0) {
        dup2(fd[1], 1);
        int dn = open(getenv("GW_FAKE_ERR") ? getenv("GW_FAKE_ERR") : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (dn >= 0)
            dup2(dn, 2);
        close(fd[0]);
        close(fd[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fd[1]);
    FILE *in = fdopen(fd[0], "r");
    char line[64] = "";
    if (!in || !fgets(line, sizeof line, in) || sscanf(line, "PORT %d", &f->port) != 1) {
        if (in)
            fclose(in);
        gw_fake_stop(f);
        return -1;
    }
    fclose(in);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", f->port);
    return 0;
}

void gw_fake_stop(struct gw_fake *f)
{
    if (f->pid > 0) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
    }
    f->pid = 0;
}

struct sinkbuf {
    char *p;
    size_t len, cap;
};

static size_t collect(char *b, size_t s, size_t n, void *ud)
{
    struct sinkbuf *o = ud;
    size_t len = s * n;
    size_t room = o->cap ? o->cap - 1 - o->len : 0;
    size_t k = len < room ? len : room;
    memcpy(o->p + o->len, b, k);
    o->len += k;
    o->p[o->len] = '\0';
    return len;
}

int gw_http(const char *method, const char *url, const char *body, char *out,
            size_t cap)
{
    CURL *c = curl_easy_init();
    if (!c)
        return 0;
    struct sinkbuf sb = {out, 0, cap};
    if (cap)
        out[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sb);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    long code = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    return (int)code;
}

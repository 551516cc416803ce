/* resolve.c - hub_resolve_model: turn a `serve --model` spec into a file.
 *
 *   /path/to/model.gguf           an existing path, or one starting with
 *                                 '/' or '.', or ending in .gguf with no
 *                                 ':': returned unchanged
 *   org/repo                      the one .gguf of the cached snapshot
 *   org/repo:FILE                 that file of the snapshot
 *   org/repo:GLOB                 the one file matching GLOB (fnmatch)
 *   org/repo:QUANT                the one .gguf named <...>QUANT<.|-> (Q4_K_M)
 *   ...@REV                       a branch/tag (refs/REV) or a commit
 *
 * Only the cache is read (no network): pull first. Split GGUF files resolve
 * to their first shard (-00001-of-N). mmproj / imatrix files are never
 * chosen implicitly. The returned path is the snapshot entry (a symlink into
 * blobs/), km_malloc'ed.
 */
#include "hub/hub_int.h"

#include "base/mem.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

struct spec {
    char repo[256];
    char file[1024];   /* "" when not given */
    char rev[256];
};

static int parse_spec(const char *s, struct spec *sp)
{
    memset(sp, 0, sizeof *sp);
    snprintf(sp->rev, sizeof sp->rev, "main");
    char buf[1600];
    if (snprintf(buf, sizeof buf, "%s", s) >= (int)sizeof buf)
        return -1;
    char *at = strrchr(buf, '@');
    char *colon = strchr(buf, ':');
    if (at && (!colon || at > colon)) {
        *at = '\0';
        snprintf(sp->rev, sizeof sp->rev, "%s", at + 1);
    }
    if (colon) {
        *colon = '\0';
        snprintf(sp->file, sizeof sp->file, "%s", colon + 1);
    }
    snprintf(sp->repo, sizeof sp->repo, "%s", buf);
    const char *slash = strchr(sp->repo, '/');
    return slash && slash != sp->repo && slash[1] && !strchr(slash + 1, '/') ? 0 : -1;
}

static int is_gguf(const char *p)
{
    size_t n = strlen(p);
    return n > 5 && strcasecmp(p + n - 5, ".gguf") == 0;
}

static int implicit_ok(const char *p)
{
    return is_gguf(p) && !strcasestr(p, "mmproj") && !strcasestr(p, "imatrix");
}

static int later_shard(const char *p)
{
    return strstr(p, "-of-") && !strstr(p, "-00001-of-");
}

static int matches(const char *want, const char *path)
{
    if (!want[0])
        return implicit_ok(path);
    if (strcmp(want, path) == 0 || hub__fnmatch(want, path))
        return 1;
    char q[16];
    hub__quant_of(path, q);
    return q[0] && strcasecmp(q, want) == 0 && implicit_ok(path);
}

/* Among the matches keep exact names first, then split shard 1 only. */
static long pick(const struct hub__tree *t, const char *want, size_t *nmatch)
{
    long first = -1, shard1 = -1;
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(want, t->files[i].path) == 0) {
            *nmatch = 1;
            return (long)i;
        }
        if (!matches(want, t->files[i].path))
            continue;
        if (later_shard(t->files[i].path))
            continue; /* later shards of a split file */
        if (strstr(t->files[i].path, "-00001-of-"))
            shard1 = (long)i;
        if (first < 0)
            first = (long)i;
        n++;
    }
    *nmatch = n;
    return shard1 >= 0 && n == 1 ? shard1 : first;
}

static int list_names(const struct hub__tree *t, const char *want, char *out,
                      size_t cap)
{
    size_t w = 0;
    out[0] = '\0';
    for (size_t i = 0; i < t->n && w + 4 < cap; i++)
        if (matches(want, t->files[i].path) && !later_shard(t->files[i].path))
            w += (size_t)snprintf(out + w, cap - w, "%s%s", w ? ", " : "",
                                  t->files[i].path);
    return 0;
}

static int choose(const struct spec *sp, const char *snap,
                  const struct hub__tree *t, char **out, struct km_err *err)
{
    size_t n = 0;
    long i = pick(t, sp->file, &n);
    char names[1024];
    if (n == 0 || i < 0)
        return km_fail(err, KM_ENOTFOUND, "%s@%s in the cache has no %s%s%s "
                       "(pull it first: kanoa-mlops pull %s%s%s)", sp->repo,
                       sp->rev, sp->file[0] ? "file matching '" : "GGUF file",
                       sp->file, sp->file[0] ? "'" : "", sp->repo,
                       sp->file[0] ? " " : "", sp->file);
    if (n > 1) {
        list_names(t, sp->file, names, sizeof names);
        return km_fail(err, KM_EINVAL, "%s has %zu %s (%s): name one with "
                       "%s:FILE or %s:QUANT", sp->repo, n,
                       sp->file[0] ? "matching files" : "GGUF files", names,
                       sp->repo, sp->repo);
    }
    *out = hub__path_join(snap, t->files[i].path);
    return *out ? KM_OK : km_fail(err, KM_ENOMEM, "out of memory");
}

int hub__resolve_in(const char *spec, const char *snap,
                    const struct hub__tree *t, char **path_out,
                    struct km_err *err)
{
    struct spec sp;
    *path_out = NULL;
    if (parse_spec(spec, &sp) != 0)
        return km_fail(err, KM_ENOTFOUND, "model '%s' is not "
                       "org/name[:FILE][@REV]", spec);
    return choose(&sp, snap, t, path_out, err);
}

int hub_resolve_model(const char *spec, char **path_out, struct km_err *err)
{
    struct stat st;
    size_t sl = strlen(spec);
    *path_out = NULL;
    /* A path (existing, or plainly a path: the loader names what is wrong). */
    int pathlike = spec[0] == '/' || spec[0] == '.' ||
                   (!strchr(spec, ':') && sl > 5 && !strcasecmp(spec + sl - 5, ".gguf"));
    if (stat(spec, &st) == 0 || pathlike) {
        *path_out = km_strdup(spec);
        return *path_out ? KM_OK : km_fail(err, KM_ENOMEM, "out of memory");
    }
    struct spec sp;
    if (parse_spec(spec, &sp) != 0)
        return km_fail(err, KM_ENOTFOUND, "model '%s' is neither a file nor a "
                       "cached repository (org/name[:FILE][@REV])", spec);
    struct hub_env env;
    struct hub__tree t = {0};
    char *folder = NULL, *dir = NULL, commit[41];
    int rc = hub_env_load(&env, err);
    if (rc)
        return rc;
    folder = hub_repo_folder(sp.repo);
    dir = folder ? hub__path_join(env.cache, folder) : NULL;
    if (!dir) {
        rc = km_fail(err, KM_ENOMEM, "out of memory");
        goto out;
    }
    if (hub__is_hex(sp.rev, 40))
        memcpy(commit, sp.rev, 41);
    else if (hub__ref_read(dir, sp.rev, commit, err) != KM_OK) {
        rc = km_fail(err, KM_ENOTFOUND, "%s@%s is not in the cache %s: run "
                     "kanoa-mlops pull %s", sp.repo, sp.rev, env.cache, sp.repo);
        goto out;
    }
    char snap[8192];
    snprintf(snap, sizeof snap, "%s/snapshots/%s", dir, commit);
    rc = hub__snapshot_list(snap, &t, err);
    if (rc == KM_OK)
        rc = choose(&sp, snap, &t, path_out, err);
out:
    hub__tree_free(&t);
    km_free(folder);
    km_free(dir);
    hub_env_free(&env);
    return rc;
}

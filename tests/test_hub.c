/* test_hub.c - unit tests of src/hub/: hashes (and the hashing thread that
 * follows a download), filters, path safety, env precedence, tree parsing,
 * cache layout helpers, quant names, hub_resolve_model on a fixture cache,
 * and models rm under the blob locks. */
#include "base/mem.h"
#include "hub/hub.h"
#include "hub/hub_int.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void mk_tmp(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kanoa-test-hub.XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmp(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

static void write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "open %s", path);
    fputs(data, f);
    fclose(f);
}

Test(hub_hash, git_blob_sha1_vector)
{
    char hex[130];
    cr_assert_eq(hub__hash_mem("Hello, World!", 13, HUB_HASH_GITSHA1, hex), KM_OK);
    cr_assert_str_eq(hex, "b45ef6fec89518d314f546fd6c3025367b721684");
}

Test(hub_hash, sha256_file_matches_memory)
{
    mk_tmp();
    char p[512], hex[130], hex2[130];
    snprintf(p, sizeof p, "%s/f", tmpdir);
    write_file(p, "abc");
    uint64_t n = 0;
    struct km_err e = {0};
    cr_assert_eq(hub__hash_file(p, HUB_HASH_SHA256, hex, &n, &e), KM_OK);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    hub__hash_mem("abc", 3, HUB_HASH_SHA256, hex2);
    cr_assert_str_eq(hex, hex2);
    cr_assert_eq(hub_verify_blob(p, hex, &n, &e), KM_OK);
    cr_assert_eq(hub_verify_blob(p, "a9993e364706816aba3e25717850c26c9cd0d89d", &n, &e),
                 KM_EINTEGRITY);
    cr_assert(strstr(e.msg, "git sha1"), "%s", e.msg);
    rm_tmp();
}

Test(hub_hash, kind_from_etag)
{
    enum hub__hash_kind k;
    cr_assert_eq(hub__hash_kind_of("b45ef6fec89518d314f546fd6c3025367b721684", &k), KM_OK);
    cr_assert_eq(k, HUB_HASH_GITSHA1);
    cr_assert_eq(hub__hash_kind_of("B45EF6FEC89518D314F546FD6C3025367B721684", &k), KM_EFORMAT);
    cr_assert_eq(hub__hash_kind_of("../../etc/passwd", &k), KM_EFORMAT);
}

Test(hub_filter, fnmatchcase_semantics)
{
    cr_assert(hub__fnmatch("*.gguf", "Q4_K_M/x-00001-of-00002.gguf"));
    cr_assert(hub__fnmatch("data/*.json", "data/sub/f.json"));
    cr_assert(hub__fnmatch("dir/", "dir/a/b"));
    cr_assert(hub__fnmatch("dir\\*.txt", "dir/x.txt"));
    cr_assert(hub__fnmatch("*.md", ".hidden.md"));
    cr_assert_not(hub__fnmatch("*.GGUF", "a.gguf"));
    cr_assert_not(hub__fnmatch("README", "README.md"));
    cr_assert(hub__fnmatch("[^a]x", "^x"));      /* Python: '^' is literal */
    cr_assert_not(hub__fnmatch("[^a]x", "bx"));
    cr_assert(hub__fnmatch("[!a]x", "bx"));
}

Test(hub_filter, allow_and_ignore_lists)
{
    const char *allow[] = {"*.json", "sub/*"};
    const char *ignore[] = {"config*"};
    cr_assert(hub__filter_match("a.json", allow, 2, ignore, 1));
    cr_assert_not(hub__filter_match("config.json", allow, 2, ignore, 1));
    cr_assert(hub__filter_match("sub/x/y.bin", allow, 2, ignore, 1));
    cr_assert_not(hub__filter_match("model.bin", allow, 2, NULL, 0));
    cr_assert(hub__filter_match("model.bin", NULL, (size_t)-1, NULL, 0));
    cr_assert_not(hub__filter_match("model.bin", NULL, 0, NULL, 0)); /* [] keeps nothing */
}

Test(hub_cache, unsafe_paths_refused)
{
    const char *bad[] = {"../x", "/etc/x", "a/../../x", "C:\\x", "\\\\host\\share",
                         "a//b", "./a", "a/.", "", "a/", "c:x", "a\nb"};
    const char *good[] = {"README.md", "a/b/c.gguf", "odd name/a #1%.txt", "..a", "a..b"};
    struct km_err e = {0};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_assert_eq(hub__path_safe(bad[i], &e), KM_EFORMAT, "accepted '%s'", bad[i]);
    cr_assert(strstr(e.msg, "refusing unsafe path"));
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        cr_assert_eq(hub__path_safe(good[i], &e), KM_OK, "refused '%s'", good[i]);
}

Test(hub_cache, repo_folder_name)
{
    char *f = hub_repo_folder("org/name");
    cr_assert_str_eq(f, "models--org--name");
    km_free(f);
    f = hub_repo_folder("gpt2");
    cr_assert_str_eq(f, "models--gpt2");
    km_free(f);
}

Test(hub_cache, refs_links_markers)
{
    mk_tmp();
    long live = km_mem_live();
    struct km_err e = {0};
    const char *c = "0123456789abcdef0123456789abcdef01234567";
    char p[512], t[512], back[41], rd[300];
    snprintf(rd, sizeof rd, "%s/models--o--r", tmpdir);
    cr_assert_eq(hub__ref_write(rd, "refs/pr/1", c, &e), KM_OK, "%s", e.msg);
    snprintf(p, sizeof p, "%s/refs/refs/pr/1", rd);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(st.st_size, 40); /* no newline */
    cr_assert_eq(hub__ref_read(rd, "refs/pr/1", back, &e), KM_OK);
    cr_assert_str_eq(back, c);
    cr_assert_eq(hub__link_snapshot(rd, c, "a/b/x.gguf", "ff00", &e), KM_OK);
    snprintf(p, sizeof p, "%s/snapshots/%s/a/b/x.gguf", rd, c);
    ssize_t n = readlink(p, t, sizeof t - 1);
    cr_assert_gt(n, 0);
    t[n] = '\0';
    cr_assert_str_eq(t, "../../../../blobs/ff00");
    cr_assert_eq(hub__link_snapshot(rd, c, "README.md", "aa", &e), KM_OK);
    snprintf(p, sizeof p, "%s/snapshots/%s/README.md", rd, c);
    n = readlink(p, t, sizeof t - 1);
    t[n] = '\0';
    cr_assert_str_eq(t, "../../blobs/aa");
    cr_assert_eq(hub__mark_no_exist(rd, c, "d/missing.json", &e), KM_OK);
    snprintf(p, sizeof p, "%s/.no_exist/%s/d/missing.json", rd, c);
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(st.st_size, 0);
    snprintf(p, sizeof p, "%s/.locks/models--o--r", tmpdir); /* temp names */
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(km_mem_live(), live);
    rm_tmp();
}

Test(hub_api, tree_page_parsed_and_validated)
{
    const char *json =
        "[{\"type\":\"directory\",\"oid\":\"0000000000000000000000000000000000000000\","
        "\"size\":0,\"path\":\"sub\"},"
        "{\"type\":\"file\",\"oid\":\"b45ef6fec89518d314f546fd6c3025367b721684\","
        "\"size\":13,\"path\":\"sub/a.txt\"},"
        "{\"type\":\"file\",\"oid\":\"1111111111111111111111111111111111111111\","
        "\"size\":5,\"path\":\"m.gguf\",\"lfs\":{\"oid\":"
        "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\","
        "\"size\":5,\"pointerSize\":134}}]";
    struct hub__tree t = {0};
    struct km_err e = {0};
    cr_assert_eq(hub__tree_parse(json, strlen(json), &t, &e), KM_OK, "%s", e.msg);
    cr_assert_eq(t.n, 2);
    cr_assert_str_eq(t.files[0].path, "sub/a.txt");
    cr_assert_str_eq(t.files[0].etag, "b45ef6fec89518d314f546fd6c3025367b721684");
    cr_assert_eq(t.files[1].lfs, 1);
    cr_assert_str_eq(t.files[1].etag,
                     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    hub__tree_free(&t);
    const char *evil = "[{\"type\":\"file\",\"oid\":\"b45ef6fec89518d314f546fd6c3025367b721684\","
                       "\"size\":1,\"path\":\"../../x\"}]";
    cr_assert_eq(hub__tree_parse(evil, strlen(evil), &t, &e), KM_EFORMAT);
    cr_assert(strstr(e.msg, "'../../x'"), "%s", e.msg);
    hub__tree_free(&t);
    const char *badoid = "[{\"type\":\"file\",\"oid\":\"../x\",\"size\":1,\"path\":\"a\"}]";
    cr_assert_eq(hub__tree_parse(badoid, strlen(badoid), &t, &e), KM_EFORMAT);
    hub__tree_free(&t);
    cr_assert_eq(hub__tree_parse("{}", 2, &t, &e), KM_EFORMAT);
}

/* hub_env_load in the current environment gives cache, token (NULL: none)
 * and offline. */
static void expect_env(const char *cache, const char *token, int offline)
{
    struct hub_env env;
    struct km_err e = {0};
    cr_assert_eq(hub_env_load(&env, &e), KM_OK, "%s", e.msg);
    cr_assert_str_eq(env.cache, cache);
    if (token)
        cr_assert_str_eq(env.token, token);
    else
        cr_assert_null(env.token);
    cr_assert_eq(env.offline, offline);
    cr_assert_str_eq(env.endpoint, "http://127.0.0.1:9"); /* '/' stripped */
    hub_env_free(&env);
}

Test(hub_env, cache_precedence_and_token)
{
    mk_tmp();
    char home[512], tok[600], want[600];
    snprintf(home, sizeof home, "%s/hfhome", tmpdir);
    mkdir(home, 0700);
    snprintf(tok, sizeof tok, "%s/token", home);
    write_file(tok, "  hf_file_token \r\n");
    setenv("HF_HOME", home, 1);
    unsetenv("HF_TOKEN");
    unsetenv("HUGGING_FACE_HUB_TOKEN");
    unsetenv("HF_TOKEN_PATH");
    unsetenv("HF_HUB_CACHE");
    unsetenv("HUGGINGFACE_HUB_CACHE");
    setenv("HF_ENDPOINT", "http://127.0.0.1:9/", 1);
    setenv("HF_HUB_OFFLINE", "yes", 1);
    snprintf(want, sizeof want, "%s/hub", home);
    expect_env(want, "hf_file_token", 1);
    setenv("HUGGINGFACE_HUB_CACHE", "/legacy", 1);
    setenv("HF_TOKEN", "hf_env\n", 1);
    setenv("HF_HUB_OFFLINE", "0", 1);
    expect_env("/legacy", "hf_env", 0);
    setenv("HF_HUB_CACHE", "/new", 1);
    setenv("HF_TOKEN", "", 1);
    unlink(tok);
    expect_env("/new", NULL, 0);
    unsetenv("HF_HOME");
    unsetenv("HF_HUB_CACHE");
    unsetenv("HUGGINGFACE_HUB_CACHE");
    setenv("XDG_CACHE_HOME", "/xdg", 1);
    expect_env("/xdg/huggingface/hub", NULL, 0);
    rm_tmp();
}

Test(hub_scan, quant_names)
{
    char q[16];
    hub__quant_of("tiny-Q4_K_M.gguf", q);
    cr_assert_str_eq(q, "Q4_K_M");
    hub__quant_of("Q8_0/Llama-3-Q8_0-00001-of-00002.gguf", q);
    cr_assert_str_eq(q, "Q8_0");
    hub__quant_of("model.IQ3_XXS.gguf", q);
    cr_assert_str_eq(q, "IQ3_XXS");
    hub__quant_of("gemma-bf16.gguf", q);
    cr_assert_str_eq(q, "BF16");
    hub__quant_of("tiny-Q4_K_M.safetensors", q);
    cr_assert_str_eq(q, "");
    hub__quant_of("XQ4_K_M.gguf", q);
    cr_assert_str_eq(q, "");
}

/* One cached repo in <tmp>/cache: commit c, files[i] linked to blob
 * "<tag><i>" holding the file's name. */
static void fixture_repo(const char *folder, const char *c, const char *tag,
                         const char *const *files, size_t n)
{
    char dir[512], p[1024];
    struct km_err e = {0};
    snprintf(dir, sizeof dir, "%s/cache/%s", tmpdir, folder);
    cr_assert_eq(hub__ref_write(dir, "main", c, &e), KM_OK, "%s", e.msg);
    snprintf(p, sizeof p, "%s/blobs", dir);
    cr_assert_eq(hub__mkdirs(p, &e), KM_OK);
    for (size_t i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/blobs/%s%zu", dir, tag, i);
        write_file(p, files[i]);
        snprintf(p, sizeof p, "%s%zu", tag, i);
        cr_assert_eq(hub__link_snapshot(dir, c, files[i], p, &e), KM_OK);
    }
}

static const char fix_commit[] = "0123456789abcdef0123456789abcdef01234567";

/* Cache fixture: org/multi with two quants and a split, org/one with one. */
static void fixture_cache(void)
{
    const char *multi[] = {"m-Q4_K_M.gguf", "m-Q8_0.gguf", "mmproj-F16.gguf",
                           "big/m-Q2_K-00001-of-00002.gguf",
                           "big/m-Q2_K-00002-of-00002.gguf", "README.md"};
    const char *one[] = {"one-Q4_0.gguf"};
    char p[512];
    fixture_repo("models--org--multi", fix_commit, "b", multi, 6);
    fixture_repo("models--org--one", fix_commit, "x", one, 1);
    snprintf(p, sizeof p, "%s/cache", tmpdir);
    setenv("HF_HUB_CACHE", p, 1);
}

static void expect_resolve(const char *spec, const char *suffix)
{
    char *path = NULL;
    struct km_err e = {0};
    cr_assert_eq(hub_resolve_model(spec, &path, &e), KM_OK, "%s: %s", spec, e.msg);
    size_t n = strlen(path), m = strlen(suffix);
    cr_assert(n >= m && strcmp(path + n - m, suffix) == 0, "%s -> %s", spec, path);
    km_free(path);
}

Test(hub_resolve, specs_to_snapshot_files)
{
    mk_tmp();
    fixture_cache();
    const char *snap = "/models--org--multi/snapshots/0123456789abcdef0123456789abcdef01234567/";
    char want[512];
    snprintf(want, sizeof want, "%sm-Q8_0.gguf", snap);
    expect_resolve("org/multi:Q8_0", want);
    expect_resolve("org/multi:q8_0", want);
    expect_resolve("org/multi:m-Q8_0.gguf@main", want);
    snprintf(want, sizeof want, "%sm-Q4_K_M.gguf", snap);
    expect_resolve("org/multi:*Q4_K*", want);
    expect_resolve("org/multi:m-Q4_K_M.gguf@0123456789abcdef0123456789abcdef01234567", want);
    snprintf(want, sizeof want, "%sbig/m-Q2_K-00001-of-00002.gguf", snap);
    expect_resolve("org/multi:Q2_K", want);
    expect_resolve("org/one", "/snapshots/0123456789abcdef0123456789abcdef01234567/one-Q4_0.gguf");
    char local[600];
    snprintf(local, sizeof local, "%s/cache", tmpdir);
    expect_resolve(local, local);
    rm_tmp();
}

Test(hub_resolve, ambiguous_and_missing)
{
    mk_tmp();
    fixture_cache();
    long live = km_mem_live();
    char *path = NULL;
    struct km_err e = {0};
    cr_assert_eq(hub_resolve_model("org/multi", &path, &e), KM_EINVAL);
    cr_assert_str_eq(e.msg, "org/multi has 3 GGUF files (big/m-Q2_K-00001-of-00002.gguf, "
                     "m-Q4_K_M.gguf, m-Q8_0.gguf): name one with org/multi:FILE "
                     "or org/multi:QUANT");
    cr_assert_eq(hub_resolve_model("org/multi:Q6_K", &path, &e), KM_ENOTFOUND);
    cr_assert_str_eq(e.msg, "org/multi@main in the cache has no file matching 'Q6_K' "
                     "(pull it first: kanoa-mlops pull org/multi Q6_K)");
    cr_assert_eq(hub_resolve_model("org/absent:x.gguf", &path, &e), KM_ENOTFOUND);
    cr_assert(strstr(e.msg, "org/absent@main is not in the cache"), "%s", e.msg);
    cr_assert_eq(hub_resolve_model("nothing-here", &path, &e), KM_ENOTFOUND);
    cr_assert_str_eq(e.msg, "model 'nothing-here' is neither a file nor a cached "
                     "repository (org/name[:FILE][@REV])");
    cr_assert_null(path);
    cr_assert_eq(hub_resolve_model("no-such-file.gguf", &path, &e), KM_OK);
    cr_assert_str_eq(path, "no-such-file.gguf"); /* the loader reports it */
    km_free(path);
    cr_assert_eq(km_mem_live(), live);
    rm_tmp();
}

Test(hub_scan, scan_reads_fixture)
{
    mk_tmp();
    fixture_cache();
    char p[512];
    snprintf(p, sizeof p, "%s/cache", tmpdir);
    struct hub_scan s;
    struct km_err e = {0};
    cr_assert_eq(hub_cache_scan(p, &s, &e), KM_OK);
    cr_assert_eq(s.nrepos, 2);
    cr_assert_str_eq(s.repos[0].repo, "org/multi");
    cr_assert_eq(s.repos[0].nrevs, 1);
    cr_assert_eq(s.repos[0].revs[0].nfiles, 6);
    cr_assert_eq(s.repos[0].revs[0].complete, 1);
    cr_assert_str_eq(s.repos[0].revs[0].refs[0], "main");
    cr_assert_str_eq(s.repos[0].revs[0].files[0].path, "README.md");
    cr_assert_str_eq(s.repos[0].revs[0].files[2].quant, "Q2_K");
    hub_scan_free(&s);
    uint64_t freed = 0;
    cr_assert_eq(hub_cache_rm(p, "org/one", NULL, &freed, &e), KM_OK);
    cr_assert_eq(freed, 13); /* "one-Q4_0.gguf" */
    cr_assert_eq(hub_cache_rm(p, "org/one", NULL, &freed, &e), KM_ENOTFOUND);
    rm_tmp();
}

/* flock a lock file of the cache as another pull would; fd to close. */
static int hold_lock(const char *folder, const char *name)
{
    char p[1024];
    struct km_err e = {0};
    snprintf(p, sizeof p, "%s/cache/.locks/%s", tmpdir, folder);
    cr_assert_eq(hub__mkdirs(p, &e), KM_OK);
    snprintf(p, sizeof p, "%s/cache/.locks/%s/%s", tmpdir, folder, name);
    int fd = open(p, O_RDWR | O_CREAT, 0664);
    cr_assert_geq(fd, 0);
    cr_assert_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
    return fd;
}

static int exists(const char *rel)
{
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/cache/%s", tmpdir, rel);
    return lstat(p, &st) == 0;
}

Test(hub_rm, held_lock_fails_and_removes_nothing)
{
    mk_tmp();
    fixture_cache();
    long live = km_mem_live();
    char cache[512], want[1024];
    snprintf(cache, sizeof cache, "%s/cache", tmpdir);
    int fd = hold_lock("models--org--one", "partial-etag.lock");
    uint64_t freed = 7;
    struct km_err e = {0};
    cr_assert_eq(hub_cache_rm(cache, "org/one", NULL, &freed, &e), KM_EBUSY);
    snprintf(want, sizeof want, "org/one is being downloaded by another process "
             "(it holds the lock %s/.locks/models--org--one/partial-etag.lock); "
             "nothing was removed: try again when that pull finishes", cache);
    cr_assert_str_eq(e.msg, want);
    cr_assert_eq(freed, 0);
    cr_assert(exists("models--org--one/blobs/x0"));
    cr_assert(exists("models--org--one/refs/main"));
    close(fd);
    cr_assert_eq(hub_cache_rm(cache, "org/one", NULL, &freed, &e), KM_OK, "%s", e.msg);
    cr_assert_not(exists("models--org--one"));
    cr_assert_not(exists(".locks/models--org--one"));
    cr_assert_eq(km_mem_live(), live);
    rm_tmp();
}

Test(hub_rm, revision_takes_only_its_blob_locks)
{
    mk_tmp();
    fixture_cache();
    /* a second revision of org/one shares nothing with the first */
    const char *c2 = "fedcba9876543210fedcba9876543210fedcba98";
    const char *two[] = {"two-Q8_0.gguf"};
    fixture_repo("models--org--one", c2, "y", two, 1);
    char cache[512];
    snprintf(cache, sizeof cache, "%s/cache", tmpdir);
    int other = hold_lock("models--org--one", "x0.lock"); /* first rev's blob */
    int mine = hold_lock("models--org--one", "y0.lock");
    uint64_t freed = 0;
    struct km_err e = {0};
    cr_assert_eq(hub_cache_rm(cache, "org/one", c2, &freed, &e), KM_EBUSY);
    cr_assert(strstr(e.msg, "/.locks/models--org--one/y0.lock); nothing was removed"),
              "%s", e.msg);
    cr_assert(exists("models--org--one/blobs/y0"));
    close(mine);
    cr_assert_eq(hub_cache_rm(cache, "org/one", c2, &freed, &e), KM_OK, "%s", e.msg);
    cr_assert_eq(freed, 13); /* "two-Q8_0.gguf" */
    cr_assert_not(exists("models--org--one/blobs/y0"));
    cr_assert_not(exists("models--org--one/snapshots/fedcba9876543210fedcba9876543210fedcba98"));
    cr_assert(exists("models--org--one/blobs/x0"));
    close(other);
    rm_tmp();
}

/* Hash n bytes of `data` written into a file chunk by chunk, out of order,
 * each chunk in two steps, the hashing thread running meanwhile. */
static void feed_file(const unsigned char *data, size_t n, size_t chunk,
                      char *hex, int *rc)
{
    char p[512];
    snprintf(p, sizeof p, "%s/feed", tmpdir);
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)n), 0);
    struct hub__hashfeed *f = NULL;
    cr_assert_eq(hub__hashfeed_new(HUB_HASH_SHA256, fd, n, chunk, 1, &f), KM_OK);
    cr_assert_eq(hub__hashfeed_start(f), KM_OK);
    size_t nch = (n + chunk - 1) / chunk;
    for (size_t k = 0; k < nch; k++) {
        size_t i = (k * 5 + 3) % nch; /* nch = 6: 3, 2, 1, 0, 5, 4 */
        size_t a = i * chunk, len = a + chunk > n ? n - a : chunk;
        cr_assert_eq(pwrite(fd, data + a, len / 2, (off_t)a), (ssize_t)(len / 2));
        hub__hashfeed_landed(f, i, len / 2);
        cr_assert_eq(pwrite(fd, data + a + len / 2, len - len / 2, (off_t)(a + len / 2)),
                     (ssize_t)(len - len / 2));
        hub__hashfeed_landed(f, i, len);
    }
    *rc = hub__hashfeed_end(f, hex);
    hub__hashfeed_free(f);
    close(fd);
}

Test(hub_hash, hashfeed_follows_the_written_prefix)
{
    mk_tmp();
    long live = km_mem_live();
    size_t n = (5u << 20) + 12345, chunk = 1u << 20;
    unsigned char *data = km_malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 2654435761u >> 13);
    char hex[130], want[130];
    int rc = -1;
    feed_file(data, n, chunk, hex, &rc);
    cr_assert_eq(rc, KM_OK);
    hub__hash_mem(data, n, HUB_HASH_SHA256, want);
    cr_assert_str_eq(hex, want);
    km_free(data);
    cr_assert_eq(km_mem_live(), live);
    rm_tmp();
}

Test(hub_hash, hashfeed_missing_bytes_and_cancel)
{
    mk_tmp();
    long live = km_mem_live();
    char p[512], hex[130];
    snprintf(p, sizeof p, "%s/f", tmpdir);
    write_file(p, "abcdefgh");
    int fd = open(p, O_RDONLY);
    struct hub__hashfeed *f = NULL;
    cr_assert_eq(hub__hashfeed_new(HUB_HASH_GITSHA1, fd, 8, 4, 0, &f), KM_OK);
    hub__hashfeed_landed(f, 1, 4); /* chunk 0 never lands */
    cr_assert_eq(hub__hashfeed_start(f), KM_OK);
    cr_assert_eq(hub__hashfeed_end(f, hex), KM_ECANCELED);
    hub__hashfeed_free(f);
    cr_assert_eq(hub__hashfeed_new(HUB_HASH_GITSHA1, fd, 8, 4, 0, &f), KM_OK);
    cr_assert_eq(hub__hashfeed_start(f), KM_OK);
    hub__hashfeed_free(f); /* cancels a waiting thread */
    cr_assert_eq(hub__hashfeed_new(HUB_HASH_GITSHA1, fd, 8, 4, 0, &f), KM_OK);
    hub__hashfeed_landed(f, 0, 4);
    hub__hashfeed_landed(f, 1, 4);
    cr_assert_eq(hub__hashfeed_start(f), KM_OK);
    cr_assert_eq(hub__hashfeed_end(f, hex), KM_OK);
    uint64_t bytes = 0;
    double secs = -1;
    uint64_t mem = 1;
    hub__hashfeed_stats(f, &bytes, &mem, &secs);
    cr_assert_eq(mem, 0);
    cr_assert_eq(bytes, 8);
    cr_assert_geq(secs, 0);
    hub__hashfeed_free(f);
    char want[130];
    hub__hash_mem("abcdefgh", 8, HUB_HASH_GITSHA1, want);
    cr_assert_str_eq(hex, want);
    close(fd);
    cr_assert_eq(km_mem_live(), live);
    rm_tmp();
}

/* A lent buffer is hashed instead of the file's bytes where it covers the
 * hashed front; a reclaimed one is not (the file is read back). The file
 * holds other bytes than the loans here so the source shows in the digest. */
Test(hub_hash, hashfeed_hashes_loans_from_memory)
{
    mk_tmp();
    long live = km_mem_live();
    char p[512], hex[130], want[130];
    snprintf(p, sizeof p, "%s/f", tmpdir);
    write_file(p, "abcdefgh");
    int fd = open(p, O_RDONLY);
    static const char mid[] = "CDEF", end[] = "XY";
    struct hub__hashfeed *f = NULL;
    uint64_t bytes = 0, mem = 0;
    double secs = 0;
    cr_assert_eq(hub__hashfeed_new(HUB_HASH_SHA256, fd, 8, 4, 0, &f), KM_OK);
    hub__hashfeed_landed(f, 0, 4);
    hub__hashfeed_landed(f, 1, 4);
    hub__hashfeed_lend(f, 2, mid, 4);     /* covers [2, 6) */
    hub__hashfeed_lend(f, 6, end, 2);
    hub__hashfeed_reclaim(f, end);        /* taken back: read from the file */
    cr_assert_eq(hub__hashfeed_start(f), KM_OK);
    cr_assert_eq(hub__hashfeed_end(f, hex), KM_OK);
    hub__hashfeed_stats(f, &bytes, &mem, &secs);
    hub__hashfeed_reclaim(f, mid);        /* after end: nothing to wait for */
    hub__hashfeed_free(f);
    cr_assert_eq(bytes, 8);
    cr_assert_eq(mem, 4);
    hub__hash_mem("abCDEFgh", 8, HUB_HASH_SHA256, want);
    cr_assert_str_eq(hex, want);
    close(fd);
    cr_assert_eq(km_mem_live(), live);
    rm_tmp();
}

/* A writer thread with a ring of two buffers lends each one after writing
 * it and reclaims it before refilling it, while the hashing thread runs. */
struct ring_writer {
    struct hub__hashfeed *f;
    int fd;
    const unsigned char *data;
    size_t n, chunk;
};

static void *ring_write(void *arg)
{
    struct ring_writer *w = arg;
    unsigned char *ring = km_malloc(2 * 65536);
    void *failed = NULL;
    for (size_t off = 0, k = 0; ring && off < w->n && !failed; k++) {
        unsigned char *b = ring + (k % 2) * 65536;
        size_t len = w->n - off < 65536 ? w->n - off : 65536;
        size_t i = off / w->chunk;
        if (off + len > (i + 1) * w->chunk)
            len = (i + 1) * w->chunk - off; /* stay inside one chunk */
        hub__hashfeed_reclaim(w->f, b);
        memcpy(b, w->data + off, len);
        if (pwrite(w->fd, b, len, (off_t)off) != (ssize_t)len)
            failed = w; /* no cr_assert outside the test's thread */
        hub__hashfeed_landed(w->f, i, off + len - i * w->chunk);
        hub__hashfeed_lend(w->f, off, b, len);
        off += len;
    }
    if (!ring)
        return w;
    hub__hashfeed_reclaim(w->f, ring);
    hub__hashfeed_reclaim(w->f, ring + 65536);
    km_free(ring);
    return failed;
}

Test(hub_hash, hashfeed_loans_from_a_writer_ring)
{
    mk_tmp();
    long live = km_mem_live();
    size_t n = (3u << 20) + 777, chunk = 1u << 20;
    unsigned char *data = km_malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 2246822519u >> 11);
    char p[512], hex[130], want[130];
    snprintf(p, sizeof p, "%s/ring", tmpdir);
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, (off_t)n), 0);
    struct ring_writer w = {.fd = fd, .data = data, .n = n, .chunk = chunk};
    cr_assert_eq(hub__hashfeed_new(HUB_HASH_SHA256, fd, n, chunk, 0, &w.f), KM_OK);
    cr_assert_eq(hub__hashfeed_start(w.f), KM_OK);
    pthread_t t;
    void *wrc = &w;
    cr_assert_eq(pthread_create(&t, NULL, ring_write, &w), 0);
    pthread_join(t, &wrc);
    cr_assert_null(wrc);
    cr_assert_eq(hub__hashfeed_end(w.f, hex), KM_OK);
    uint64_t bytes = 0, mem = 0;
    double secs = 0;
    hub__hashfeed_stats(w.f, &bytes, &mem, &secs);
    hub__hashfeed_free(w.f);
    cr_assert_eq(bytes, n);
    cr_assert_leq(mem, n);
    hub__hash_mem(data, n, HUB_HASH_SHA256, want);
    cr_assert_str_eq(hex, want);
    km_free(data);
    close(fd);
    cr_assert_eq(km_mem_live(), live);
    rm_tmp();
}

/* wait_behind returns once at most `window` landed bytes wait for the
 * hash, never for a gap, and at once after a cancel (a failed download
 * frees its writers). */
Test(hub_hash, hashfeed_wait_behind_and_cancel)
{
    mk_tmp();
    long live = km_mem_live();
    char p[512], hex[130];
    snprintf(p, sizeof p, "%s/f", tmpdir);
    write_file(p, "abcdefgh");
    int fd = open(p, O_RDONLY);
    struct hub__hashfeed *f = NULL;
    cr_assert_eq(hub__hashfeed_new(HUB_HASH_SHA256, fd, 8, 4, 0, &f), KM_OK);
    cr_assert_eq(hub__hashfeed_start(f), KM_OK);
    hub__hashfeed_wait_behind(f, 0);      /* nothing landed: no wait */
    hub__hashfeed_landed(f, 1, 4);
    hub__hashfeed_wait_behind(f, 0);      /* a gap at 0: the hash is not behind */
    hub__hashfeed_landed(f, 0, 4);
    hub__hashfeed_wait_behind(f, 3);      /* returns once at most 3 wait */
    hub__hashfeed_wait_behind(f, 0);      /* ... and once all 8 are hashed */
    cr_assert_eq(hub__hashfeed_end(f, hex), KM_OK);
    uint64_t bytes = 0, mem = 0;
    double secs = 0;
    hub__hashfeed_stats(f, &bytes, &mem, &secs);
    cr_assert_eq(bytes, 8);
    hub__hashfeed_free(f);
    cr_assert_eq(hub__hashfeed_new(HUB_HASH_SHA256, fd, 8, 4, 0, &f), KM_OK);
    hub__hashfeed_landed(f, 0, 4);        /* never hashed: no thread */
    hub__hashfeed_cancel(f);
    hub__hashfeed_wait_behind(f, 0);      /* canceled: no wait */
    hub__hashfeed_free(f);

    close(fd);
    cr_assert_eq(km_mem_live(), live);
    rm_tmp();
}

/* Found by fuzz/fuzz_hub.c (fuzz/corpus/hub/ratelimit-t-overflow.txt):
 * t + 1 overflowed a long. */
Test(hub_http, ratelimit_header_wait_is_bounded)
{
    struct hub__resp r = {.retry_after = -1};
    static const char ok[] = "RateLimit: \"resolvers\";r=0;t=12\r\n";
    static const char huge[] = "RateLimit: \"resolvers\";r=0;t=9223372036854775807\r\n";
    static const char neg[] = "RateLimit: \"resolvers\";r=0;t=-5\r\n";
    static const char left[] = "RateLimit: \"resolvers\";r=3;t=12\r\n";
    hub__resp_header(&r, ok, sizeof ok - 1);
    cr_assert_eq(r.retry_after, 13);
    hub__resp_header(&r, huge, sizeof huge - 1);
    cr_assert_eq(r.retry_after, 3600);
    r.retry_after = -1;
    hub__resp_header(&r, neg, sizeof neg - 1);
    cr_assert_eq(r.retry_after, -1);
    hub__resp_header(&r, left, sizeof left - 1);
    cr_assert_eq(r.retry_after, -1);
    hub__resp_free(&r);
}

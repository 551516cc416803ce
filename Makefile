# kanoa-mlops - GNU Make build.
#
#   make              build/kanoa-mlops (release, -O2)
#   make test         sanitized build (ASan+UBSan) of the library, the binary
#                     and every tests/test_*.c, then tests/run.sh
#   make serve        build, then serve (MODEL=file.gguf or org/repo[:FILE])
#   make fuzz         libFuzzer harnesses in fuzz/ (clang; fuzz/run.sh runs them)
#   make install PREFIX=/usr/local
#
# Sources are found, not listed: every src/**/*.c is part of the library
# except src/cli/main.c; files named *_avx2.c get -mavx2 -mfma -mf16c and are
# only called after a run-time CPU check.

PREFIX   ?= /usr/local
CC       ?= cc
BUILD    := build
PKGS     := libmicrohttpd libcurl jansson libpq yaml-0.1 libcrypto
TESTPKGS := criterion

# Recursive (=), not simple (:=): on a fresh machine the libraries are only
# installed by the .deps-ok step, after this file was read, so the flags are
# asked of pkg-config when a recipe runs.
PKG_CFLAGS  = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS    = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
TEST_LIBS   = $(shell pkg-config --libs $(TESTPKGS) 2>/dev/null)

WARN     := -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation
BASEFLAGS = -std=gnu17 $(WARN) -Isrc -pthread -D_GNU_SOURCE $(PKG_CFLAGS)
CFLAGS   ?= -O2 -g
ASANFLAGS:= -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=undefined
LDLIBS    = $(PKG_LIBS) -lm -ldl -pthread
SIMDFLAGS:= -mavx2 -mfma -mf16c

SRCS     := $(shell find src -name '*.c' | sort)
LIBSRCS  := $(filter-out src/cli/main.c,$(SRCS))
TESTSRCS := $(wildcard tests/test_*.c)
TESTHELP := $(wildcard tests/helpers/*.c)

OBJS      := $(LIBSRCS:%.c=$(BUILD)/obj/%.o)
ASAN_OBJS := $(LIBSRCS:%.c=$(BUILD)/asan/obj/%.o)
TESTBINS  := $(TESTSRCS:tests/%.c=$(BUILD)/asan/tests/%)
HELPOBJS  := $(TESTHELP:%.c=$(BUILD)/asan/obj/%.o)

.PHONY: all serve test install clean fuzz deps
.SECONDARY:
all: $(BUILD)/kanoa-mlops

# A missing library installs itself (scripts/install-deps.sh is idempotent).
$(BUILD)/.deps-ok: scripts/install-deps.sh
	@mkdir -p $(BUILD)
	@pkg-config --exists $(PKGS) || scripts/install-deps.sh build
	@touch $@

$(BUILD)/.testdeps-ok: scripts/install-deps.sh
	@mkdir -p $(BUILD)
	@scripts/install-deps.sh test
	@touch $@

deps: $(BUILD)/.deps-ok

$(BUILD)/obj/%.o: %.c | $(BUILD)/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) $(if $(findstring _avx2,$<),$(SIMDFLAGS)) -MMD -MP -c $< -o $@

$(BUILD)/asan/obj/%.o: %.c | $(BUILD)/.deps-ok
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(ASANFLAGS) -DKM_UNITTEST $(if $(findstring _avx2,$<),$(SIMDFLAGS)) -MMD -MP -c $< -o $@

$(BUILD)/libkanoa.a: $(OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/asan/libkanoa.a: $(ASAN_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/kanoa-mlops: $(BUILD)/obj/src/cli/main.o $(BUILD)/libkanoa.a
	$(CC) $(CFLAGS) -pthread -o $@ $^ $(LDLIBS)

$(BUILD)/asan/kanoa-mlops: $(BUILD)/asan/obj/src/cli/main.o $(BUILD)/asan/libkanoa.a
	$(CC) $(ASANFLAGS) -pthread -o $@ $^ $(LDLIBS)

$(BUILD)/asan/tests/%: $(BUILD)/asan/obj/tests/%.o $(HELPOBJS) $(BUILD)/asan/libkanoa.a
	@mkdir -p $(dir $@)
	$(CC) $(ASANFLAGS) -pthread -o $@ $< $(HELPOBJS) $(BUILD)/asan/libkanoa.a $(LDLIBS) $(TEST_LIBS)

# The main job: build, then serve on 127.0.0.1:8000. MODEL= a GGUF file or a
# cached Hub repo (org/repo[:FILE]); SERVE_ARGS= any other serve flags.
serve: $(BUILD)/kanoa-mlops
	$(BUILD)/kanoa-mlops serve $(if $(MODEL),--model $(MODEL)) $(SERVE_ARGS)

# Test objects include test-only headers (Criterion): install those first.
$(TESTSRCS:%.c=$(BUILD)/asan/obj/%.o) $(HELPOBJS): | $(BUILD)/.testdeps-ok

test: $(BUILD)/.testdeps-ok $(BUILD)/kanoa-mlops $(BUILD)/asan/kanoa-mlops $(TESTBINS)
	@tests/run.sh $(BUILD) $(T)

# make fuzz: every fuzz/fuzz_*.c becomes $(BUILD)/fuzz/fuzz_* (clang,
# libFuzzer + ASan/UBSan) linked with the library rebuilt by clang with
# coverage; fuzz/run.sh runs them. The same harnesses are replayed over
# fuzz/corpus/ by tests/test_fuzz_corpus.c in make test (gcc, no clang).
FUZZCC    ?= clang
FUZZFLAGS = -std=gnu17 -Isrc -pthread -D_GNU_SOURCE -DKM_UNITTEST $(PKG_CFLAGS) -w -g -O1 \
             -fsanitize=fuzzer-no-link,address,undefined \
             -fno-sanitize-recover=undefined
FUZZ_OBJS := $(LIBSRCS:%.c=$(BUILD)/fuzz/obj/%.o)
FUZZBINS  := $(patsubst fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard fuzz/fuzz_*.c))

$(BUILD)/fuzz/obj/%.o: %.c | $(BUILD)/.deps-ok
	@mkdir -p $(dir $@)
	$(FUZZCC) $(FUZZFLAGS) $(if $(findstring _avx2,$<),$(SIMDFLAGS)) -MMD -MP -c $< -o $@

$(BUILD)/fuzz/libkanoa.a: $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/fuzz/%: fuzz/%.c fuzz/fuzz.h $(BUILD)/fuzz/libkanoa.a
	$(FUZZCC) $(FUZZFLAGS) -fsanitize=fuzzer -o $@ $< $(BUILD)/fuzz/libkanoa.a $(LDLIBS)

fuzz: $(FUZZBINS)

install: $(BUILD)/kanoa-mlops
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/kanoa-mlops $(DESTDIR)$(PREFIX)/bin/kanoa-mlops

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

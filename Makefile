# sluice: the only build. `make run` and `make test` install what is missing first.
PKGS    := libuv libcurl jansson yaml-0.1 libjwt sqlite3 libcrypto hiredis libpq
CC      ?= cc
OPT     ?= -O2
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
# pkg-config runs once, when a recipe first needs it: by then `apt-deps` has installed the -dev
# packages. Expanding it while make reads this file would see a bare machine without them.
PKG_CFLAGS = $(eval PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS)))$(PKG_CFLAGS)
PKG_LIBS   = $(eval PKG_LIBS := $(shell pkg-config --libs $(PKGS)))$(PKG_LIBS)
CFLAGS  = -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) -Isrc -I$(GEN) $(PKG_CFLAGS)
LDLIBS  = $(PKG_LIBS) -lhttp_parser -lwslay -lpthread -lm
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRC     := $(filter-out src/main.c,$(wildcard src/*/*.c))
# The chat page is compiled in: web/build.mjs fills web/dist (npm's marked and DOMPurify
# included), scripts/embed.sh turns it into C arrays that src/admin/web.c serves.
GEN     ?= build/gen
# Where web/build.mjs assembles the page before embedding. Overriding REL, GEN and WEB_DIST
# together gives a separate build tree (parallel builds of different work trees of the page).
WEB_DIST ?= web/dist
WEB_IN  := $(wildcard web/*.html web/*.css web/*.js web/*.svg) web/build.mjs \
           clients/js/src/sluice-client.js \
           web/package-lock.json scripts/embed.sh
UNIT    := $(wildcard tests/unit/test_*.c)

REL     ?= build/release
ASAN    ?= build/asan

.PHONY: all deps apt-deps run test unit integ asan asan-test bench bench-ops format lint layers clean check-format \
        fuzz fuzz-smoke fuzz-build

all: $(REL)/sluice

# After apt-deps, never beside it: two apt-get runs at once fail on apt's lock (make -j).
deps: apt-deps
	@scripts/deps.sh --npm
# Every compile waits for the Debian packages (order-only: it never makes a rebuild).
apt-deps:
	@scripts/deps.sh

# ---- builds: one object tree per flavour ----
$(REL)/%.o: %.c | apt-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@
$(ASAN)/%.o: %.c | apt-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O1 $(SAN) -MMD -MP -c $< -o $@

$(REL)/libsluice.a: $(SRC:%.c=$(REL)/%.o) $(REL)/gen/web_assets.o
	ar rcs $@ $^
$(ASAN)/libsluice.a: $(SRC:%.c=$(ASAN)/%.o) $(ASAN)/gen/web_assets.o
	ar rcs $@ $^

# ---- the embedded chat page ----
$(GEN)/web_assets.c $(GEN)/web_assets.h &: $(WEB_IN) | apt-deps
	@[ -f web/node_modules/.stamp ] && [ ! web/package-lock.json -nt web/node_modules/.stamp ] || \
	  (cd web && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.stamp)
	node web/build.mjs $(WEB_DIST)
	scripts/embed.sh $(WEB_DIST) $(GEN)/web_assets
$(REL)/gen/web_assets.o $(ASAN)/gen/web_assets.o: $(GEN)/web_assets.c | apt-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
$(REL)/src/admin/web.o $(ASAN)/src/admin/web.o: $(GEN)/web_assets.h

$(REL)/sluice: $(REL)/src/main.o $(REL)/libsluice.a
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@
$(ASAN)/sluice: $(ASAN)/src/main.o $(ASAN)/libsluice.a
	$(CC) $(CFLAGS) $(SAN) $^ $(LDLIBS) -o $@

$(REL)/tests/%: $(REL)/tests/unit/%.o $(REL)/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ $(LDLIBS) -lcmocka -o $@
$(ASAN)/tests/%: $(ASAN)/tests/unit/%.o $(ASAN)/libsluice.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) $^ $(LDLIBS) -lcmocka -o $@

UNIT_REL  := $(UNIT:tests/unit/%.c=$(REL)/tests/%)
UNIT_ASAN := $(UNIT:tests/unit/%.c=$(ASAN)/tests/%)

# ---- fuzzing: libFuzzer targets (clang), one per parser (tests/fuzz/README.md) ----
# Objects for the targets are built with libFuzzer's coverage, ASan and UBSan; each target
# links only the sources it exercises (plus core), so a stub in a target stands in for the
# layer it cuts off.
FUZZ    ?= build/fuzz
FUZZ_CC ?= clang
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_CORE := src/core/alloc.c src/core/buf.c src/core/err.c src/core/log.c src/core/fsm.c \
             src/core/closer.c
# What each target links besides core (tests/fuzz/README.md says what each one checks).
FUZZ_SRC_sse           := src/codec/sse.c
FUZZ_SRC_http_request  := src/http/request.c
FUZZ_SRC_ws            := src/codec/ws.c
FUZZ_SRC_json_scan     := src/codec/json_scan.c
FUZZ_SRC_openai_decode := src/upstream/openai_decode.c src/codec/openai_chunk.c src/codec/json_scan.c
FUZZ_SRC_anthropic     := src/upstream/anthropic_codec.c src/codec/sse.c $(FUZZ_SRC_openai_decode)
FUZZ_SRC_config        := src/config/config.c src/config/routing.c src/config/sections.c \
                          src/config/dialects.c src/config/ytree.c src/core/glob.c \
                          src/core/sha256.c src/http/client_ip.c src/dialect/monoai_cfg.c \
                          src/dialect/rag_cfg.c
FUZZ_SRC_jwt           := src/policy/jwt.c
FUZZ_SRC_glob          := src/core/glob.c src/store/keys.c src/core/sha256.c
FUZZ_SRC_h1_url        := src/upstream/h1_url.c
FUZZ_SRC_client_ip     := src/http/client_ip.c
FUZZ_SRC_h1_response   := src/upstream/h1.c src/upstream/h1_url.c src/upstream/headers.c
FUZZ_SRC_dialects      := $(addprefix src/dialect/,openai.c chat.c monoai.c aichat.c seed.c) \
                          src/http/request.c src/http/router.c src/policy/auth.c \
                          src/policy/jwt.c src/store/keys.c src/store/keyset.c src/core/id.c \
                          src/codec/canon.c $(FUZZ_SRC_openai_decode) $(FUZZ_SRC_config)
# e.g. FUZZ_CFLAGS=-DFUZZ_STRICT: no stepping around the known bugs reported in the targets.
FUZZ_CFLAGS ?=

$(FUZZ)/%.o: %.c | apt-deps
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS) -O1 $(FUZZ_SAN) -fsanitize=fuzzer-no-link $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

define fuzz_link
$(FUZZ)/fuzz_$(1): $(FUZZ)/tests/fuzz/fuzz_$(1).o $(patsubst %.c,$(FUZZ)/%.o,$(sort $(FUZZ_CORE) $(FUZZ_SRC_$(1))))
	$$(FUZZ_CC) $$(CFLAGS) $$(FUZZ_SAN) -fsanitize=fuzzer $$^ $$(LDLIBS) -o $$@
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call fuzz_link,$(t))))
FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ)/fuzz_%)

-include $(shell find build -name '*.d' 2>/dev/null)

# ---- everyday targets ----
run: deps $(REL)/sluice
	$(REL)/sluice $(ARGS)

# Every test: unit + integration, on the release build and again under ASan + UBSan; then the
# fuzz targets, bounded (fuzz-smoke).
test: deps $(REL)/sluice $(ASAN)/sluice $(UNIT_REL) $(UNIT_ASAN) $(FUZZ_BINS)
	@FUZZ_DIR=$(FUZZ) tests/run-all.sh $(REL) $(ASAN); rc=$$?; \
	  $(MAKE) --no-print-directory layers && exit $$rc

# The tree's layering stays true (docs/ARCHITECTURE.md, "Layers"): includes point down, no two
# files call each other, no file over 800 lines; and every DESIGN § a comment cites exists.
layers: $(REL)/libsluice.a
	@node scripts/layers.mjs $(REL)
	@bash scripts/check-design-refs.sh

unit: $(UNIT_REL)
	@tests/run-all.sh --unit-only $(REL)

integ: deps $(REL)/sluice
	@tests/run-all.sh --integ-only $(REL)

asan asan-test: deps $(ASAN)/sluice $(UNIT_ASAN)
	@tests/run-all.sh $(ASAN)

# Every fuzz target for FUZZ_SECONDS each, growing $(FUZZ)/corpus; crashes land in
# $(FUZZ)/artifacts. fuzz-smoke is the bounded run `make test` includes.
fuzz-build: $(FUZZ_BINS)
fuzz: $(FUZZ_BINS)
	@tests/fuzz/run.sh --seconds $(FUZZ_SECONDS) $(FUZZ)
fuzz-smoke: $(FUZZ_BINS)
	@tests/fuzz/run.sh --smoke $(FUZZ)

bench: deps $(REL)/sluice
	@bench/run.sh

# What metrics, access log, auth + limits, Redis, fallback and the usage store cost (bench/RESULTS.md).
bench-ops: deps $(REL)/sluice
	@bench/ops.sh

FMT_FILES := $(shell find src tests/unit bench -name '*.[ch]' 2>/dev/null)
format:
	clang-format -i $(FMT_FILES)
check-format:
	clang-format --dry-run -Werror $(FMT_FILES)
# clang-tidy with the checks in .clang-tidy, plus a ban on the unsafe string functions.
lint: layers $(GEN)/web_assets.h
	@! grep -nE '\b(sprintf|strcpy|strtok|atoi|strcat|gets)\s*\(' $(FMT_FILES) || (echo "lint: banned function" && false)
	clang-tidy --quiet $(filter-out bench/%,$(filter %.c,$(FMT_FILES))) -- $(CFLAGS)

clean:
	rm -rf build web/dist

# Sluice - PostgreSQL connection pooler.
#
#   make            build build/sluice
#   make run        install deps, build, start a throwaway PostgreSQL and Sluice
#   make test       install deps, build, unit tests + integration tests
#   make unit       Check unit tests only
#   make itest      integration tests only (pytest, throwaway PostgreSQL;
#                   PYTEST_ARGS="-k NAME", IT_JOBS=2 parallel workers)
#   make asan-test  the whole suite under AddressSanitizer + UBSan
#   make soak       30-minute soak under load, restarts, reloads (SOAK_MINUTES=)
#   make fuzz       libFuzzer harnesses (clang), FUZZ_SECONDS=60 each
#   make fuzz-build build the harnesses into build-fuzz/ only
#   make install    PREFIX=/usr/local DESTDIR=
#   make clean

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
CC      ?= cc

PKGS      := libuv libpq openssl libconfig
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   = $(shell pkg-config --libs check 2>/dev/null)

# The integration suite runs on Debian's python3 (python3-pytest & co.).
PYTHON  ?= /usr/bin/python3
IT_JOBS ?= 2
PYTEST   = $(PYTHON) -m pytest test/integration -n $(IT_JOBS) $(PYTEST_ARGS)

OPT     ?= -O2 -g
WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes \
           -Wmissing-prototypes -Wvla -Wno-format-nonliteral
CFLAGS  ?=
CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -Iinclude $(PKG_CFLAGS) -MMD -MP
LDLIBS  += $(PKG_LIBS) -lm -lhttp_parser

SRCS      := $(wildcard src/*.c)
LIB_SRCS  := $(filter-out src/main.c,$(SRCS))
UNIT_SRCS := $(wildcard test/unit/*.c)
IT_TOOLS  := $(patsubst test/integration/%.c,$(BUILD)/%,$(wildcard test/integration/*.c))

OBJS      := $(SRCS:%.c=$(BUILD)/%.o)
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o)
UNIT_OBJS := $(UNIT_SRCS:%.c=$(BUILD)/%.o)

.PHONY: all run test unit itest asan-test bench soak install clean deps tools fuzz fuzz-build

all: $(BUILD)/sluice tools

tools: $(IT_TOOLS)

$(BUILD)/sluice: $(OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/unit_tests: $(UNIT_OBJS) $(LIB_OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)

$(BUILD)/test/unit/%.o: test/unit/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# Integration helper programs: one libpq client per file.
$(BUILD)/%: test/integration/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS) -lpthread

deps:
	@scripts/install-deps.sh

run: deps
	@$(MAKE) -s all
	@scripts/run.sh $(if $(CONFIG),"$(CONFIG)")

unit: $(BUILD)/unit_tests
	$(BUILD)/unit_tests

itest: all
	BUILD=$(BUILD) $(PYTEST)

test: deps
	@$(MAKE) -s all $(BUILD)/unit_tests
	$(BUILD)/unit_tests
	BUILD=$(BUILD) $(PYTEST)

asan-test: deps
	@$(MAKE) -s BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		all build-asan/unit_tests
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 build-asan/unit_tests
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 BUILD=build-asan $(PYTEST)

bench: deps
	@$(MAKE) -s all
	@scripts/bench.sh

soak: deps
	@$(MAKE) -s all
	@scripts/soak.sh

# ---------------------------------------------------------------------------
# Fuzzing
#
# One libFuzzer harness per parser of untrusted bytes: test/fuzz/fuzz_<name>.c,
# seeds in test/fuzz/corpus/<name>/, optional dictionary test/fuzz/<name>.dict
# (see test/fuzz/README.md).  The library objects (LIB_SRCS, as for the unit
# tests) are built again with clang, coverage and sanitizer flags in
# build-fuzz/.  `make fuzz` runs every harness for FUZZ_SECONDS on a copy of
# its seeds (build-fuzz/corpus/<name>; the repository corpus is only read)
# and fails on the first crash, leak or timeout, printing the input's path.
FUZZ_BUILD    ?= build-fuzz
FUZZ_SECONDS  ?= 60
FUZZ_CC       ?= clang
FUZZ_SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS   := -std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) \
                 -fsanitize=fuzzer-no-link $(WARN) -Iinclude $(PKG_CFLAGS) -MMD -MP
FUZZ_SRCS     := $(wildcard test/fuzz/fuzz_*.c)
FUZZ_NAMES    := $(patsubst test/fuzz/fuzz_%.c,%,$(FUZZ_SRCS))
FUZZ_BINS     := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_OBJS     := $(FUZZ_SRCS:%.c=$(FUZZ_BUILD)/%.o)

# The hba harness keeps @file includes inside its scratch directory.
$(FUZZ_BUILD)/fuzz_hba: FUZZ_LDFLAGS = -Wl,--wrap=fopen

fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	@FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) test/fuzz/run.sh $(FUZZ_NAMES)

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/test/fuzz/fuzz_%.o $(FUZZ_LIB_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(FUZZ_LDFLAGS) -o $@ $^ $(LDLIBS)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

.SECONDARY: $(FUZZ_OBJS)

-include $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_OBJS:.o=.d)

install: $(BUILD)/sluice
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/doc/sluice
	install -m 755 $(BUILD)/sluice $(DESTDIR)$(PREFIX)/bin/sluice
	install -m 644 etc/sluice.conf README.md doc/*.md $(DESTDIR)$(PREFIX)/share/doc/sluice/

clean:
	rm -rf build build-asan build-fuzz

-include $(OBJS:.o=.d) $(UNIT_OBJS:.o=.d)

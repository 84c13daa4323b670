# Sluice - PostgreSQL connection pooler.
#
#   make            build build/sluice
#   make run        install deps, build, start a throwaway PostgreSQL and Sluice
#   make test       install deps, build, unit tests + integration tests
#   make unit       Check unit tests only
#   make itest      integration tests only (throwaway PostgreSQL)
#   make asan-test  the whole suite under AddressSanitizer + UBSan
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

.PHONY: all run test unit itest asan-test bench install clean deps tools

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
	BUILD=$(BUILD) test/integration/run.sh

test: deps
	@$(MAKE) -s all $(BUILD)/unit_tests
	$(BUILD)/unit_tests
	BUILD=$(BUILD) test/integration/run.sh

asan-test: deps
	@$(MAKE) -s BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		all build-asan/unit_tests
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 build-asan/unit_tests
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 BUILD=build-asan test/integration/run.sh

bench: deps
	@$(MAKE) -s all
	@scripts/bench.sh

install: $(BUILD)/sluice
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/doc/sluice
	install -m 755 $(BUILD)/sluice $(DESTDIR)$(PREFIX)/bin/sluice
	install -m 644 etc/sluice.conf README.md doc/*.md $(DESTDIR)$(PREFIX)/share/doc/sluice/

clean:
	rm -rf build build-asan

-include $(OBJS:.o=.d) $(UNIT_OBJS:.o=.d)

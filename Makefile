# stagehand: build, test, install, demo.
#
#   make              build ./stagehand
#   make check        install test dependencies (Debian, as root), build, run
#                     every test; ends with "N passed, N failed, N skipped"
#                     (TIER=box: without the QEMU VM tier; TIER=vm: only it)
#   make check-fresh  make demo and make check on a new minimal Debian root
#   make asan         the same tests against an ASan+UBSan build
#   make demo         bring up the test box, run the demo stages, tear down
#   make image        stage 1 + stage 2 images with Packer's qemu builder and
#                     the boot proof; ARCH=x86_64 (default), aarch64, or
#                     "x86_64 aarch64" (side by side); output/
#   make bench        side-by-side benchmarks (bench/)
#   make install PREFIX=/usr/local DESTDIR=
#   make lint         banned functions, clang-format

VERSION   := 0.1.0
PREFIX    ?= /usr/local
BINDIR    ?= $(PREFIX)/bin
MANDIR    ?= $(PREFIX)/share/man
CC        ?= cc
PKGS      := yaml-0.1 libcurl libssh2 libsodium libpq libcrypto liblzma libzstd

WARN := -Wall -Wextra -Werror -Wshadow -Wconversion -Wsign-conversion \
	-Wstrict-prototypes -Wmissing-prototypes -Wvla -Wformat=2 \
	-Wimplicit-fallthrough -Wwrite-strings
# pkg-config runs once, when make parses this file: a make started before
# tests/deps.sh installed the -dev packages has empty flags for good. So
# check, demo, asan and bench run deps.sh first and build in a sub-make,
# and a compile with missing packages stops at pkgs-found with their names
# rather than with "libpq-fe.h: No such file or directory".
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
PKG_MISSING := $(shell for p in $(PKGS); do \
	pkg-config --exists $$p 2>/dev/null || echo $$p; done)
DEV_yaml-0.1  := libyaml-dev
DEV_libcurl   := libcurl4-openssl-dev
DEV_libssh2   := libssh2-1-dev
DEV_libsodium := libsodium-dev
DEV_libpq     := libpq-dev
DEV_libcrypto := libssl-dev
DEV_liblzma   := liblzma-dev
DEV_libzstd   := libzstd-dev
CFLAGS   ?= -O2 -g
ALL_CFLAGS = -std=c11 $(WARN) $(CFLAGS) $(PKG_CFLAGS) -iquote provisioner \
	-D_GNU_SOURCE -DSTAGEHAND_VERSION='"$(VERSION)"' -MMD -MP
# Debian's libbz2-dev ships no bzip2.pc.
LDLIBS   = $(PKG_LIBS) -lbz2

SRCS := $(wildcard provisioner/*/*.c)
LIB_SRCS := $(filter-out provisioner/cmd/main.c,$(SRCS))
OBJS := $(SRCS:%.c=build/%.o)
LIB_OBJS := $(LIB_SRCS:%.c=build/%.o)
ASAN_OBJS := $(SRCS:%.c=build-asan/%.o)
ASAN_LIB_OBJS := $(LIB_SRCS:%.c=build-asan/%.o)
SAN := -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build/tests/%)
ASAN_UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build-asan/tests/%)

.PHONY: all check unit integration asan deps lint format install demo \
	bench clean fuzz pkgs-found check-fresh check-vm check-arm64 demo-vm image

all: stagehand

stagehand: $(OBJS)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

pkgs-found:
	@if [ -n "$(PKG_MISSING)" ]; then \
		echo "make: pkg-config cannot find $(PKG_MISSING)." >&2; \
		echo "make: install them: apt-get install pkg-config $(foreach p,$(PKG_MISSING),$(DEV_$(p)))" >&2; \
		echo "make: (or run tests/deps.sh as root), then run make again" >&2; \
		exit 1; \
	fi

build/%.o: %.c | pkgs-found
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(ALL_CFLAGS) -c -o $@ $<

build-asan/%.o: %.c | pkgs-found
	@mkdir -p $(dir $@)
	@echo "  CC asan $<"
	@$(CC) $(ALL_CFLAGS) $(SAN) -c -o $@ $<

stagehand-asan: $(ASAN_OBJS)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS)

build/tests/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -o $@ $^ \
		$(LDLIBS) -lcmocka

build-asan/tests/%: tests/unit/%.c $(ASAN_LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN) -Wno-missing-prototypes \
		-o $@ $^ $(LDLIBS) -lcmocka

deps:
	@tests/deps.sh

# The whole suite: unit tests, lint, then the integration tests against
# the test box. tests/run.sh prints the closing "N passed, N failed,
# N skipped". deps.sh first, then the build in a sub-make (see PKG_MISSING).
# TIER=check: the box tier and the boot proof (t11*); all: everything;
# box, vm or arm64: one tier. check-vm: the whole VM tier (SKIP=PATTERN leaves
# out scripts, e.g. SKIP=t1100 after a `make check` ran it).
TIER ?= check
SKIP ?=
check:
	@tests/deps.sh
	@$(MAKE) --no-print-directory stagehand $(UNIT_BINS)
	@tests/run.sh --stagehand ./stagehand --unit-dir build/tests \
	--tier $(TIER) --skip "$(SKIP)"

check-vm:
	@$(MAKE) --no-print-directory check TIER=vm

# The local image pipeline for x86_64 and aarch64 side by side (t13*),
# aarch64 emulated under TCG on an x86_64 host: the slowest tier, so in
# neither check nor check-vm.
check-arm64:
	@$(MAKE) --no-print-directory check TIER=arm64

# Stage 1 + stage 2 on a VM and a boot of the image they left: slower
# than `make demo` (minutes under TCG), so not part of it.
demo-vm:
	@tests/demo-vm.sh

# The two-stage image pipeline on this machine (packer/local/, as root):
# output/stage1-ARCH.qcow2, output/stage2-ARCH.qcow2, the reports and
# packer-manifest.json, then a boot of the stage-2 image (the boot proof),
# for each arch in ARCH.
ARCH ?= x86_64
image:
	@ARCH=$(ARCH) packer/local/image.sh

# The README's two commands on a Debian root built from nothing (mmdebstrap),
# as root; see tests/fresh/README.md. Not part of check.
check-fresh:
	@TIER=$(TIER) tests/fresh/fresh-root.sh

unit: stagehand $(UNIT_BINS)
	@tests/run.sh --stagehand ./stagehand --unit-dir build/tests --unit-only

asan:
	@tests/deps.sh
	@$(MAKE) --no-print-directory stagehand-asan $(ASAN_UNIT_BINS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	tests/run.sh --stagehand ./stagehand-asan --unit-dir build-asan/tests \
	--tier $(TIER)

lint:
	@tests/lint.sh

format:
	clang-format -i provisioner/*/*.[ch] tests/unit/*.c tests/fuzz/*.c \
		tests/integration/*.[ch]

fuzz:
	@tests/fuzz/build.sh

install: stagehand
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 0755 stagehand $(DESTDIR)$(BINDIR)/stagehand
	install -m 0644 docs/stagehand.1 $(DESTDIR)$(MANDIR)/man1/stagehand.1

demo:
	@tests/deps.sh
	@$(MAKE) --no-print-directory stagehand
	@tests/demo.sh

bench:
	@tests/deps.sh
	@$(MAKE) --no-print-directory stagehand
	@bench/steps.sh
	@bench/closure.sh
	@bench/migrations.sh

clean:
	rm -rf build build-asan stagehand stagehand-asan

-include $(OBJS:.o=.d) $(ASAN_OBJS:.o=.d)

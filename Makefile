# certa — one plain Makefile.  `make`, `make check`, `make check-asan`, `make demo`,
# `make install PREFIX=/usr DESTDIR=...`.  Objects and generated code live under $(BUILD).

CC       ?= cc
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    ?= build
PKG_CONFIG ?= pkg-config

OPTFLAGS ?= -O2 -g
WARNFLAGS = -Wall -Wextra -Wshadow -Wno-unused-parameter -Wstrict-prototypes -Wmissing-prototypes
CFLAGS   ?= $(OPTFLAGS)
SANFLAGS ?=
CPPFLAGS_ALL = -std=c11 -D_GNU_SOURCE -I. -I$(BUILD)/gen \
	$(shell $(PKG_CONFIG) --cflags libprotobuf-c libevent zlib 2>/dev/null)
LIBS     = -lgrpc -lgpr -lprotobuf-c -levent_core -levent_extra -levent_pthreads -llmdb -lz \
	-lcrypto -lpthread -lm
CMOCKA_LIBS = -lcmocka
ALL_CFLAGS = $(CPPFLAGS_ALL) $(WARNFLAGS) $(CFLAGS) $(SANFLAGS) $(CPPFLAGS)
ALL_LDFLAGS = $(SANFLAGS) $(LDFLAGS)

# proto/grpc/health/v1/health.proto is the standard grpc.health.v1 service; it generates
# $(BUILD)/gen/grpc/health/v1/health.pb-c.h.  No collision with the system <grpc/...> headers:
# /usr/include/grpc has no health/ directory, and a missing file in $(BUILD)/gen/grpc falls
# through to the system include directory.
PROTOS   = $(wildcard proto/certa/v1/*.proto) $(wildcard proto/grpc/health/v1/*.proto)
GEN_C    = $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
GEN_H    = $(GEN_C:.c=.h)

# Everything shared by the binaries goes into one static archive.
CORE_SRC = $(wildcard lib/*.c store/*.c scheduler/*.c)
CORE_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(CORE_SRC)) \
	$(patsubst $(BUILD)/gen/%.c,$(BUILD)/obj/gen/%.o,$(GEN_C))
CORE_LIB = $(BUILD)/libcerta.a

DAEMON_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard daemon/*.c))
WORKER_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard workers/*.c workers/engines/*.c))
CLI_OBJ    = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard cli/*.c))
BENCH_SRC  = $(wildcard bench/*.c)
BENCH_BIN  = $(patsubst bench/%.c,$(BUILD)/bin/%,$(BENCH_SRC))

BINS = $(BUILD)/bin/certad $(BUILD)/bin/certa-worker $(BUILD)/bin/certactl
ifneq ($(DAEMON_OBJ),)
else
BINS := $(filter-out $(BUILD)/bin/certad,$(BINS))
endif
ifeq ($(WORKER_OBJ),)
BINS := $(filter-out $(BUILD)/bin/certa-worker,$(BINS))
endif
ifeq ($(CLI_OBJ),)
BINS := $(filter-out $(BUILD)/bin/certactl,$(BINS))
endif

UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
INTEG_SRC = $(wildcard tests/integration/test_*.c)
INTEG_BIN = $(patsubst tests/integration/%.c,$(BUILD)/itests/%,$(INTEG_SRC))
TEST_SUPPORT_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/support/*.c))

TRACES ?= $(abspath ../shared/data/traces)
export CERTA_TRACES ?= $(TRACES)

.PHONY: all deps check check-unit check-integration check-asan check-valgrind demo clean install uninstall bench \
	fuzz fuzz-deps fuzz-bins check-fuzz check-crashloop
.SUFFIXES:
.SECONDARY:

all: $(BINS) $(UNIT_BIN) $(INTEG_BIN) $(BENCH_BIN)

deps:
	@bash scripts/deps.sh

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto $(PROTOS)
	@mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen -Iproto $<

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -MMD -MP -c -o $@ $<

$(BUILD)/obj/%.o: %.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(CORE_LIB): $(CORE_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/bin/certad: $(DAEMON_OBJ) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $(DAEMON_OBJ) $(CORE_LIB) $(LIBS)

$(BUILD)/bin/certa-worker: $(WORKER_OBJ) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $(WORKER_OBJ) $(CORE_LIB) $(LIBS)

$(BUILD)/bin/certactl: $(CLI_OBJ) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $(CLI_OBJ) $(CORE_LIB) $(LIBS)

$(BUILD)/bin/%: $(BUILD)/obj/bench/%.o $(CORE_LIB) $(TEST_SUPPORT_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(CORE_LIB) $(LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(CORE_LIB) $(TEST_SUPPORT_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(CORE_LIB) $(LIBS) $(CMOCKA_LIBS)

# Unit tests of daemon code that needs no running daemon link the daemon objects they test.
$(BUILD)/tests/test_program_records: $(BUILD)/obj/tests/unit/test_program_records.o \
		$(BUILD)/obj/daemon/program.o $(CORE_LIB) $(TEST_SUPPORT_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(BUILD)/obj/daemon/program.o $(TEST_SUPPORT_OBJ) $(CORE_LIB) \
		$(LIBS) $(CMOCKA_LIBS)

$(BUILD)/itests/%: $(BUILD)/obj/tests/integration/%.o $(CORE_LIB) $(TEST_SUPPORT_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(TEST_SUPPORT_OBJ) $(CORE_LIB) $(LIBS) $(CMOCKA_LIBS)

# Unit tests first (fast), then integration tests that start real processes.  Each test binary
# runs under a hard timeout.
check: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) bash tests/run.sh $(UNIT_BIN) $(INTEG_BIN)

check-unit: all
	@BUILD=$(BUILD) bash tests/run.sh $(UNIT_BIN)

check-integration: all
	@BUILD=$(BUILD) bash tests/run.sh $(INTEG_BIN)

# ASan + UBSan build in its own tree.
check-asan: deps
	@LSAN_OPTIONS="suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0" \
		$(MAKE) --no-print-directory BUILD=build/asan \
		OPTFLAGS="-O1 -g -fno-omit-frame-pointer" \
		SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" check

# Unit tests under valgrind (memcheck; definite leaks are errors).  gRPC/abseil keep a few
# "possibly lost" blocks in their threads after grpc_shutdown: the shared suppression file
# names exactly those.
VALGRIND_SUPP ?= $(abspath ../shared/tools/valgrind-grpc.supp)
check-valgrind: all
	@command -v valgrind >/dev/null || { echo "check-valgrind: valgrind is not installed"; exit 1; }
	@ANSWER_FUZZ_ITERS=3000 TEST_WRAPPER="valgrind --quiet --error-exitcode=99 \
		--leak-check=full --errors-for-leak-kinds=definite \
		$(if $(wildcard $(VALGRIND_SUPP)),--suppressions=$(VALGRIND_SUPP))" \
		BUILD=$(BUILD) bash tests/run.sh $(UNIT_BIN)

# Fuzz targets (libFuzzer): tests/fuzz/fuzz_<name>.c, one LLVMFuzzerTestOneInput each, built
# with clang, ASan and UBSan into build/fuzz/bin/.  `make check-fuzz` runs each for FUZZ_SECONDS
# from its seed corpus tests/fuzz/corpus/<name>/ (new inputs go to build/fuzz/corpus/<name>/;
# crashes to build/fuzz/crash/<name>/) and prints inputs run, inputs/s and crashes per target.
FUZZ_SRC  = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN  = $(patsubst tests/fuzz/%.c,$(BUILD)/bin/%,$(FUZZ_SRC))
FUZZ_CC  ?= clang
FUZZ_SECONDS ?= 60
# daemon code a target may call without a running daemon (the record decoder, the tenants and
# policies behind the Admin handlers) and the test harness (temporary directories)
FUZZ_DAEMON_OBJ = $(BUILD)/obj/daemon/program.o $(BUILD)/obj/daemon/tenants.o \
	$(BUILD)/obj/daemon/policies.o $(TEST_SUPPORT_OBJ)

$(FUZZ_BIN): $(BUILD)/bin/fuzz_%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_DAEMON_OBJ) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_DAEMON_OBJ) $(CORE_LIB) $(LIBS)

fuzz-bins: $(FUZZ_BIN)

fuzz-deps:
	@bash scripts/deps.sh fuzz

fuzz: fuzz-deps
	@$(MAKE) --no-print-directory BUILD=build/fuzz CC=$(FUZZ_CC) \
		OPTFLAGS="-O1 -g -fno-omit-frame-pointer" \
		SANFLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
		fuzz-bins

check-fuzz: fuzz
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash tests/fuzz/run.sh build/fuzz

# The crash loop (tests/integration/test_crashloop.c) with more kill -9 cycles than the
# bounded run in `make check`.
CRASHLOOP_CYCLES ?= 50
check-crashloop: all
	@CERTA_CRASHLOOP_CYCLES=$(CRASHLOOP_CYCLES) TEST_TIMEOUT=1800 \
		BUILD=$(BUILD) bash tests/run.sh $(BUILD)/itests/test_crashloop

demo: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) bash scripts/demo.sh

bench: all
	@BUILD=$(BUILD) bash bench/run.sh

# Installation layout (all overridable; DESTDIR is prepended to every path):
#   $(PREFIX)/bin/certactl, $(PREFIX)/sbin/certad, $(PREFIX)/sbin/certa-worker    0755
#   $(UNITDIR)/certad.service, certa-worker@.service    ExecStart and /etc/certa paths
#                                                        rewritten for PREFIX and SYSCONFDIR
#   $(SYSUSERSDIR)/certa.conf, $(TMPFILESDIR)/certa.conf
#   $(SYSCONFDIR)/certa/certad.conf.example, certa-worker.conf.example (from --print-config;
#                                        copy to *.conf and edit: install never writes a .conf)
#   $(MANDIR)/man8/certad.8, certa-worker.8, man1/certactl.1, man5/certad.conf.5
# Generated files come from scripts/gen-docs.sh into $(BUILD)/etc and $(BUILD)/man.
# `make uninstall` removes exactly these files, and $(SYSCONFDIR)/certa if it is then empty.
SYSCONFDIR  ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
MANDIR      ?= $(PREFIX)/share/man
INSTALL     ?= install
UNITS        = certad.service certa-worker@.service
MAN_PAGES    = man8/certad.8 man8/certa-worker.8 man1/certactl.1 man5/certad.conf.5
CONF_EXAMPLES = certad.conf.example certa-worker.conf.example

install: $(BUILD)/bin/certad $(BUILD)/bin/certa-worker $(BUILD)/bin/certactl
	bash scripts/gen-docs.sh $(BUILD)
	$(INSTALL) -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSCONFDIR)/certa \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m 0755 $(BUILD)/bin/certactl $(DESTDIR)$(PREFIX)/bin/
	$(INSTALL) -m 0755 $(BUILD)/bin/certad $(BUILD)/bin/certa-worker $(DESTDIR)$(PREFIX)/sbin/
	for u in $(UNITS); do \
		sed -e 's|/usr/sbin/|$(PREFIX)/sbin/|g' -e 's|/etc/certa/|$(SYSCONFDIR)/certa/|g' \
			systemd/$$u > $(DESTDIR)$(UNITDIR)/$$u.tmp && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u.tmp && \
		mv $(DESTDIR)$(UNITDIR)/$$u.tmp $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	$(INSTALL) -m 0644 systemd/certa.sysusers $(DESTDIR)$(SYSUSERSDIR)/certa.conf
	$(INSTALL) -m 0644 systemd/certa.tmpfiles $(DESTDIR)$(TMPFILESDIR)/certa.conf
	$(INSTALL) -m 0644 $(addprefix $(BUILD)/etc/,$(CONF_EXAMPLES)) $(DESTDIR)$(SYSCONFDIR)/certa/
	for p in $(MAN_PAGES); do \
		$(INSTALL) -m 0644 $(BUILD)/man/$$(basename $$p) $(DESTDIR)$(MANDIR)/$$p || exit 1; \
	done

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/certactl $(DESTDIR)$(PREFIX)/sbin/certad \
		$(DESTDIR)$(PREFIX)/sbin/certa-worker
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))
	rm -f $(DESTDIR)$(SYSUSERSDIR)/certa.conf $(DESTDIR)$(TMPFILESDIR)/certa.conf
	rm -f $(addprefix $(DESTDIR)$(SYSCONFDIR)/certa/,$(CONF_EXAMPLES))
	-rmdir $(DESTDIR)$(SYSCONFDIR)/certa 2>/dev/null
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/,$(MAN_PAGES))

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

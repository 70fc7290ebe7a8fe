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
	$(shell $(PKG_CONFIG) --cflags libprotobuf-c libevent zlib libcurl 2>/dev/null)
LIBS     = -lgrpc -lgpr -lprotobuf-c -levent_core -levent_extra -levent_pthreads -llmdb -lz \
	-lcrypto -lsystemd -lpcre2-8 -lcurl -lpthread -lm
CMOCKA_LIBS = -lcmocka
# certad's HTTP API (daemon/openai.c): evhttp over TLS.
LIBS    += -levent_openssl -lssl
ALL_CFLAGS = $(CPPFLAGS_ALL) $(WARNFLAGS) $(CFLAGS) $(SANFLAGS) $(CPPFLAGS)
ALL_LDFLAGS = $(SANFLAGS) $(LDFLAGS)

# proto/grpc/health/v1/health.proto is the standard grpc.health.v1 service; it generates
# $(BUILD)/gen/grpc/health/v1/health.pb-c.h.  No collision with the system <grpc/...> headers:
# /usr/include/grpc has no health/ directory, and a missing file in $(BUILD)/gen/grpc falls
# through to the system include directory.
PROTOS   = $(wildcard proto/certa/v1/*.proto) $(wildcard proto/grpc/health/v1/*.proto)
# gRPC server reflection (v1 and v1alpha, lib/reflection.c) and the descriptor view it reads
# the embedded FileDescriptorSet with (certa/internal: C only, not in the set).
SERVED_PROTOS = $(wildcard proto/certa/v1/*.proto) $(wildcard proto/grpc/health/v1/*.proto) \
	$(wildcard proto/grpc/reflection/*/*.proto)
PROTOS  += $(wildcard proto/grpc/reflection/*/*.proto) $(wildcard proto/certa/internal/*.proto)
# google.rpc.Status and its error details (grpc-status-details-bin), with the two well-known
# types they import (vendored: Debian's protoc has none without libprotobuf-dev).
PROTOS  += $(wildcard proto/google/rpc/*.proto) $(wildcard proto/google/protobuf/*.proto)
GEN_C    = $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
GEN_H    = $(GEN_C:.c=.h)
# The served protos' FileDescriptorSet (protoc --include_imports), embedded as a C array.
FDS_PB   = $(BUILD)/gen/descriptors.pb
FDS_C    = $(BUILD)/gen/reflection_fds.c

# One static archive per layer.  Layers only look down (docs: README "Layout"):
#   lib (ground, with the generated protobuf code) <- store, scheduler <- eval, daemon,
#   workers, cli.
# Binaries link their own archive first and the ground last, so a symbol that a lower layer
# takes from a higher one does not resolve; `make check-layers` checks the includes.
LIB_OBJ    = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard lib/*.c)) \
	$(patsubst $(BUILD)/gen/%.c,$(BUILD)/obj/gen/%.o,$(GEN_C)) $(BUILD)/obj/gen/reflection_fds.o
STORE_OBJ  = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard store/*.c))
SCHED_OBJ  = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard scheduler/*.c))
# Each program's modules without its main.o, so unit tests link them (as Knot Resolver does).
EVAL_OBJ   = $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out eval/main.c,$(wildcard eval/*.c)))
DAEMON_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out daemon/main.c,$(wildcard daemon/*.c)))
WORKER_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out workers/main.c,\
	$(wildcard workers/*.c workers/engines/*.c workers/llm/*.c workers/upstream/*.c)))
CLI_OBJ    = $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out cli/main.c,$(wildcard cli/*.c)))

# The CUDA backend (docs/engine.md "CUDA backend"): built when $(CUDA_HOME)/bin/nvcc exists
# (CUDA_HOME defaults to /usr/local/cuda); `make CUDA=0` leaves it out.  One .cu file, for
# sm_80 and sm_90 plus sm_90 PTX (CUDA_ARCH overrides); cudart is linked, cuBLAS loaded.
CUDA_HOME ?= /usr/local/cuda
CUDA      ?= $(if $(wildcard $(CUDA_HOME)/bin/nvcc),1,0)
NVCC      ?= $(CUDA_HOME)/bin/nvcc
CUDA_ARCH ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=[sm_90,compute_90]
NVCCFLAGS ?= -O2
CUDA_TEST  = $(BUILD)/cuda/test_backend_cuda
CUDA_FWD_TEST = $(BUILD)/cuda/test_forward_cuda
ifeq ($(CUDA),1)
WORKER_OBJ += $(BUILD)/obj/workers/llm/backend_cuda.o
CPPFLAGS_ALL += -DBACKEND_HAVE_CUDA
# cuBLAS is dlopen()ed by the backend (linking it costs every process ~0.2 s and ~200 MB).
LIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -ldl -lstdc++
CUDA_BINS = $(CUDA_TEST) $(CUDA_FWD_TEST)
endif
# Objects that depend on CUDA=0/1 are rebuilt when it changes.
CUDA_STAMP = $(BUILD)/cuda.stamp
$(shell mkdir -p $(BUILD) && { [ "$$(cat $(CUDA_STAMP) 2>/dev/null)" = "$(CUDA)" ] || \
	echo $(CUDA) > $(CUDA_STAMP); })

LIB_LIB    = $(BUILD)/libcerta.a
STORE_LIB  = $(BUILD)/libcerta-store.a
SCHED_LIB  = $(BUILD)/libcerta-sched.a
EVAL_LIB   = $(BUILD)/libcerta-eval.a
DAEMON_LIB = $(BUILD)/libcertad.a
WORKER_LIB = $(BUILD)/libcerta-worker.a
CLI_LIB    = $(BUILD)/libcertactl.a
ARCHIVES   = $(LIB_LIB) $(STORE_LIB) $(SCHED_LIB) $(EVAL_LIB) $(DAEMON_LIB) $(WORKER_LIB) $(CLI_LIB)
# What tests and benchmarks link: every layer, top to bottom.
ALL_LIBS   = $(DAEMON_LIB) $(WORKER_LIB) $(CLI_LIB) $(EVAL_LIB) $(SCHED_LIB) $(STORE_LIB) $(LIB_LIB)

BENCH_SRC  = $(wildcard bench/*.c)
BENCH_BIN  = $(patsubst bench/%.c,$(BUILD)/bin/%,$(BENCH_SRC))

BINS = $(BUILD)/bin/certad $(BUILD)/bin/certa-worker $(BUILD)/bin/certactl $(BUILD)/bin/certa-eval
# The tokenizer against the real one (docs/engine.md "Tokenizer": make check-tokenizer).
TOKCOMPARE = $(BUILD)/tests/tokcompare

UNIT_SRC = $(wildcard tests/unit/test_*.c)
UNIT_BIN = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
INTEG_SRC = $(wildcard tests/integration/test_*.c)
INTEG_BIN = $(patsubst tests/integration/%.c,$(BUILD)/itests/%,$(INTEG_SRC))
# itest.o asserts with cmocka: linked into the integration tests only.
ITEST_SUPPORT_OBJ = $(BUILD)/obj/tests/support/itest.o
TEST_SUPPORT_OBJ = $(filter-out $(ITEST_SUPPORT_OBJ), \
    $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/support/*.c)))

TRACES ?= $(abspath ../shared/data/traces)
export CERTA_TRACES ?= $(TRACES)
# make demo falls back to the subset shipped in data/traces-demo when the full set is absent and
# neither TRACES nor CERTA_TRACES was given; tests and benchmarks always use CERTA_TRACES.
ifeq ($(origin TRACES)$(origin CERTA_TRACES),filefile)
DEMO_TRACES = $(if $(wildcard $(TRACES)),$(TRACES),$(CURDIR)/data/traces-demo)
else
DEMO_TRACES = $(CERTA_TRACES)
endif

.PHONY: bench-serve
.PHONY: all deps check check-tokenizer check-layers check-unit check-integration check-asan \
	check-valgrind demo clean install uninstall bench fuzz fuzz-deps fuzz-bins check-fuzz \
	check-crashloop check-cuda python
.SUFFIXES:
.SECONDARY:

# The Python client (clients/python): stubs generated into $(BUILD)/python with protoc and
# grpc_python_plugin (protobuf-compiler-grpc); skipped where the plugin is missing (its test
# says SKIP).  `pip install $(BUILD)/python` installs it.
GRPC_PYTHON_PLUGIN ?= $(shell command -v grpc_python_plugin 2>/dev/null)
PY_STAMP   = $(BUILD)/python/.stamp
PY_SRC     = $(wildcard clients/python/certa_client/*.py) clients/python/gen.sh \
	clients/python/pyproject.toml clients/python/README.md \
	proto/certa/v1/common.proto proto/certa/v1/reasoning.proto proto/certa/v1/admin.proto

all: $(BINS) $(UNIT_BIN) $(INTEG_BIN) $(BENCH_BIN) $(TOKCOMPARE) $(CUDA_BINS) \
	$(if $(GRPC_PYTHON_PLUGIN),$(PY_STAMP))

python: $(PY_STAMP)

$(PY_STAMP): $(PY_SRC)
	bash clients/python/gen.sh . $(BUILD)/python
	@touch $@

deps:
	@bash scripts/deps.sh

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto $(PROTOS)
	@mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen -Iproto $<

$(FDS_PB): $(SERVED_PROTOS)
	@mkdir -p $(BUILD)/gen
	protoc --include_imports --descriptor_set_out=$@ -Iproto $(patsubst proto/%,%,$(SERVED_PROTOS))

# od (coreutils) rather than xxd: the bytes as a C array and its length.
$(FDS_C): $(FDS_PB)
	{ echo '/* Generated from $(notdir $<) (Makefile): do not edit. */'; \
	  echo '#include <stddef.h>'; \
	  echo 'extern const unsigned char reflection_fds[];'; \
	  echo 'extern const size_t reflection_fds_len;'; \
	  echo 'const unsigned char reflection_fds[] = {'; \
	  od -An -v -tx1 $< | sed -e 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; \
	  echo 'const size_t reflection_fds_len = sizeof reflection_fds;'; } > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Wno-missing-prototypes -MMD -MP -c -o $@ $<

$(BUILD)/obj/%.o: %.c $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -std=c++17 $(CUDA_ARCH) -I. -D_GNU_SOURCE \
		-Xcompiler -Wall,-Wextra,-Wno-unused-parameter \
		$(if $(findstring -Werror,$(CFLAGS)),-Werror all-warnings -Xcompiler -Werror) \
		-MMD -MP -c -o $@ $<

$(BUILD)/obj/workers/engines/llm.o $(BUILD)/obj/tests/cuda/test_backend_cuda.o: $(CUDA_STAMP)
$(BUILD)/obj/bench/bench-cuda.o $(BUILD)/obj/tests/cuda/test_forward_cuda.o: $(CUDA_STAMP)

$(LIB_LIB): $(LIB_OBJ)
$(STORE_LIB): $(STORE_OBJ)
$(SCHED_LIB): $(SCHED_OBJ)
$(EVAL_LIB): $(EVAL_OBJ)
$(DAEMON_LIB): $(DAEMON_OBJ)
$(WORKER_LIB): $(WORKER_OBJ)
$(CLI_LIB): $(CLI_OBJ)
$(ARCHIVES):
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/bin/certad: $(BUILD)/obj/daemon/main.o $(DAEMON_LIB) $(SCHED_LIB) $(STORE_LIB) $(LIB_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bin/certa-worker: $(BUILD)/obj/workers/main.o $(WORKER_LIB) $(LIB_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bin/certactl: $(BUILD)/obj/cli/main.o $(CLI_LIB) $(SCHED_LIB) $(LIB_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bin/certa-eval: $(BUILD)/obj/eval/main.o $(EVAL_LIB) $(SCHED_LIB) $(STORE_LIB) $(LIB_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/bin/%: $(BUILD)/obj/bench/%.o $(TEST_SUPPORT_OBJ) $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(TEST_SUPPORT_OBJ) $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) $(CMOCKA_LIBS)

$(TOKCOMPARE): $(BUILD)/obj/tests/tokenizer/tokcompare.o $(WORKER_LIB) $(LIB_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/itests/%: $(BUILD)/obj/tests/integration/%.o $(TEST_SUPPORT_OBJ) $(ITEST_SUPPORT_OBJ) \
    $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) $(CMOCKA_LIBS)

$(CUDA_TEST): $(BUILD)/obj/tests/cuda/test_backend_cuda.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(CUDA_FWD_TEST): $(BUILD)/obj/tests/cuda/test_forward_cuda.o $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# Every backend op on the GPU against the CPU backend (tests/cuda/test_backend_cuda.c), then
# end-to-end logits parity on the tiny models (tests/cuda/test_forward_cuda.c), each under a
# timeout; says SKIP and succeeds where the backend is not built or no GPU is present.
check-cuda:
ifeq ($(CUDA),1)
	@$(MAKE) --no-print-directory $(CUDA_TEST) $(CUDA_FWD_TEST)
	@timeout -k 5 300 $(CUDA_TEST)
	@timeout -k 5 300 $(CUDA_FWD_TEST)
else
	@echo "check-cuda: SKIP: the CUDA backend is not built (CUDA=0 or no $(CUDA_HOME)/bin/nvcc)"
endif

# Fails on an include that looks up or sideways (scripts/check-layers.sh has the table).
check-layers:
	@bash scripts/check-layers.sh
	@if bash scripts/check-layers.sh tests/fixtures/layers-bad 2>/dev/null; then \
		echo "check-layers: the wrong-way fixture passed: the check is broken" >&2; exit 1; fi

# Unit tests first (fast), then integration tests that start real processes.  Each test binary
# runs under a hard timeout.
check: deps check-layers
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) bash tests/run.sh $(UNIT_BIN) $(INTEG_BIN)
	@BUILD=$(BUILD) TOK_REASONING=$(TOK_CHECK_REASONING) bash tests/tokenizer/check.sh

# Every problem and reasoning text of the traces through both real tokenizers (minutes).
# make check runs the problems plus TOK_CHECK_REASONING reasoning texts per model.
TOK_CHECK_REASONING ?= 20
check-tokenizer: all
	@BUILD=$(BUILD) TOK_REASONING=all bash tests/tokenizer/check.sh

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
# Targets link every layer's archive (daemon code that needs no running daemon: the record
# decoder, the tenants and policies behind the Admin handlers; the GGUF reader) and the test
# harness (temporary directories).
$(FUZZ_BIN): $(BUILD)/bin/fuzz_%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(TEST_SUPPORT_OBJ) $(ALL_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LIBS)

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
	@BUILD=$(BUILD) CERTA_TRACES="$(DEMO_TRACES)" bash scripts/demo.sh

bench: all
	@BUILD=$(BUILD) bash bench/run.sh

# The control plane at scale (docs/daemon.md "Scale"); minutes, not part of make check.
BENCH_SCALE_ARGS ?= --programs 100,1000,5000,10000 --kill9
.PHONY: bench-scale
bench-scale: $(BINS) $(BUILD)/bin/bench-scale
	@BUILD=$(BUILD) $(BUILD)/bin/bench-scale $(BENCH_SCALE_ARGS)

# Program rate at a latency SLO, certa vs the baselines (docs/bench-serve.md; not in check).
# BENCH_SERVE_ARGS= for the full sweep (default: --quick, a few minutes on 2 cores).  certad's
# state goes to tmpfs: its per-step fsync would count time_scale^-1 times over in GPU time.
BENCH_SERVE_ARGS ?= --quick
bench-serve: $(BUILD)/bin/bench-serve $(BUILD)/bin/certad $(BUILD)/bin/certa-worker
	TMPDIR=$(if $(wildcard /dev/shm),/dev/shm,$${TMPDIR:-/tmp}) \
	    $(BUILD)/bin/bench-serve $(BENCH_SERVE_ARGS) --out $(BUILD)/bench-serve.tsv
	@PY=$(if $(wildcard /usr/bin/python3),/usr/bin/python3,python3); \
	if $$PY -c 'import matplotlib' 2>/dev/null; then \
		$$PY scripts/plot-bench-serve.py $(BUILD)/bench-serve.tsv $(BUILD)/bench-serve.png; \
	else echo "bench-serve: no plot (apt-get install python3-matplotlib)"; fi

# Installation layout (all overridable; DESTDIR is prepended to every path):
#   $(PREFIX)/bin/certactl, certa-eval, $(PREFIX)/sbin/certad, $(PREFIX)/sbin/certa-worker    0755
#   $(UNITDIR)/certad.service, certa-worker@.service    ExecStart and /etc/certa paths
#                                                        rewritten for PREFIX and SYSCONFDIR
#   $(SYSUSERSDIR)/certa.conf, $(TMPFILESDIR)/certa.conf
#   $(SYSCONFDIR)/certa/certad.conf.example, certa-worker.conf.example (from --print-config;
#                                        copy to *.conf and edit: install never writes a .conf)
#   $(MANDIR)/man8/certad.8, certa-worker.8, man1/certactl.1, certa-eval.1, man5/certad.conf.5
# Generated files come from scripts/gen-docs.sh into $(BUILD)/etc and $(BUILD)/man.
# `make uninstall` removes exactly these files, and $(SYSCONFDIR)/certa if it is then empty.
SYSCONFDIR  ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
MANDIR      ?= $(PREFIX)/share/man
INSTALL     ?= install
UNITS        = certad.service certa-worker@.service certa-worker-upstream@.service
MAN_PAGES    = man8/certad.8 man8/certa-worker.8 man1/certactl.1 man1/certa-eval.1 \
	man5/certad.conf.5
CONF_EXAMPLES = certad.conf.example certa-worker.conf.example

install: $(BINS)
	bash scripts/gen-docs.sh $(BUILD)
	$(INSTALL) -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSCONFDIR)/certa \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m 0755 $(BUILD)/bin/certactl $(BUILD)/bin/certa-eval $(DESTDIR)$(PREFIX)/bin/
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
	rm -f $(DESTDIR)$(PREFIX)/bin/certactl $(DESTDIR)$(PREFIX)/bin/certa-eval \
		$(DESTDIR)$(PREFIX)/sbin/certad \
		$(DESTDIR)$(PREFIX)/sbin/certa-worker
	rm -f $(addprefix $(DESTDIR)$(UNITDIR)/,$(UNITS))
	rm -f $(DESTDIR)$(SYSUSERSDIR)/certa.conf $(DESTDIR)$(TMPFILESDIR)/certa.conf
	rm -f $(addprefix $(DESTDIR)$(SYSCONFDIR)/certa/,$(CONF_EXAMPLES))
	-rmdir $(DESTDIR)$(SYSCONFDIR)/certa 2>/dev/null
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/,$(MAN_PAGES))

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

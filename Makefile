# A thin front for CMake. Every target installs the Debian packages it needs first.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: python bench-python all deps build run test sanitize fuzz bench plot example pool-bench docs-examples small-gemm-bench format format-check clean

all: build

deps:
	@bash tools/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# The main job: generate, multiply with the engine and with OpenBLAS, compare, clean up.
run: build
	$(BUILD_DIR)/bin/shmgemm demo

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

# The host programs in examples/host_app, built against a copy installed into a temporary
# prefix (find_package), and against this source tree (add_subdirectory); both are run. Then
# the C++ examples of README.md and docs/library.md, built by a project that finds the
# installed copy and sets no C++ standard of its own.
example: build
	@set -e; prefix=$$(mktemp -d); trap 'rm -rf "$$prefix"' EXIT; \
	cmake --install $(BUILD_DIR) --prefix "$$prefix" >/dev/null; \
	cmake -S examples/host_app -B $(BUILD_DIR)/host-installed -DCMAKE_PREFIX_PATH="$$prefix" >/dev/null; \
	cmake --build $(BUILD_DIR)/host-installed -j $(JOBS) >/dev/null; \
	echo "host_app against the copy installed in $$prefix:"; \
	$(BUILD_DIR)/host-installed/host_app; \
	$(BUILD_DIR)/host-installed/host_arrays; \
	cmake -S examples/host_app -B $(BUILD_DIR)/host-subdir -DSHMGEMM_SOURCE_DIR=$(CURDIR) >/dev/null; \
	cmake --build $(BUILD_DIR)/host-subdir -j $(JOBS) >/dev/null; \
	echo "host_app with add_subdirectory:"; \
	$(BUILD_DIR)/host-subdir/host_app; \
	$(BUILD_DIR)/host-subdir/host_arrays; \
	/usr/bin/python3 tests/readme_examples.py . $(BUILD_DIR) --cmake-consumer="$$prefix"

# The Python package in the tree, with the programs it runs and nothing else (no tests):
# build/python/shmgemm (PYTHONPATH=build/python to import it).
python: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD_DIR) -j $(JOBS) --target shmgemm_python shmgemm-worker shmgemm-cli
	@echo "python: PYTHONPATH=$(BUILD_DIR)/python /usr/bin/python3 -c 'import shmgemm'"

# shmgemm from Python against numpy and the joblib recipe (python -m shmgemm.bench).
bench-python: python
	PYTHONPATH=$(BUILD_DIR)/python /usr/bin/python3 -m shmgemm.bench --rounds 5

# The library's figures (Google Benchmark): pool dispatch, pool throughput, 10,000-job stress.
pool-bench: build
	@cmake --build $(BUILD_DIR) -j $(JOBS) --target shmgemm-pool-benchmark
	$(BUILD_DIR)/bin/shmgemm-pool-benchmark

# The README's performance figures: `shmgemm bench` on its default shapes (a few minutes), as a
# table in $(BUILD_DIR)/bench/sweep.md and a CSV; `make plot` draws docs/bench-scaling.png.
BENCH_CSV = $(BUILD_DIR)/bench/sweep.csv
bench: build
	@mkdir -p $(BUILD_DIR)/bench
	$(BUILD_DIR)/bin/shmgemm bench --csv $(BENCH_CSV) | tee $(BUILD_DIR)/bench/sweep.md

# libxsmm against OpenBLAS on small products: why shmgemm does not use libxsmm (docs/benchmarks/log.md).
# OpenBLAS runs the kernels shmgemm runs (`shmgemm --version`).
small-gemm-bench: build
	@bash tools/install-deps.sh libxsmm-dev
	g++ -O2 -std=c++20 tools/bench/small_gemm_bench.cpp -o $(BUILD_DIR)/small-gemm-bench $$(pkg-config --cflags --libs libxsmm) -lopenblas
	OPENBLAS_CORETYPE=$$($(BUILD_DIR)/bin/shmgemm -V | sed -n 's/^OpenBLAS kernel: \([A-Za-z0-9]*\).*/\1/p') $(BUILD_DIR)/small-gemm-bench

# Every example of README.md and docs/, the measurements too (those marked `example: slow`,
# tens of minutes): each runs as the docs show it, in a temporary folder; their output is printed.
docs-examples: build python
	@bash tools/install-deps.sh linux-perf
	/usr/bin/python3 tests/readme_examples.py . $(BUILD_DIR) --slow

plot:
	@bash tools/install-deps.sh gnuplot-nox
	@test -f $(BENCH_CSV) || $(MAKE) bench
	bash tools/bench/plot_bench.sh $(BENCH_CSV) docs/bench-scaling.png

# The suite built with AddressSanitizer and UndefinedBehaviorSanitizer (gcc), less the tests of
# what the programs print (ctest label "output"), which run the same code as test_cli, and the
# three-node MPI test (label "nodes"), whose time is MPI's start-up and its faults' waits. Unoptimised,
# with line tables only: the instrumented build takes a fifth of the time it takes at -O2 -g,
# and the products' time is OpenBLAS's, which is not instrumented.
SAN_FLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
sanitize: deps
	@cmake -S . -B build-asan -DSHMGEMM_PYTHON=OFF -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="$(SAN_FLAGS) -O0 -g1" >/dev/null
	@cmake --build build-asan -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:verify_asan_link_order=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --test-dir build-asan --output-on-failure -j $(JOBS) -LE "output|nodes|large"

# libFuzzer (clang) on the .npy header parser, the job-descriptor validator and the pool's
# control block, starting from the committed seed corpus in tests/fuzz/corpus: the targets run
# side by side, each for FUZZ_SECONDS of wall time (on fewer cores than targets, they share them).
FUZZ_SECONDS ?= 30
FUZZ_TARGETS = npy_header job_descriptor pool_control
fuzz: deps
	@bash tools/install-deps.sh clang libclang-rt-14-dev
	@cmake -S . -B build-fuzz -DSHMGEMM_PYTHON=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
	  -DSHMGEMM_FUZZ=ON -DBUILD_TESTING=OFF >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target $(addprefix fuzz_,$(FUZZ_TARGETS))
	@pids=; for t in $(FUZZ_TARGETS); do \
	  mkdir -p build-fuzz/corpus/$$t; \
	  build-fuzz/bin/fuzz_$$t build-fuzz/corpus/$$t tests/fuzz/corpus/$$t \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 >/dev/null 2>build-fuzz/fuzz_$$t.log & \
	  pids="$$pids $$!"; \
	done; \
	failed=0; for p in $$pids; do wait $$p || failed=1; done; \
	for t in $(FUZZ_TARGETS); do \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	  if grep -qE "^Done [0-9]+ runs" build-fuzz/fuzz_$$t.log; then \
	    grep -E "stat::number_of_executed_units|^Done" build-fuzz/fuzz_$$t.log; \
	  else tail -50 build-fuzz/fuzz_$$t.log; failed=1; fi; \
	done; \
	exit $$failed

FORMAT_FILES = $(shell git ls-files '*.cpp' '*.hpp')
format:
	@bash tools/install-deps.sh clang-format
	clang-format -i $(FORMAT_FILES)

format-check:
	@bash tools/install-deps.sh clang-format
	@clang-format --dry-run --Werror $(FORMAT_FILES) && echo "clang-format: clean"

clean:
	rm -rf $(BUILD_DIR)

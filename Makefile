# A thin front for CMake. Every target installs the Debian packages it needs first.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build run test format format-check clean

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

FORMAT_FILES = $(shell git ls-files '*.cpp' '*.hpp')
format:
	@bash tools/install-deps.sh clang-format
	clang-format -i $(FORMAT_FILES)

format-check:
	@bash tools/install-deps.sh clang-format
	@clang-format --dry-run --Werror $(FORMAT_FILES) && echo "clang-format: clean"

clean:
	rm -rf $(BUILD_DIR)

# Aegis: two commands for a fresh machine.
#   make run    build the host and the bundled plugins, then supervise the example service (config/aegis.yaml)
#   make test   build everything and run every test (host workspace, plugin workspace, end to end)
#
# `rustup toolchain install` reads rust-toolchain.toml (Rust 1.99.1 + wasm32-wasip2/wasip1); a no-op once done.

CARGO ?= cargo
PLUGIN_TARGET_DIR := plugins/target
PLUGIN_OUT := $(PLUGIN_TARGET_DIR)/wasm32-wasip2/release
BUNDLED_PLUGINS := window-trip escalating-restart panic-detector ewma-latency chat-formatter

.PHONY: run test toolchain build plugins lint console-screenshot fuzz

toolchain:
	rustup toolchain install

build: toolchain
	$(CARGO) build --workspace --bins

# Build the plugin workspace for wasm32-wasip2 and drop the components into plugins/ (the host's plugin directory).
plugins: toolchain
	cd plugins && CARGO_TARGET_DIR=target $(CARGO) build --release --target wasm32-wasip2
	for p in $(BUNDLED_PLUGINS); do cp "$(PLUGIN_OUT)/$$(echo $$p | tr - _).wasm" "plugins/$$p.wasm"; done

run: build plugins
	./target/debug/aegis-host --config config/aegis.yaml

# Binaries are built together with the test targets so dev-dependency features unify once and nothing rebuilds
# between the two steps; the end-to-end tests run the binaries from target/debug.
test: toolchain
	$(CARGO) build --workspace --bins --tests
	cd plugins && CARGO_TARGET_DIR=target $(CARGO) test
# The plugin tests again as WASI components, run by target/debug/aegis-host (`run`, see plugins/.cargo/config.toml).
	cd plugins && CARGO_TARGET_DIR=target $(CARGO) test --target wasm32-wasip2
	@$(CARGO) component --version >/dev/null 2>&1 || { echo "installing cargo-component (once, about 10 minutes on two cores)"; $(CARGO) install --locked cargo-component; }
	cd plugins && CARGO_TARGET_DIR=target $(CARGO) component test
# Every bundled plugin's component against its scenarios (plugins/<name>/scenarios/*.yaml), by target/debug/aegis-host.
	cd plugins && CARGO_TARGET_DIR=target $(CARGO) build --release --target wasm32-wasip2
	for p in $(BUNDLED_PLUGINS); do \
		./target/debug/aegis-host plugin test "$(PLUGIN_OUT)/$$(echo $$p | tr - _).wasm" "plugins/$$p/scenarios" || exit 1; \
	done
	$(CARGO) test --workspace

lint: toolchain
	$(CARGO) fmt --all -- --check
# host/workspace-hack pins shared features so that every command reuses one wasmtime build: it must match Cargo.lock.
	@$(CARGO) hakari --version >/dev/null 2>&1 || $(CARGO) install --locked cargo-hakari
	$(CARGO) hakari generate --diff && $(CARGO) hakari manage-deps --dry-run
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd plugins && $(CARGO) fmt --all -- --check && CARGO_TARGET_DIR=target $(CARGO) clippy --all-targets -- -D warnings

# Regenerates docs/console.png (the README's picture of the web console) from the browser test's screenshot.
console-screenshot: toolchain
	$(CARGO) build --workspace --bins --tests
	AEGIS_CONSOLE_SCREENSHOT=docs $(CARGO) test -p aegis-tests --test e2e -- console::console_shows_live_state_and_guards_actions --exact

# Fuzzing (fuzz/README.md): each target for FUZZ_SECONDS under libFuzzer, new inputs kept in fuzz/corpus/<target>/ and
# the corpus minimised again; a crash lands in fuzz/artifacts/<target>/. Needs nightly and cargo-fuzz (installed once
# here); `make test` only replays the corpus, on stable.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := config logs admin alert plugin_answers trip_window
# No sanitizer (the workspace denies unsafe code), but overflow checks and debug assertions on; a target dir of its
# own so nightly artifacts never replace stable ones.
FUZZ_FLAGS := --features libfuzzer --sanitizer none --debug-assertions --target-dir target/fuzz

fuzz:
	@rustup toolchain list | grep -q '^nightly-' || rustup toolchain install nightly --profile minimal
	@$(CARGO) +nightly fuzz --version >/dev/null 2>&1 || $(CARGO) +nightly install --locked cargo-fuzz
	for t in $(FUZZ_TARGETS); do \
		$(CARGO) +nightly fuzz run $(FUZZ_FLAGS) $$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 || exit 1; \
		$(CARGO) +nightly fuzz cmin $(FUZZ_FLAGS) $$t -- -max_len=4096 -use_counters=0 || exit 1; \
	done

# Aegis: two commands for a fresh machine.
#   make run    build the host and the bundled plugins, then supervise the example service (config/aegis.yaml)
#   make test   build everything and run every test (host workspace, plugin workspace, end to end)
#
# `rustup toolchain install` reads rust-toolchain.toml (Rust 1.99.1 + wasm32-wasip2/wasip1); a no-op once done.

CARGO ?= cargo
PLUGIN_TARGET_DIR := plugins/target
PLUGIN_OUT := $(PLUGIN_TARGET_DIR)/wasm32-wasip2/release
BUNDLED_PLUGINS := window-trip escalating-restart panic-detector ewma-latency chat-formatter

.PHONY: run test toolchain build plugins lint console-screenshot

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
	$(CARGO) test --workspace

lint: toolchain
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd plugins && $(CARGO) fmt --all -- --check && CARGO_TARGET_DIR=target $(CARGO) clippy --all-targets -- -D warnings

# Regenerates docs/console.png (the README's picture of the web console) from the browser test's screenshot.
console-screenshot: toolchain
	$(CARGO) build --workspace --bins --tests
	AEGIS_CONSOLE_SCREENSHOT=docs $(CARGO) test -p aegis-tests --test e2e -- console::console_shows_live_state_and_guards_actions --exact

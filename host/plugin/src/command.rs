//! Runs a WASI command component (`wasi:cli/command`) to completion with the host process's stdio, arguments and
//! environment: the cargo runner for the plugin workspace's unit tests (`cargo test --target wasm32-wasip2`,
//! `cargo component test`), so plugin authors need no wasmtime CLI.
//!
//! This is a development tool, not the policy sandbox: the guest gets the real stdin/stdout/stderr, every environment
//! variable (test harnesses read `RUST_TEST_THREADS`, `RUST_BACKTRACE`, …), clocks and randomness, but no preopened
//! directory and no network, because policies get neither at run time and their tests should not depend on them.
//! There is no deadline or memory cap either: a test binary runs as long as it needs. Only components are accepted;
//! a core module (the raw `wasm32-wasip1` output) is refused with a hint, since the slim wasmtime build carries no
//! preview1 support and `cargo component` already wraps its wasip1 output into a component.

use std::path::{Path, PathBuf};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};

/// Why a command component could not be run to completion. A guest that exits with a status is not an error.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },

    #[error("cannot create the WASM engine: {0}")]
    Engine(String),

    #[error(
        "{path}: a core WebAssembly module, not a component; build for wasm32-wasip2 or run it through \
         `cargo component`, which wraps wasm32-wasip1 output into a component"
    )]
    CoreModule { path: PathBuf },

    #[error("{path}: not a loadable WASM component: {reason}")]
    Compile { path: PathBuf, reason: String },

    #[error("{path}: cannot instantiate as a wasi:cli/command: {reason}")]
    Instantiate { path: PathBuf, reason: String },

    /// A trap or host failure; `reason` carries the wasm backtrace.
    #[error("{path}: {reason}")]
    Trap { path: PathBuf, reason: String },
}

/// The store's data: the WASI context and its resource table.
struct CommandState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for CommandState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Runs the command component `wasm` with `args` (after argv\[0\], which is the file name) and returns its exit
/// status: 0 when `run` returns `ok`, 1 when it returns `err`, or the status passed to `wasi:cli/exit`.
pub fn run_command(wasm: &Path, args: &[String]) -> Result<i32, CommandError> {
    let bytes = std::fs::read(wasm).map_err(|source| CommandError::Read { path: wasm.to_path_buf(), source })?;
    if is_core_module(&bytes) {
        return Err(CommandError::CoreModule { path: wasm.to_path_buf() });
    }
    let engine = Engine::new(&Config::new()).map_err(|e| CommandError::Engine(format!("{e:#}")))?;
    let component = Component::from_binary(&engine, &bytes)
        .map_err(|e| CommandError::Compile { path: wasm.to_path_buf(), reason: format!("{e:#}") })?;

    let instantiate_error =
        |e: wasmtime::Error| CommandError::Instantiate { path: wasm.to_path_buf(), reason: format!("{e:#}") };
    let mut linker = Linker::<CommandState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(instantiate_error)?;

    let argv0 = wasm.file_name().unwrap_or(wasm.as_os_str()).to_string_lossy();
    let mut wasi = WasiCtx::builder();
    wasi.inherit_stdio().inherit_env().arg(argv0).args(args);
    let state = CommandState { wasi: wasi.build(), table: ResourceTable::new() };
    let mut store = Store::new(&engine, state);
    let command = Command::instantiate(&mut store, &component, &linker).map_err(instantiate_error)?;

    match command.wasi_cli_run().call_run(&mut store) {
        Ok(Ok(())) => Ok(0),
        Ok(Err(())) => Ok(1),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(CommandError::Trap { path: wasm.to_path_buf(), reason: format!("{e:?}") }),
        },
    }
}

/// A binary core module has version 1 in its preamble; a component has layer 1 in the upper half of that word.
pub(crate) fn is_core_module(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_modules_are_recognised_by_their_preamble() {
        assert!(is_core_module(b"\0asm\x01\0\0\0"));
        assert!(!is_core_module(b"\0asm\x0d\0\x01\0"));
        assert!(!is_core_module(b"\0asm"));
    }

    #[test]
    fn a_core_module_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("core.wasm");
        std::fs::write(&path, b"\0asm\x01\0\0\0").expect("write");
        let err = run_command(&path, &[]).expect_err("core module");
        assert!(matches!(err, CommandError::CoreModule { .. }), "{err}");
        assert!(err.to_string().contains("cargo component"), "{err}");
    }
}

//! `bare-trip` — BENCH ONLY. A trip predicate written against the WIT bindings directly, without the SDK: it keeps
//! no window, runs no policy and never trips. `aegis-plugin`'s bench calls it next to `window-trip`, in the same
//! run, so the cost of the component call itself (wasmtime's call path, the host's binding and the breaker's
//! bookkeeping) is measured apart from the SDK's and the policy's. `make plugins` never installs it.

// Only the wasm32 build is a component; a test binary (native, or a WASI command) must not export the world.
#[cfg(all(target_arch = "wasm32", not(test)))]
#[allow(unsafe_code, clippy::all)]
mod export {
    wit_bindgen::generate!({ path: "../../wit", world: "aegis:policy/trip-predicate-plugin@0.1.0" });

    use aegis::policy::types::{Counts, PackedOutcome, ServiceInfo, WindowSummary};
    use exports::aegis::policy::{lifecycle, trip_predicate};

    struct Bare;

    impl lifecycle::Guest for Bare {
        fn init(_service: Option<ServiceInfo>, _config: Vec<(String, String)>) -> Result<(), String> {
            Ok(())
        }
    }

    impl trip_predicate::Guest for Bare {
        fn should_trip(_counts: Counts, _window: WindowSummary) -> trip_predicate::Verdict {
            trip_predicate::Verdict::StayClosed
        }

        fn should_trip_with_window(
            _counts: Counts,
            _window: WindowSummary,
            _outcomes: Vec<PackedOutcome>,
        ) -> trip_predicate::Verdict {
            trip_predicate::Verdict::StayClosed
        }

        fn trip_reason() -> String {
            String::new()
        }
    }

    export!(Bare);
}

//! Host-side bindings of the `aegis:policy` worlds, generated from `wit/`.
//!
//! The shared `types` and `host` interfaces are generated once (in `trip`) and reused by the other worlds, so the
//! store's data implements the `host` import exactly once.

pub mod trip {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "trip-predicate-plugin",
    });
}

/// A trip predicate that can also serve many services from one instance (the `trip-predicates` resource).
pub mod trip_shared {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "trip-predicates-plugin",
        with: {
            "aegis:policy/types": super::trip::aegis::policy::types,
            "aegis:policy/host": super::trip::aegis::policy::host,
        },
    });
}

pub mod recovery {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "recovery-strategy-plugin",
        with: {
            "aegis:policy/types": super::trip::aegis::policy::types,
            "aegis:policy/host": super::trip::aegis::policy::host,
        },
    });
}

pub mod log_rule {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "log-rule-plugin",
        with: {
            "aegis:policy/types": super::trip::aegis::policy::types,
            "aegis:policy/host": super::trip::aegis::policy::host,
        },
    });
}

pub mod anomaly {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "anomaly-scorer-plugin",
        with: {
            "aegis:policy/types": super::trip::aegis::policy::types,
            "aegis:policy/host": super::trip::aegis::policy::host,
        },
    });
}

pub mod alert {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "alert-formatter-plugin",
        with: {
            "aegis:policy/types": super::trip::aegis::policy::types,
            "aegis:policy/host": super::trip::aegis::policy::host,
        },
    });
}

pub use trip::aegis::policy::types;

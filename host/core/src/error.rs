//! Every error type of `aegis-core`. Owns the error vocabulary only; the code that raises an error lives in the
//! module that owns the concept (breaker, manager, backoff).

use std::fmt;

/// Why a breaker refused to admit a call. Cheap (`Copy`) because it is produced on the rejection fast path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejected {
    /// The breaker is open (or forced open): calls fail fast until the reset timeout elapses.
    #[error("circuit breaker is open")]
    Open,
    /// The breaker is half-open and all of its trial permits are in use.
    #[error("circuit breaker is half-open and has no free trial permit")]
    TooManyRequests,
}

/// The result error of [`Breaker::call`](crate::Breaker::call) and friends: either the breaker refused the call or the
/// call itself failed with `E`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError<E> {
    /// gobreaker `ErrOpenState`.
    #[error("circuit breaker is open")]
    CircuitOpen,
    /// gobreaker `ErrTooManyRequests`.
    #[error("circuit breaker is half-open and has no free trial permit")]
    TooManyRequests,
    /// The wrapped call ran and returned this error.
    #[error("{0}")]
    Inner(E),
}

impl<E> CallError<E> {
    /// True when the breaker refused the call (seed-002 `IsCircuitBreakerError`), false for the call's own error.
    pub fn is_circuit_breaker_error(&self) -> bool {
        !matches!(self, CallError::Inner(_))
    }

    /// The call's own error, if it ran.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CallError::Inner(e) => Some(e),
            CallError::CircuitOpen | CallError::TooManyRequests => None,
        }
    }

    /// The rejection reason, if the breaker refused the call.
    pub fn rejected(&self) -> Option<Rejected> {
        match self {
            CallError::CircuitOpen => Some(Rejected::Open),
            CallError::TooManyRequests => Some(Rejected::TooManyRequests),
            CallError::Inner(_) => None,
        }
    }
}

impl<E> From<Rejected> for CallError<E> {
    fn from(r: Rejected) -> Self {
        match r {
            Rejected::Open => CallError::CircuitOpen,
            Rejected::TooManyRequests => CallError::TooManyRequests,
        }
    }
}

/// Free-function form of [`CallError::is_circuit_breaker_error`], mirroring seed 002's `IsCircuitBreakerError(err)`.
pub fn is_circuit_breaker_error<E>(err: &CallError<E>) -> bool {
    err.is_circuit_breaker_error()
}

/// For type-erased errors (`anyhow`, `Box<dyn Error>`): true when any error in the `source()` chain is a [`Rejected`].
pub fn is_circuit_breaker_error_dyn(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.downcast_ref::<Rejected>().is_some() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A configuration value that cannot be turned into a valid domain type. Messages name the field and value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The YAML text does not parse into the configuration schema.
    #[error("invalid circuit-breaker configuration: {0}")]
    Yaml(String),
    /// A field parsed but its value is out of range or malformed.
    #[error("invalid value {value:?} for {field}: {reason}")]
    Invalid {
        /// Dotted path of the field (or environment variable name).
        field: String,
        /// The offending value as written.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(field: impl fmt::Display, value: impl fmt::Display, reason: impl fmt::Display) -> Self {
        ConfigError::Invalid { field: field.to_string(), value: value.to_string(), reason: reason.to_string() }
    }
}

/// Errors of the named-breaker [`Manager`](crate::Manager).
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// No breaker is registered under this name.
    #[error("no circuit breaker named {0:?}")]
    UnknownBreaker(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_error_classification() {
        let open: CallError<std::io::Error> = Rejected::Open.into();
        assert!(open.is_circuit_breaker_error());
        assert!(is_circuit_breaker_error(&open));
        assert_eq!(open.rejected(), Some(Rejected::Open));
        let inner: CallError<&str> = CallError::Inner("boom");
        assert!(!inner.is_circuit_breaker_error());
        assert_eq!(inner.to_string(), "boom");
        assert_eq!(inner.into_inner(), Some("boom"));
    }

    #[test]
    fn dyn_chain_detects_rejection() {
        #[derive(Debug, thiserror::Error)]
        #[error("wrapped")]
        struct Wrap(#[source] Rejected);
        let w = Wrap(Rejected::TooManyRequests);
        assert!(is_circuit_breaker_error_dyn(&w));
        let io = std::io::Error::other("x");
        assert!(!is_circuit_breaker_error_dyn(&io));
    }
}

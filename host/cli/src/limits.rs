//! Process limits a supervisor needs. Every check in flight, admin connection and tailed log file is a file
//! descriptor, and the usual soft limit of 1 024 is reached at a few hundred hung endpoints: past it every new check
//! fails with "too many open files", healthy services' included. So the soft limit is raised to the hard one at
//! start, as Go's runtime does for every Go server.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Highest soft limit asked for, even when the hard limit is unlimited.
const MOST_FILES: u64 = 1 << 20;

/// Raises the soft limit on open files to the hard limit (at most [`MOST_FILES`]). Logs what it could not do.
pub fn raise_open_files() {
    let limit = getrlimit(Resource::Nofile);
    let want = limit.maximum.unwrap_or(MOST_FILES).min(MOST_FILES);
    if limit.current.is_some_and(|c| c >= want) {
        return;
    }
    match setrlimit(Resource::Nofile, Rlimit { current: Some(want), maximum: limit.maximum }) {
        Ok(()) => tracing::debug!(from = ?limit.current, to = want, "raised the open-files limit"),
        Err(e) => tracing::warn!(limit = ?limit.current, "cannot raise the open-files limit: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_reaches_the_hard_one() {
        raise_open_files();
        let limit = getrlimit(Resource::Nofile);
        let want = limit.maximum.unwrap_or(MOST_FILES).min(MOST_FILES);
        assert!(limit.current.is_some_and(|c| c >= want), "{limit:?}");
    }
}

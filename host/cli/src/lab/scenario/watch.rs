//! Tells a plugin's answer from the built-in's: the adapters answer with their fallback policy when a plugin traps,
//! times out or gives an invalid answer, which is right for a live host and wrong for a test. The host's call
//! counters say which calls failed; a scenario step whose call failed is a mismatch of its own.

use aegis_plugin::{CallResult, PluginHost};

/// The failed calls of one plugin since the last look.
#[derive(Debug)]
pub(crate) struct FailedCalls<'a> {
    host: &'a PluginHost,
    plugin: &'a str,
    seen: [u64; CallResult::ALL.len()],
}

impl<'a> FailedCalls<'a> {
    pub(crate) fn new(host: &'a PluginHost, plugin: &'a str) -> Self {
        let mut watch = FailedCalls { host, plugin, seen: [0; CallResult::ALL.len()] };
        watch.take();
        watch
    }

    /// What failed since the last call, e.g. `1 trap`; `None` when every call answered.
    pub(crate) fn take(&mut self) -> Option<String> {
        let stats = self.host.stats();
        let stats = stats.iter().find(|s| s.plugin == self.plugin)?;
        let mut failed = Vec::new();
        for (seen, result) in self.seen.iter_mut().zip(CallResult::ALL) {
            let now = stats.calls(result);
            let new = now.saturating_sub(*seen);
            *seen = now;
            if result != CallResult::Ok && new > 0 {
                failed.push(format!("{new} {}", result.as_str()));
            }
        }
        (!failed.is_empty()).then(|| format!("{} (the built-in policy answered instead)", failed.join(", ")))
    }
}

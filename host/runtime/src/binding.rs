//! How a policy was bound to its plugin, in the log: the one line every binding site (trip predicates, recovery
//! strategies, log rules, anomaly scorers, the alert formatter) writes. Knows only the plugin host's list of names;
//! must not bind anything itself.

use aegis_plugin::PluginHost;

/// Logs how a policy was bound: to its loaded plugin, or waiting for a plugin that is not loaded (a typo, or one
/// still to be copied in) while the built-in decides.
pub(crate) fn log_binding(plugins: &PluginHost, policy: &str, subject: &str, plugin: &str, loaded: bool) {
    if loaded {
        tracing::info!(subject, plugin, "{policy} bound to plugin");
    } else {
        let names: Vec<String> = plugins.plugins().into_iter().map(|p| p.name).collect();
        let names = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
        tracing::warn!(
            subject,
            plugin,
            "no plugin named `{plugin}` is loaded (loaded: {names}); the built-in {policy} decides until it appears"
        );
    }
}

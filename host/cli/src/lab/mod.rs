//! The policy lab's commands for plugin authors: `plugin test` runs a plugin through scenario files ([`scenario`]),
//! `plugin new` writes a plugin crate that builds on its own ([`scaffold`]). Both only read and write files and call
//! the plugin in the same sandbox as the live host; neither starts a supervisor.

pub(crate) mod scaffold;
pub(crate) mod scenario;

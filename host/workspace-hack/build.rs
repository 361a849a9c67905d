// A build script is required for cargo to consider the crate's build-dependencies (the features build scripts and
// proc-macros of the workspace use).
fn main() {}

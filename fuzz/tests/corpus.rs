//! Replays the committed fuzz inputs on stable: every file of `corpus/<target>/` (inputs libFuzzer kept for their
//! coverage) and `artifacts/<target>/` (inputs that crashed once, fixed since) goes through its target's function,
//! the same one the libFuzzer binary calls. A property that fails panics, naming the file.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_committed_input_replays_without_a_failure() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut total = 0;
    for (name, target) in aegis_fuzz::TARGETS {
        let inputs: Vec<PathBuf> =
            ["corpus", "artifacts"].iter().flat_map(|kind| files(&root.join(kind).join(name))).collect();
        assert!(!inputs.is_empty(), "no corpus for the `{name}` target in {}", root.join("corpus").display());
        for path in &inputs {
            let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if let Err(panic) = std::panic::catch_unwind(|| target(&data)) {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                panic!("{}: target `{name}` failed: {message}", path.display());
            }
        }
        eprintln!("{name}: {} inputs replayed", inputs.len());
        total += inputs.len();
    }
    assert!(total > 0);
}

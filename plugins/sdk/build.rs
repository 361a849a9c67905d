//! Embeds the WIT contract (`../../wit/*.wit`) into the SDK's export macros.
//!
//! `wit_bindgen::generate!` must run in the plugin's own crate (a component may carry the type information of exactly
//! one world), and its `inline:` option only takes a string literal. So the macros the SDK exports are written here,
//! with the WIT text pasted in as a raw string literal.

use std::{env, fs, path::PathBuf};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    // A packaged SDK carries its own copy in `wit/`; inside the repository the top-level `wit/` is the source.
    let wit_dir = [manifest.join("wit"), manifest.join("../../wit")]
        .into_iter()
        .find(|d| d.is_dir())
        .expect("the aegis WIT directory (plugins/sdk/wit or wit/) exists");
    println!("cargo:rerun-if-changed={}", wit_dir.display());
    println!("cargo:rerun-if-changed=src/export.rs.in");

    let mut files: Vec<PathBuf> = fs::read_dir(&wit_dir)
        .expect("WIT directory is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wit"))
        .collect();
    files.sort();

    // Every file of the package starts with the same `package` line; inline WIT must declare it once.
    let mut wit = String::new();
    let mut package_seen = false;
    for file in &files {
        let text = fs::read_to_string(file).expect("WIT file is readable");
        for line in text.lines() {
            if line.trim_start().starts_with("package ") {
                if package_seen {
                    continue;
                }
                package_seen = true;
            }
            wit.push_str(line);
            wit.push('\n');
        }
    }
    assert!(!wit.contains("\"##"), "WIT text must not contain the raw-string terminator");

    let template = fs::read_to_string(manifest.join("src/export.rs.in")).expect("src/export.rs.in is readable");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("export.rs");
    fs::write(out, template.replace("__AEGIS_WIT__", &format!("r##\"{wit}\"##"))).expect("OUT_DIR is writable");
}

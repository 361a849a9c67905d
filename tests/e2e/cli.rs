//! The command line: config validation and its exit status, the seed configs, and plugin inspection.

use std::process::Command;

use aegis_tests::{binary, install_plugin, workspace_root};

fn aegis(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("aegis-host")).args(args).output().expect("run aegis-host");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_shipped_config_checks() {
    let dir = workspace_root().join("config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let (code, stdout, stderr) = aegis(&["check-config", path.to_str().expect("utf-8")]);
            assert_eq!(code, 0, "{}: {stdout}{stderr}", path.display());
            assert!(stdout.contains("service ") || stdout.contains("logs: "), "{stdout}");
            checked += 1;
        }
    }
    assert!(checked >= 3, "found {checked} configs");
}

#[test]
fn unknown_key_exits_2_naming_file_line_and_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("bad.yaml");
    std::fs::write(&file, "services:\n  - name: a\n    type: http\n    endpoint: http://127.0.0.1:1/\n    actions:\n      circuitBreaker:\n        resetTimout: 5s\n").expect("write");
    for args in [vec!["check-config", file.to_str().expect("utf-8")], vec!["--config", file.to_str().expect("utf-8")]] {
        let (code, _, stderr) = aegis(&args);
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(&format!("{}:7:9:", file.display())), "{stderr}");
        assert!(stderr.contains("unknown field `resetTimout`"), "{stderr}");
    }
}

#[test]
fn invalid_value_exits_2_naming_the_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("bad.yaml");
    std::fs::write(&file, "- name: a\n  type: http\n  endpoint: not a url\n").expect("write");
    let (code, _, stderr) = aegis(&["check-config", file.to_str().expect("utf-8")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("services[0] (a).endpoint") && stderr.contains("not a URL"), "{stderr}");
}

#[test]
fn plugin_check_reports_the_world() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wasm = install_plugin("window-trip", tmp.path());
    let (code, stdout, stderr) = aegis(&["plugin", "check", wasm.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("trip-predicate plugin `window-trip`"), "{stdout}");

    let not_a_component = tmp.path().join("core.wasm");
    std::fs::write(&not_a_component, b"\0asm\x01\0\0\0").expect("write");
    let (code, _, stderr) = aegis(&["plugin", "check", not_a_component.to_str().expect("utf-8")]);
    assert_ne!(code, 0);
    assert!(stderr.contains("core.wasm") && stderr.contains("not a loadable WASM component"), "{stderr}");
}

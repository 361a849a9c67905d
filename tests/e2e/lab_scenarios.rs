//! The policy lab's author tools: `aegis-host plugin test` runs the bundled plugins through their scenarios and fails
//! a wrong expectation (or a trapping plugin) with a diff; `aegis-host plugin new` writes a crate, outside the repository, that builds for
//! wasm32-wasip2, passes its own unit test and its generated scenario.

use std::path::Path;
use std::process::Command;

use aegis_tests::{binary, built_plugins, workspace_root};

const BUNDLED: [&str; 5] = ["window-trip", "escalating-restart", "panic-detector", "ewma-latency", "chat-formatter"];
const KINDS: [&str; 5] = ["trip-predicate", "recovery-strategy", "log-rule", "anomaly-scorer", "alert-formatter"];

/// Runs aegis-host in `dir` and returns (exit status, stdout, stderr).
fn aegis_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("aegis-host")).current_dir(dir).args(args).output().expect("run aegis-host");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn wasm(crate_name: &str) -> String {
    built_plugins().join(format!("{}.wasm", crate_name.replace('-', "_"))).display().to_string()
}

#[test]
fn bundled_plugins_pass_their_scenarios() {
    let root = workspace_root();
    for plugin in BUNDLED {
        let scenarios = format!("plugins/{plugin}/scenarios");
        let (code, stdout, stderr) = aegis_in(&root, &["plugin", "test", &wasm(plugin), &scenarios]);
        assert_eq!(code, 0, "{plugin}:\n{stdout}\n{stderr}");
        assert!(stdout.contains("passed, 0 failed, 0 invalid") && !stdout.contains("FAIL"), "{stdout}");
    }
}

#[test]
fn a_wrong_expectation_fails_with_a_diff_and_a_bad_file_with_its_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let wrong = tmp.path().join("wrong.yaml");
    std::fs::write(
        &wrong,
        "name: opens after one failure (it does not)\nconfig:\n  window: 4\n  failures: 2\nsteps:\n  - outcome: ok\n  \
         - outcome: fail\n    expect:\n      state: open\n  - outcome: fail\n    expect:\n      state: open\n",
    )
    .expect("write scenario");
    let (code, stdout, stderr) = aegis_in(tmp.path(), &["plugin", "test", &wasm("window-trip"), "wrong.yaml"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    for part in [
        "FAIL  wrong.yaml: opens after one failure (it does not)",
        "wrong.yaml:7: step 2 at 1s",
        "breaker state",
        "expected: open",
        "actual:   closed",
        "inputs before it:",
        "0s  ok 10ms",
        "1s  fail 10ms      → closed",
        "1 scenario: 0 passed, 1 failed, 0 invalid",
    ] {
        assert!(stdout.contains(part), "{part:?} missing from:\n{stdout}");
    }
    assert!(!stdout.contains("wrong.yaml:10"), "the third step opened the breaker as expected:\n{stdout}");

    // A trap is not an answer: live, the built-in policy would have decided.
    let trap = tmp.path().join("trap.yaml");
    std::fs::write(
        &trap,
        "config: {mode: panic, when: failures}\nsteps:\n  - outcome: ok\n  - outcome: fail\n    expect: {state: closed}\n",
    )
    .expect("write scenario");
    let (code, stdout, stderr) = aegis_in(tmp.path(), &["plugin", "test", &wasm("hostile"), "trap.yaml"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "trap.yaml:4: step 2 at 1s\n    the plugin's call\n      expected: an answer\n      actual:   1 trap"
        ),
        "{stdout}"
    );

    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "steps:\n  - outcome: ok\n  - outcom: fail\n").expect("write scenario");
    let (code, stdout, stderr) = aegis_in(tmp.path(), &["plugin", "test", &wasm("window-trip"), "bad.yaml"]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stderr.contains("bad.yaml:3:5: steps[1]: unknown field `outcom`"), "{stderr}");
}

#[test]
fn plugin_new_creates_crates_that_build_outside_the_repository_and_pass_their_tests() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = workspace_root();
    let outside = tmp.path().canonicalize().expect("canonical tempdir");
    assert!(!outside.starts_with(root.canonicalize().expect("canonical root")), "the crate must lie outside");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // The SDK's dependencies are already built there; the new crates' own artifacts have names of their own.
    let target_dir = root.join("plugins").join("target");
    for kind in KINDS {
        let name = format!("my-{kind}");
        let dir = outside.display().to_string();
        let (code, stdout, stderr) = aegis_in(&outside, &["plugin", "new", &name, "--kind", kind, "--dir", &dir]);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        let crate_dir = outside.join(&name);
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).expect("Cargo.toml written");
        assert!(manifest.contains("[workspace]") && manifest.contains("plugins/sdk"), "{manifest}");

        let run = |args: &[&str]| {
            let out = Command::new(&cargo)
                .current_dir(&crate_dir)
                .args(args)
                .env("CARGO_TARGET_DIR", &target_dir)
                .output()
                .expect("run cargo");
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(out.status.success(), "cargo {args:?} in {}:\n{text}", crate_dir.display());
            text
        };
        let tested = run(&["test"]);
        assert!(tested.contains("test result: ok. 1 passed"), "{kind}: the unit test ran:\n{tested}");
        run(&["build", "--release", "--target", "wasm32-wasip2"]);

        let built = target_dir.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
        let built = built.display().to_string();
        let (code, stdout, stderr) = aegis_in(&crate_dir, &["plugin", "test", &built, "scenarios/basic.yaml"]);
        assert_eq!(code, 0, "{kind}:\n{stdout}\n{stderr}");
        assert!(stdout.contains(&format!("1 scenario: 1 passed, 0 failed, 0 invalid ({kind} plugin")), "{stdout}");
    }

    let (code, _, stderr) = aegis_in(&outside, &["plugin", "new", "my-trip-predicate", "--kind", "trip-predicate"]);
    assert_eq!(code, 2, "an existing crate is not overwritten");
    assert!(stderr.contains("exists and is not empty"), "{stderr}");
    let (code, _, stderr) = aegis_in(&outside, &["plugin", "new", "My_Trip", "--kind", "trip-predicate"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("invalid plugin name \"My_Trip\""), "{stderr}");
}

//! `aegis-host plugin new NAME --kind KIND [--dir D]`: writes a plugin crate — Cargo.toml, a working minimal policy
//! with a unit test, a scenario for `plugin test`, the toolchain file and the cargo runner for WASI tests — that
//! builds where it is written, inside this repository or outside it.
//!
//! The crate is a workspace of its own, so no other Cargo.toml needs an edit. The SDK is not published: the crate
//! depends on it by path — relative when the crate lies in the same repository as the SDK, absolute otherwise — and
//! the SDK is the one of the repository this binary was built from unless `--sdk` names another. Its lockfile starts
//! as a copy of the SDK workspace's, so the crate builds with the dependency versions the SDK is tested with (and
//! without the network when those are already downloaded). The file texts are templates under `host/cli/templates/`.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use clap::ValueEnum;

use crate::EXIT_CONFIG;

/// The policy kinds, as `--kind` names them (the WIT interface names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kind {
    TripPredicate,
    RecoveryStrategy,
    LogRule,
    AnomalyScorer,
    AlertFormatter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::TripPredicate => "trip-predicate",
            Kind::RecoveryStrategy => "recovery-strategy",
            Kind::LogRule => "log-rule",
            Kind::AnomalyScorer => "anomaly-scorer",
            Kind::AlertFormatter => "alert-formatter",
        }
    }

    /// The policy (src/lib.rs) and scenario (scenarios/basic.yaml) templates.
    fn templates(self) -> (&'static str, &'static str) {
        match self {
            Kind::TripPredicate => (
                include_str!("../../templates/plugin/trip-predicate.rs.in"),
                include_str!("../../templates/plugin/trip-predicate.yaml.in"),
            ),
            Kind::RecoveryStrategy => (
                include_str!("../../templates/plugin/recovery-strategy.rs.in"),
                include_str!("../../templates/plugin/recovery-strategy.yaml.in"),
            ),
            Kind::LogRule => (
                include_str!("../../templates/plugin/log-rule.rs.in"),
                include_str!("../../templates/plugin/log-rule.yaml.in"),
            ),
            Kind::AnomalyScorer => (
                include_str!("../../templates/plugin/anomaly-scorer.rs.in"),
                include_str!("../../templates/plugin/anomaly-scorer.yaml.in"),
            ),
            Kind::AlertFormatter => (
                include_str!("../../templates/plugin/alert-formatter.rs.in"),
                include_str!("../../templates/plugin/alert-formatter.yaml.in"),
            ),
        }
    }
}

const CARGO_TOML: &str = include_str!("../../templates/plugin/Cargo.toml.in");
const CARGO_CONFIG: &str = include_str!("../../templates/plugin/cargo-config.toml.in");
const GITIGNORE: &str = include_str!("../../templates/plugin/gitignore.in");
/// The repository's own toolchain file: the pinned Rust with the WASI targets.
const TOOLCHAIN: &str = include_str!("../../../../rust-toolchain.toml");
/// The SDK of the repository this binary was built from.
const BUILT_WITH_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../plugins/sdk");

/// Why a crate cannot be written (exit status 2).
#[derive(Debug)]
struct ScaffoldError(String);

impl fmt::Display for ScaffoldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn error(message: impl Into<String>) -> ScaffoldError {
    ScaffoldError(message.into())
}

pub(crate) fn new(name: &str, kind: Kind, dir: &Path, sdk: Option<&Path>) -> ExitCode {
    match create(name, kind, dir, sdk) {
        Ok(created) => {
            print!("{created}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("aegis-host: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// What was written, and what to do next.
struct Created {
    name: String,
    kind: Kind,
    dir: PathBuf,
    sdk: String,
    wasm: String,
}

impl fmt::Display for Created {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "created the {} plugin `{}` in {}", self.kind.as_str(), self.name, self.dir.display())?;
        writeln!(f, "  SDK: {}", self.sdk)?;
        writeln!(f, "next:")?;
        writeln!(f, "  cd {}", self.dir.display())?;
        writeln!(f, "  cargo test                                      # the policy's unit test")?;
        writeln!(f, "  cargo build --release --target wasm32-wasip2    # the component")?;
        writeln!(f, "  aegis-host plugin test {} scenarios/", self.wasm)?;
        writeln!(
            f,
            "The crate is a workspace of its own; to build it with the bundled plugins instead, delete its \
             [workspace] table and add its directory to `members` in plugins/Cargo.toml."
        )
    }
}

fn create(name: &str, kind: Kind, dir: &Path, sdk: Option<&Path>) -> Result<Created, ScaffoldError> {
    check_name(name)?;
    let sdk = sdk_dir(sdk)?;
    let dest = dir.join(name);
    if dest.exists() && std::fs::read_dir(&dest).map_or(true, |mut d| d.next().is_some()) {
        return Err(error(format!("{} exists and is not empty; choose another name or --dir", dest.display())));
    }
    let write_err = |path: &Path, e: std::io::Error| error(format!("cannot write {}: {e}", path.display()));
    for sub in ["src", "scenarios", ".cargo"] {
        let path = dest.join(sub);
        std::fs::create_dir_all(&path).map_err(|e| write_err(&path, e))?;
    }
    let dest = dest.canonicalize().map_err(|e| error(format!("cannot resolve {}: {e}", dest.display())))?;
    let sdk_path = sdk_path_from(&dest, &sdk);
    let dependency = format!("aegis-plugin-sdk = {{ path = {} }}", toml_string(&sdk_path.to_string_lossy()));
    let runner = std::env::current_exe().map_err(|e| error(format!("cannot find this aegis-host binary: {e}")))?;
    let crate_name = name.replace('-', "_");
    let type_name: String =
        name.split('-').filter(|p| !p.is_empty()).map(|p| p[..1].to_ascii_uppercase() + &p[1..]).collect();
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{Type}}", &type_name)
            .replace("{{kind}}", kind.as_str())
            .replace("{{sdk}}", &dependency)
            .replace("{{runner}}", &toml_string(&runner.to_string_lossy()))
    };
    let (policy, scenario) = kind.templates();
    let mut files = vec![
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(policy)),
        ("scenarios/basic.yaml", fill(scenario)),
        (".cargo/config.toml", fill(CARGO_CONFIG)),
        ("rust-toolchain.toml", TOOLCHAIN.to_owned()),
        (".gitignore", GITIGNORE.to_owned()),
    ];
    if let Some(parent) = sdk.parent()
        && let Ok(lock) = std::fs::read_to_string(parent.join("Cargo.lock"))
    {
        files.push(("Cargo.lock", lock));
    }
    for (file, text) in files {
        let path = dest.join(file);
        std::fs::write(&path, text).map_err(|e| write_err(&path, e))?;
    }
    Ok(Created {
        name: name.to_owned(),
        kind,
        sdk: format!("path {}", sdk_path.display()),
        wasm: format!("target/wasm32-wasip2/release/{crate_name}.wasm"),
        dir: dest,
    })
}

/// A crate name that is also a plugin name: lowercase letters, digits and single dashes, starting with a letter.
fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(error(format!(
            "invalid plugin name {name:?}: use lowercase letters, digits and single dashes, starting with a letter \
             (e.g. `my-trip`), at most 64 characters"
        )))
    }
}

/// The SDK crate's directory: `--sdk`, or the one this binary was built with.
fn sdk_dir(given: Option<&Path>) -> Result<PathBuf, ScaffoldError> {
    let dir = given.unwrap_or(Path::new(BUILT_WITH_SDK));
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    if !manifest.contains("name = \"aegis-plugin-sdk\"") {
        return Err(error(format!(
            "no Aegis plugin SDK at {} (the crate `aegis-plugin-sdk`, plugins/sdk of the Aegis repository); pass \
             --sdk <DIR>",
            dir.display()
        )));
    }
    dir.canonicalize().map_err(|e| error(format!("cannot resolve {}: {e}", dir.display())))
}

/// The SDK as the crate at `dest` names it: relative within one repository (the SDK's `plugins/` parent), so the
/// pair can move together, absolute otherwise. Both paths are canonical.
fn sdk_path_from(dest: &Path, sdk: &Path) -> PathBuf {
    let repository = sdk.parent().and_then(Path::parent);
    if repository.is_none_or(|r| !dest.starts_with(r)) {
        return sdk.to_owned();
    }
    let common = dest.components().zip(sdk.components()).take_while(|(a, b)| a == b).count();
    let mut relative = PathBuf::new();
    for _ in dest.components().skip(common) {
        relative.push(Component::ParentDir);
    }
    relative.extend(sdk.components().skip(common));
    relative
}

/// `s` as a TOML basic string: JSON's string escapes are all TOML's too (serde_json writes no `\/`).
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_crate_and_plugin_names() {
        for good in ["my-trip", "trip2", "a"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "My-trip", "2trip", "my_trip", "trip-", "a--b", "../x"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sdk_path_is_relative_inside_the_repository_and_absolute_outside() {
        let sdk = Path::new("/repo/plugins/sdk");
        assert_eq!(sdk_path_from(Path::new("/repo/plugins/mine"), sdk), PathBuf::from("../sdk"));
        assert_eq!(sdk_path_from(Path::new("/repo/extra/deep/mine"), sdk), PathBuf::from("../../../plugins/sdk"));
        assert_eq!(sdk_path_from(Path::new("/tmp/mine"), sdk), PathBuf::from("/repo/plugins/sdk"));
    }

    #[test]
    fn toml_strings_escape_quotes_backslashes_and_controls() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
        assert_eq!(toml_string("a\tb/c"), r#""a\tb/c""#);
    }
}

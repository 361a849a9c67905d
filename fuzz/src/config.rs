//! The config loader: YAML text in, a validated config or an error out. Never a panic; a YAML error is located
//! inside the text (line and column from 1, at most one line past the end), a validation error names its field;
//! an accepted config can be summarised and printed.

use std::path::Path;

use aegis_runtime::{Config, ConfigError};

const FILE: &str = "fuzz.yaml";

pub fn config(data: &[u8]) {
    // The loader reads files as UTF-8 (`read_to_string`), so other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::from_yaml(Path::new(FILE), text) {
        Ok(config) => {
            let _ = config.warnings();
            let _ = config.summary().to_string();
            let _ = format!("{config:?}");
        }
        Err(e) => check_error(text, &e),
    }
}

fn check_error(text: &str, e: &ConfigError) {
    let shown = e.to_string();
    assert!(shown.starts_with(FILE), "the error does not name the file: {shown}");
    match e {
        ConfigError::Parse { line, column, message, .. } => {
            // YAML breaks lines at `\r\n`, `\r` and `\n`; the line after the last break is the end of the text.
            let lines = text.replace("\r\n", "\n").bytes().filter(|b| matches!(b, b'\r' | b'\n')).count() + 1;
            assert!((1..=lines).contains(line), "line {line} outside the text's {lines} lines: {shown}");
            assert!(*column >= 1, "column 0: {shown}");
            assert!(!message.is_empty(), "a parse error without a message: {shown}");
        }
        ConfigError::Invalid { field, message, .. } => {
            assert!(!field.is_empty(), "a validation error without its field: {shown}");
            assert!(!message.is_empty(), "a validation error without a message: {shown}");
        }
        ConfigError::Read { .. } => panic!("from_yaml read a file: {shown}"),
    }
}

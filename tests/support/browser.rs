//! A headless Chromium driven through chromedriver's WebDriver API: a few JSON requests made with the blocking HTTP
//! client the other helpers use, enough for the console test and the console bench (open a page, run a script, click,
//! accept a confirmation, take a screenshot). Debian's `chromium` and `chromium-driver` packages provide both.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::{Proc, free_port, get_text, http, wait_until};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A WebDriver session on a chromedriver started for it (stopped with it).
#[derive(Debug)]
pub struct Browser {
    base: String,
    _driver: Proc,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; `None` (after saying why) when they are not installed
    /// and this is not CI.
    pub fn start(log_dir: &Path) -> Option<Browser> {
        if !Path::new(CHROMIUM).is_file() || !Path::new(CHROMEDRIVER).is_file() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{CHROMIUM} or {CHROMEDRIVER} is missing in CI: .ci/run installs chromium and chromium-driver"
            );
            eprintln!("SKIPPED: the console browser test needs `chromium` and `chromium-driver` (apt-get install)");
            return None;
        }
        let port = free_port();
        let driver =
            Proc::start(Path::new(CHROMEDRIVER), &[&format!("--port={port}")], &log_dir.join("chromedriver.log"));
        let url = format!("http://127.0.0.1:{port}");
        assert!(
            wait_until(Duration::from_secs(20), || get_text(&format!("{url}/status"))
                .is_some_and(|s| s.contains("\"ready\":true"))),
            "chromedriver did not get ready: {}",
            driver.log_text()
        );
        let profile = tempfile::tempdir().expect("profile dir");
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--window-size=1100,720".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        } } });
        let response: Value = http()
            .post(format!("{url}/session"))
            .json(&caps)
            .timeout(Duration::from_secs(60))
            .send()
            .and_then(|r| r.json())
            .expect("new session");
        let id = response["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {response}"));
        Some(Browser { base: format!("{url}/session/{id}"), _driver: driver, _profile: profile })
    }

    pub fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let client = http();
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => client.get(url),
            "DELETE" => client.delete(url),
            _ => client.post(url).json(&body),
        };
        let value: Value =
            request.timeout(Duration::from_secs(30)).send().and_then(|r| r.json()).expect("WebDriver call");
        value["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    pub fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", json!({ "script": script, "args": [] }))
    }

    /// Text of the first element matching `css`, or `None`.
    pub fn text(&self, css: &str) -> Option<String> {
        let v =
            self.script(&format!("const e = document.querySelector({}); return e ? e.textContent : null;", json!(css)));
        v.as_str().map(str::to_owned)
    }

    /// Clicks `css` after the script returns, so a confirmation dialog it opens does not fail the script.
    pub fn click(&self, css: &str) {
        let v = self.script(&format!(
            "const e = document.querySelector({}); setTimeout(() => e.click(), 0); return !!e;",
            json!(css)
        ));
        assert_eq!(v, json!(true), "click {css}");
    }

    /// Accepts the confirmation dialog an action opens.
    pub fn accept_dialog(&self) {
        assert!(
            wait_until(Duration::from_secs(5), || self.call("GET", "/alert/text", Value::Null).is_string()),
            "no confirmation dialog"
        );
        self.call("POST", "/alert/accept", json!({}));
    }

    pub fn screenshot(&self, path: &Path) {
        let b64 = self.call("GET", "/screenshot", Value::Null);
        let png =
            base64::engine::general_purpose::STANDARD.decode(b64.as_str().expect("screenshot data")).expect("base64");
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http().delete(&self.base).timeout(Duration::from_secs(10)).send();
    }
}

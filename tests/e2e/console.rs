//! The web console in a real browser: Debian's headless Chromium driven through chromedriver's WebDriver API (a few
//! JSON requests, made with the blocking HTTP client the other tests use). The overview turns a row OPEN without a
//! reload when the service goes down, an action without a token is refused, reset with a token closes the breaker,
//! and screenshots of the overview and a service page land in `target/` (and in `docs/` with
//! `AEGIS_CONSOLE_SCREENSHOT=docs`, as `make console-screenshot` does).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aegis_tests::{
    Proc, free_port, get_text, http, post, start_aegis_host, start_http_service, wait_until, workspace_root,
};
use base64::Engine as _;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A WebDriver session on a chromedriver this test started.
struct Browser {
    base: String,
    _driver: Proc,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; `None` (after saying why) when they are not installed
    /// and this is not CI.
    fn start(log_dir: &Path) -> Option<Browser> {
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

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
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

    fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", json!({ "script": script, "args": [] }))
    }

    /// Text of the first element matching `css`, or `None`.
    fn text(&self, css: &str) -> Option<String> {
        let v =
            self.script(&format!("const e = document.querySelector({}); return e ? e.textContent : null;", json!(css)));
        v.as_str().map(str::to_owned)
    }

    /// Clicks `css` after the script returns, so a confirmation dialog it opens does not fail the script.
    fn click(&self, css: &str) {
        let v = self.script(&format!(
            "const e = document.querySelector({}); setTimeout(() => e.click(), 0); return !!e;",
            json!(css)
        ));
        assert_eq!(v, json!(true), "click {css}");
    }

    /// Accepts the confirmation dialog an action opens.
    fn accept_dialog(&self) {
        assert!(
            wait_until(Duration::from_secs(5), || self.call("GET", "/alert/text", Value::Null).is_string()),
            "no confirmation dialog"
        );
        self.call("POST", "/alert/accept", json!({}));
    }

    fn screenshot(&self, path: &Path) {
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

fn target_dir() -> PathBuf {
    let dir = workspace_root().join("target").join("console");
    std::fs::create_dir_all(&dir).expect("create target/console");
    dir
}

#[test]
fn console_shows_live_state_and_guards_actions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_service, base) = start_http_service(&tmp.path().join("service.log"));
    let admin = format!("127.0.0.1:{}", free_port());
    let config = tmp.path().join("aegis.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
admin: {{address: "{admin}", token: "t0k3n"}}
storage: {{path: "{db}"}}
plugins: {{dir: "{plugins}"}}
services:
  - name: example-service
    type: http
    endpoint: "{base}/health"
    interval: 200ms
    timeout: 1s
    actions:
      onFailure: ignore
      circuitBreaker: {{failureThreshold: 2, resetTimeout: 60s, successThreshold: 1}}
"#,
            db = tmp.path().join("aegis.db").display(),
            plugins = tmp.path().join("plugins").display(),
        ),
    )
    .expect("write config");
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let console = format!("http://{admin}/");
    assert!(wait_until(Duration::from_secs(15), || get_text(&console).is_some()), "console up: {}", host.log_text());

    let Some(browser) = Browser::start(tmp.path()) else { return };
    browser.goto(&console);
    let badge = r#"tr[data-service="example-service"] .st .badge"#;
    assert!(
        wait_until(Duration::from_secs(10), || browser.text(badge).as_deref() == Some("CLOSED")),
        "the row starts CLOSED: {:?}",
        browser.text("main")
    );
    assert!(
        wait_until(Duration::from_secs(10), || browser.script("return document.body.dataset.live || null")
            == json!("1")),
        "live stream open"
    );
    // A marker that a reload would wipe.
    browser.script("window.aegisMarker = 42; return true;");

    post(&format!("{base}/down"));
    assert!(
        wait_until(Duration::from_secs(10), || browser.text(badge).as_deref() == Some("OPEN")),
        "the row turns OPEN: {:?}",
        browser.text(badge)
    );
    assert_eq!(browser.script("return window.aegisMarker || null"), json!(42), "updated without a reload");
    assert!(
        wait_until(Duration::from_secs(5), || browser.text("#status").as_deref() == Some("unhealthy")),
        "the overall health follows"
    );
    let dir = target_dir();
    browser.screenshot(&dir.join("overview.png"));

    // Without a token the API refuses, and the page says so.
    browser.click(r#"tr[data-service="example-service"] button[data-act="reset"]"#);
    browser.accept_dialog();
    assert!(
        wait_until(Duration::from_secs(5), || browser.text("#msg").is_some_and(|m| m.contains("Refused (401"))),
        "refusal shown: {:?}",
        browser.text("#msg")
    );
    assert_eq!(browser.text(badge).as_deref(), Some("OPEN"));

    post(&format!("{base}/up"));
    browser.script(r##"document.querySelector("#token").value = "t0k3n"; return true;"##);
    browser.click("#save-token");
    assert!(wait_until(Duration::from_secs(2), || browser.text("#mode").as_deref() == Some("token set")));
    browser.click(r#"tr[data-service="example-service"] button[data-act="reset"]"#);
    browser.accept_dialog();
    assert!(
        wait_until(Duration::from_secs(10), || browser.text(badge).as_deref() == Some("CLOSED")),
        "reset closes: {:?} {:?}",
        browser.text(badge),
        browser.text("#msg")
    );
    assert!(browser.text("#msg").is_some_and(|m| m.starts_with("Done")));
    // The token lives in sessionStorage only, never in a cookie.
    assert_eq!(browser.script("return document.cookie"), json!(""));

    browser.goto(&format!("http://{admin}/services/example-service"));
    assert!(browser.text("h1").is_some_and(|t| t.contains("example-service")));
    assert!(browser.text("main").is_some_and(|t| t.contains("breaker-opened")), "events listed");
    assert_eq!(browser.script("return document.querySelectorAll('svg.timeline rect').length > 0"), json!(true));
    browser.screenshot(&dir.join("service.png"));
    browser.goto(&format!("http://{admin}/alerts"));
    assert!(browser.text("h1").is_some_and(|t| t.contains("Alerts")));
    browser.goto(&format!("http://{admin}/plugins"));
    assert!(browser.text("h1").is_some_and(|t| t.contains("Plugins")));

    // Page weight: the overview's HTML with one service, its script and its stylesheet.
    let weight: usize = ["", "assets/console.js", "assets/console.css"]
        .iter()
        .map(|p| get_text(&format!("{console}{p}")).map_or(0, |t| t.len()))
        .sum();
    eprintln!("console page weight (HTML with 1 service + JS + CSS): {weight} bytes");
    assert!(weight < 100_000);

    if std::env::var("AEGIS_CONSOLE_SCREENSHOT").as_deref() == Ok("docs") {
        let docs = workspace_root().join("docs");
        std::fs::create_dir_all(&docs).expect("create docs/");
        std::fs::copy(dir.join("overview.png"), docs.join("console.png")).expect("copy screenshot to docs/");
    }
}

/// The checks endpoint and the console's headers, without a browser.
#[test]
fn console_pages_escape_names_and_send_a_csp() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_service, base) = start_http_service(&tmp.path().join("service.log"));
    let admin = format!("127.0.0.1:{}", free_port());
    let config = tmp.path().join("aegis.yaml");
    std::fs::write(
        &config,
        format!(
            "admin: {{address: \"{admin}\"}}\nstorage: {{path: \"{db}\"}}\nplugins: {{dir: \"{plugins}\"}}\nservices:\n  - {{name: \"<b>x</b>\", type: http, endpoint: \"{base}/health\", interval: 100ms, actions: {{onFailure: ignore}}}}\n",
            db = tmp.path().join("aegis.db").display(),
            plugins = tmp.path().join("plugins").display(),
        ),
    )
    .expect("write config");
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let checks = format!("http://{admin}/api/v1/services/%3Cb%3Ex%3C%2Fb%3E/checks");
    assert!(
        wait_until(Duration::from_secs(15), || {
            get_text(&checks)
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["checks"].as_array().is_some_and(|a| a.len() >= 2))
        }),
        "checks recorded: {}",
        host.log_text()
    );
    let response = http().get(format!("http://{admin}/")).send().expect("GET /");
    let csp =
        response.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(csp.contains("script-src 'self'"), "CSP: {csp}");
    let html = response.text().expect("body");
    assert!(html.contains("&lt;b&gt;x&lt;/b&gt;") && !html.contains("<b>x</b>"), "names are escaped");
    let start = Instant::now();
    let page = get_text(&format!("http://{admin}/services/%3Cb%3Ex%3C%2Fb%3E")).expect("service page");
    assert!(page.contains("&lt;b&gt;x&lt;/b&gt;") && start.elapsed() < Duration::from_secs(5));
}

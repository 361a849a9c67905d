//! The web console in a real browser: Debian's headless Chromium driven through chromedriver's WebDriver API (a few
//! JSON requests, made with the blocking HTTP client the other tests use). The overview turns a row OPEN without a
//! reload when the service goes down, an action without a token is refused, reset with a token closes the breaker,
//! and screenshots of the overview and a service page land in `target/` (and in `docs/` with
//! `AEGIS_CONSOLE_SCREENSHOT=docs`, as `make console-screenshot` does).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use aegis_tests::browser::Browser;
use aegis_tests::{
    binary, free_port, get_text, http, install_plugin, post, start_aegis_host, start_http_service, wait_until,
    workspace_root,
};
use serde_json::{Value, json};

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

/// A plugin that keeps panicking is quarantined, and the API, `aegis-host plugins` and the Plugins page all say until
/// when: an RFC 3339 time about the cool-down from now, and the time left for people.
#[test]
fn a_quarantined_plugin_shows_until_when() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plugins = tmp.path().join("plugins");
    install_plugin("hostile", &plugins);
    let (_service, base) = start_http_service(&tmp.path().join("service.log"));
    let admin = format!("127.0.0.1:{}", free_port());
    let config = tmp.path().join("aegis.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
admin: {{address: "{admin}"}}
plugins: {{dir: "{plugins}", quarantine: {{strikes: 3, window: 60s, coolDown: 5m}}}}
storage: {{path: "{db}"}}
services:
  - name: panicky
    type: http
    endpoint: {base}/health
    interval: 50ms
    actions:
      onFailure: ignore
      circuitBreaker:
        tripPolicy: {{plugin: hostile, config: {{mode: panic}}}}
"#,
            plugins = plugins.display(),
            db = tmp.path().join("aegis.db").display(),
        ),
    )
    .expect("write config");
    let host = start_aegis_host(&config, &tmp.path().join("aegis.log"));
    let hostile = || -> Option<Value> {
        let list: Value = serde_json::from_str(&get_text(&format!("http://{admin}/api/v1/plugins"))?).ok()?;
        list["plugins"].as_array()?.iter().find(|p| p["name"] == "hostile").cloned()
    };
    assert!(
        wait_until(Duration::from_secs(30), || hostile().is_some_and(|p| p["quarantined"] == json!(true))),
        "quarantined: {:?}; log:\n{}",
        hostile(),
        host.log_text()
    );
    let plugin = hostile().expect("the plugin is listed");
    let until = plugin["quarantined_until"].as_str().expect("quarantined_until is a string").to_owned();
    let end = humantime::parse_rfc3339(&until).unwrap_or_else(|e| panic!("`{until}` is not RFC 3339: {e}"));
    let left = end.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(left > Duration::from_secs(240) && left <= Duration::from_secs(300), "ends a cool-down from now: {left:?}");
    let human = plugin["quarantined_until_human"].as_str().expect("quarantined_until_human is a string").to_owned();
    assert!(human.starts_with("in 4m") || human == "in 5m", "{human}");
    assert!(plugin["quarantined_for_ms"].as_u64().is_some_and(|ms| ms > 240_000 && ms <= 300_000), "{plugin}");

    let out = std::process::Command::new(binary("aegis-host"))
        .args(["plugins", "--admin", &format!("http://{admin}")])
        .env("AEGIS_LOG", "warn")
        .output()
        .expect("run aegis-host plugins");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains(&format!("until {until} (in ")), "aegis-host plugins: {table}");

    let Some(browser) = Browser::start(tmp.path()) else { return };
    browser.goto(&format!("http://{admin}/plugins"));
    let cell = browser.text("#plugins td.quarantine").unwrap_or_default();
    assert!(cell.contains(&format!("until {until}")) && cell.contains("(in "), "the page says until when: {cell}");
    assert_eq!(browser.script("return document.querySelector('#plugins td.quarantine time').dateTime"), json!(until));
    browser.screenshot(&target_dir().join("plugins.png"));
}

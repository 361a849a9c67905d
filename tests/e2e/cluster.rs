//! Cluster mode end to end: three real aegis-host replicas against a real `redis-server` of their own (plain and
//! TLS), 30 services on real HTTP targets. Every service has exactly one owner, a replica killed with SIGKILL has its
//! services taken over, a service switched down is restarted once across the cluster, an operator command sent to
//! any replica reaches the owner and shows everywhere, and a wrong CA or password is a clear error.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aegis_tests::{
    PausableProxy, Proc, RedisOptions, RedisServer, free_port, get_text, http, post, start_aegis_host,
    start_http_service, wait_until,
};
use serde_json::Value;

const SERVICES: usize = 30;
const LEASE: Duration = Duration::from_secs(2);
const INTERVAL: Duration = Duration::from_millis(200);

/// One replica: its admin address and process.
struct Replica {
    node: String,
    admin: String,
    host: Proc,
}

impl Replica {
    fn services(&self) -> Vec<Value> {
        get_text(&format!("http://{}/api/v1/services", self.admin))
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["services"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Service name → (owner, state) as this replica's API says.
    fn view(&self) -> BTreeMap<String, (String, String)> {
        self.services()
            .iter()
            .filter_map(|s| {
                Some((
                    s["name"].as_str()?.to_owned(),
                    (s["owner"].as_str()?.to_owned(), s["state"].as_str()?.to_owned()),
                ))
            })
            .collect()
    }

    fn checks(&self, service: &str) -> f64 {
        aegis_tests::scrape(
            &self.admin,
            "aegis_health_checks_total",
            &format!("result=\"success\",service=\"{service}\""),
        )
        .unwrap_or(0.0)
    }

    fn kill9(&mut self) {
        let status = Command::new("kill").args(["-9", &self.host.pid().to_string()]).status().expect("kill");
        assert!(status.success());
        let _ = self.host.wait_exit(Duration::from_secs(5));
    }
}

/// Where the services of a replica's config check, and what `flaky` does when it fails.
struct Targets<'a> {
    /// The healthy services' target.
    base: &'a str,
    /// `flaky`'s target.
    flaky_base: &'a str,
    /// `flaky` restarts through a command that appends the replica's name to this file.
    restarts: &'a Path,
    /// `flaky`'s breaker `resetTimeout`.
    flaky_reset: &'a str,
    /// Where alerts go, if anywhere.
    alert_hook: Option<&'a str>,
}

/// The config of replica `node`: 29 healthy services and `flaky`.
fn write_config(dir: &Path, node: &str, redis: &str, extra: &str, t: &Targets<'_>) -> (PathBuf, String) {
    let Targets { base, flaky_base, restarts, flaky_reset, alert_hook } = t;
    let alerting = alert_hook.map_or_else(String::new, |hook| {
        format!(
            "alerting: {{webhook: \"{hook}\", evaluation_interval: 100ms, retry_initial: 100ms, retry_max: 400ms}}\n"
        )
    });
    let admin = format!("127.0.0.1:{}", free_port());
    let mut services = String::new();
    for i in 0..SERVICES - 1 {
        services.push_str(&format!("  - {{name: svc-{i:02}, type: http, endpoint: \"{base}/health\"}}\n"));
    }
    services.push_str(&format!(
        "  - name: flaky\n    type: http\n    endpoint: \"{flaky_base}/health\"\n    \
         actions: {{onFailure: restart, restart: {{command: \"echo {node} >> {restarts}\"}}, \
         circuitBreaker: {{failureThreshold: 2, resetTimeout: {flaky_reset}}}, backoff: {{enabled: false}}}}\n",
        restarts = restarts.display()
    ));
    let config = dir.join(format!("{node}.yaml"));
    std::fs::write(
        &config,
        format!(
            "admin: {{address: \"{admin}\", token: t0k3n}}\nstorage: {{path: \"{db}\"}}\nplugins: {{dir: \"{plugins}\"}}\n\
             cluster: {{redis: \"{redis}\", node: {node}, leaseTtl: {lease}ms{extra}}}\n\
             defaults: {{interval: {interval}ms, timeout: 1s, actions: {{onFailure: ignore}}}}\n{alerting}services:\n{services}",
            db = dir.join(format!("{node}.db")).display(),
            plugins = dir.join("no-plugins").display(),
            lease = LEASE.as_millis(),
            interval = INTERVAL.as_millis(),
        ),
    )
    .expect("write config");
    (config, admin)
}

struct Cluster {
    dir: tempfile::TempDir,
    redis: RedisServer,
    /// Each replica reaches Redis through a proxy of its own, which can cut it off.
    proxies: Vec<PausableProxy>,
    replicas: Vec<Replica>,
    base: String,
    flaky_base: String,
    restarts: PathBuf,
    _targets: Vec<Proc>,
}

fn start_cluster(flaky_reset: &str) -> Cluster {
    start_cluster_with(flaky_reset, None)
}

fn start_cluster_with(flaky_reset: &str, alert_hook: Option<&str>) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start();
    let (target, base) = start_http_service(&dir.path().join("target.log"));
    let (flaky, flaky_base) = start_http_service(&dir.path().join("flaky.log"));
    let restarts = dir.path().join("restarts.txt");
    let targets = Targets { base: &base, flaky_base: &flaky_base, restarts: &restarts, flaky_reset, alert_hook };
    let proxies: Vec<PausableProxy> = (0..3).map(|_| PausableProxy::start(redis.addr())).collect();
    let replicas = ["a", "b", "c"]
        .iter()
        .zip(&proxies)
        .map(|(node, proxy)| {
            let url = format!("redis://{}", proxy.addr());
            let (config, admin) = write_config(dir.path(), node, &url, "", &targets);
            let host = start_aegis_host(&config, &dir.path().join(format!("{node}.log")));
            Replica { node: (*node).to_owned(), admin, host }
        })
        .collect();
    let cluster = Cluster { dir, redis, proxies, replicas, base, flaky_base, restarts, _targets: vec![target, flaky] };
    // All three see each other.
    assert!(
        wait_until(Duration::from_secs(20), || cluster
            .replicas
            .iter()
            .all(|r| { aegis_tests::scrape(&r.admin, "aegis_cluster_members", "") == Some(3.0) })),
        "three members; logs:\n{}",
        cluster.logs()
    );
    cluster
}

impl Cluster {
    fn logs(&self) -> String {
        self.replicas.iter().map(|r| format!("--- {}\n{}", r.node, r.host.log_text())).collect()
    }

    fn restart_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.restarts).unwrap_or_default().lines().map(str::to_owned).collect()
    }
}

#[test]
fn three_replicas_split_the_services_and_restart_a_failing_one_exactly_once() {
    let c = start_cluster("1h");
    // 1. Every replica answers the same: one owner per service, the union is every service, each replica owns some.
    let agreed = || {
        let views: Vec<_> = c.replicas.iter().map(Replica::view).collect();
        views.iter().all(|v| v.len() == SERVICES && v.values().all(|(o, _)| o != "unknown"))
            && views.windows(2).all(|w| w[0].iter().map(|(k, v)| (k, &v.0)).eq(w[1].iter().map(|(k, v)| (k, &v.0))))
    };
    assert!(wait_until(Duration::from_secs(10), agreed), "same owners everywhere; logs:\n{}", c.logs());
    let view = c.replicas[0].view();
    let owners: BTreeSet<&str> = view.values().map(|(o, _)| o.as_str()).collect();
    assert_eq!(owners, BTreeSet::from(["a", "b", "c"]), "{view:?}");
    for r in &c.replicas {
        let owned = aegis_tests::scrape(&r.admin, "aegis_cluster_owned_services", "").unwrap_or(-1.0);
        let expected = view.values().filter(|(o, _)| *o == r.node).count() as f64;
        assert_eq!(owned, expected, "{} owns {owned}", r.node);
    }
    // Only the owner probes: a service's checks grow at its owner and nowhere else.
    let (service, (owner, _)) = view.iter().next().expect("a service");
    let at = |node: &str| c.replicas.iter().find(|r| r.node == node).expect("replica");
    let others: Vec<&Replica> = c.replicas.iter().filter(|r| r.node != *owner).collect();
    let before: Vec<f64> = others.iter().map(|r| r.checks(service)).collect();
    assert!(wait_until(Duration::from_secs(5), || at(owner).checks(service) >= 3.0), "the owner probes");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(others.iter().map(|r| r.checks(service)).collect::<Vec<_>>(), before, "only the owner probes");
    // Each replica exports the series of the services it owns, and only those.
    let series = |r: &Replica| {
        aegis_tests::scrape(&r.admin, "aegis_health_checks_total", &format!("result=\"success\",service=\"{service}\""))
    };
    assert!(series(at(owner)).is_some() && others.iter().all(|r| series(r).is_none()), "exported by the owner only");

    // The console of any replica shows each service's owner (in a real browser).
    if let Some(browser) = aegis_tests::browser::Browser::start(c.dir.path()) {
        browser.goto(&format!("http://{}/", c.replicas[2].admin));
        let shown = browser.script(
            "return Object.fromEntries([...document.querySelectorAll('tbody tr')]\
             .map((tr) => [tr.dataset.service, tr.querySelector('td.owner')?.textContent]));",
        );
        for (name, (owner, _)) in &view {
            assert_eq!(shown[name].as_str(), Some(owner.as_str()), "owner of {name} in the console: {shown}");
        }
        assert_eq!(browser.text("th[data-sort=owner]").as_deref(), Some("Owner"));
    }

    // 3. The flaky service goes down: its breaker opens once, and one restart runs across the cluster.
    post(&format!("{}/down", c.flaky_base));
    assert!(
        wait_until(Duration::from_secs(10), || c.restart_lines().len() == 1),
        "restarted; lines {:?}; logs:\n{}",
        c.restart_lines(),
        c.logs()
    );
    std::thread::sleep(Duration::from_secs(2));
    let lines = c.restart_lines();
    assert_eq!(lines.len(), 1, "exactly once: {lines:?}");
    assert_eq!(lines[0], view["flaky"].0, "by the owner");
    // Every replica shows it open.
    assert!(
        wait_until(Duration::from_secs(3), || c
            .replicas
            .iter()
            .all(|r| r.view().get("flaky").is_some_and(|v| v.1 == "open"))),
        "open everywhere; {:?}",
        c.replicas.iter().map(Replica::view).collect::<Vec<_>>()
    );
    let _ = (&c.dir, &c.redis, &c.base);
}

#[test]
fn a_killed_replica_is_taken_over_and_a_forced_state_reaches_every_replica_and_survives_it() {
    let mut c = start_cluster("1h");
    assert!(
        wait_until(Duration::from_secs(10), || c
            .replicas
            .iter()
            .all(|r| r.view().values().all(|(o, _)| o != "unknown"))),
        "owners known"
    );
    let view = c.replicas[0].view();
    // A service owned by b, forced open through a, shows at c within a second or so.
    let (service, _) = view.iter().find(|(_, (o, _))| o == "b").expect("b owns a service");
    let service = service.clone();
    let forced = http()
        .post(format!("http://{}/api/v1/circuit-breakers/{service}/force-state", c.replicas[0].admin))
        .bearer_auth("t0k3n")
        .header("content-type", "application/json")
        .body(r#"{"state":"open"}"#)
        .send()
        .expect("POST");
    assert_eq!(forced.status().as_u16(), 202, "sent to the owner");
    let state_at = |r: &Replica| r.view().get(&service).map(|v| v.1.clone());
    assert!(
        wait_until(Duration::from_secs(3), || state_at(&c.replicas[2]).as_deref() == Some("forced-open")),
        "forced open at c: {:?}; logs:\n{}",
        state_at(&c.replicas[2]),
        c.logs()
    );

    // The owner's event is in the cluster's history, which every replica answers from.
    let events =
        get_text(&format!("http://{}/api/v1/events?service={service}", c.replicas[2].admin)).unwrap_or_default();
    let events: Value = serde_json::from_str(&events).unwrap_or(Value::Null);
    assert!(
        events["events"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["kind"] == "breaker-forced" && e["node"] == "b")),
        "c lists b's event: {events}"
    );

    // b dies: its services are probed again by the others within the lease and an interval (plus a poll).
    let b_services: Vec<String> = view.iter().filter(|(_, (o, _))| o == "b").map(|(s, _)| s.clone()).collect();
    let probe = b_services.iter().find(|s| **s != service).expect("b owns another service").clone();
    // A console open at a meanwhile (in a real browser) shows the new owners without a reload.
    let browser = aegis_tests::browser::Browser::start(c.dir.path());
    let owners_shown = |b: &aegis_tests::browser::Browser| {
        b.script(
            "return [...document.querySelectorAll('tbody tr')].map((tr) => tr.querySelector('td.owner')?.textContent);",
        )
    };
    if let Some(b) = &browser {
        b.goto(&format!("http://{}/", c.replicas[0].admin));
        b.script("window.notReloaded = true; return null;");
        assert!(owners_shown(b).as_array().is_some_and(|o| o.iter().any(|o| o == "b")), "b owns services at first");
    }
    c.replicas[1].kill9();
    let survivors = [&c.replicas[0], &c.replicas[2]];
    assert!(
        wait_until(LEASE + INTERVAL + Duration::from_secs(3), || {
            let checks: f64 = survivors.iter().map(|r| r.checks(&probe)).sum();
            checks >= 1.0
        }),
        "{probe} probed again after b died; logs:\n{}",
        c.logs()
    );
    // Both survivors agree that a or c owns each of b's services now.
    let moved = |r: &Replica| {
        let v = r.view();
        b_services.iter().all(|s| v.get(s).is_some_and(|(o, _)| o == "a" || o == "c"))
    };
    assert!(
        wait_until(Duration::from_secs(3), || survivors.iter().all(|r| moved(r))),
        "b's services moved: {:?}",
        survivors.iter().map(|r| r.view()).collect::<Vec<_>>()
    );
    if let Some(b) = &browser {
        assert!(
            wait_until(Duration::from_secs(5), || owners_shown(b)
                .as_array()
                .is_some_and(|o| !o.is_empty() && o.iter().all(|o| o == "a" || o == "c"))),
            "the open console shows a and c as owners: {}",
            owners_shown(b)
        );
        assert_eq!(b.script("return window.notReloaded === true;"), Value::Bool(true), "updated live, not reloaded");
    }
    // The forced state survived its owner's death.
    assert!(
        wait_until(Duration::from_secs(3), || survivors.iter().all(|r| state_at(r).as_deref() == Some("forced-open"))),
        "still forced open: {:?}",
        survivors.iter().map(|r| state_at(r)).collect::<Vec<_>>()
    );
    let _ = (&c.dir, &c.redis, &c.base, &c.flaky_base);
}

#[test]
fn tls_redis_works_with_its_ca_and_a_wrong_ca_or_password_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = RedisServer::start_with(RedisOptions::default().tls().password("s3cret-pw"));
    let tls = redis.tls().expect("TLS files").clone();
    let (_target, base) = start_http_service(&dir.path().join("target.log"));
    let restarts = dir.path().join("restarts.txt");
    let url = redis.url().replace("rediss://", "rediss://:s3cret-pw@");
    let run = |node: &str, url: &str, ca: &Path| {
        let extra = format!(", tls: {{caFile: \"{}\"}}", ca.display());
        let targets =
            Targets { base: &base, flaky_base: &base, restarts: &restarts, flaky_reset: "1h", alert_hook: None };
        let (config, admin) = write_config(dir.path(), node, url, &extra, &targets);
        (start_aegis_host(&config, &dir.path().join(format!("{node}.log"))), admin)
    };
    let (good, admin) = run("good", &url, &tls.ca);
    assert!(
        wait_until(Duration::from_secs(15), || aegis_tests::scrape(&admin, "aegis_redis_up", "") == Some(1.0)
            && aegis_tests::scrape(&admin, "aegis_cluster_members", "") == Some(1.0)),
        "joined over TLS; log:\n{}",
        good.log_text()
    );
    assert!(!good.log_text().contains("s3cret-pw"), "the password is never logged");

    let (wrong_ca, _) = run("wrong-ca", &url, &tls.wrong_ca);
    assert!(
        wait_until(Duration::from_secs(15), || wrong_ca.log_text().contains("TLS with Redis failed")),
        "clear TLS error; log:\n{}",
        wrong_ca.log_text()
    );
    let bad_url = redis.url().replace("rediss://", "rediss://:not-the-password@");
    let (wrong_pw, _) = run("wrong-pw", &bad_url, &tls.ca);
    assert!(
        wait_until(Duration::from_secs(15), || wrong_pw.log_text().contains("Redis refused the credentials")),
        "clear password error; log:\n{}",
        wrong_pw.log_text()
    );
    assert!(!wrong_pw.log_text().contains("not-the-password"), "the password is never logged");
}

impl Cluster {
    fn replica(&self, node: &str) -> &Replica {
        self.replicas.iter().find(|r| r.node == node).expect("a replica of that name")
    }

    /// Kills replica `index` with SIGKILL and waits until the others name another live owner of `service`; returns
    /// the survivors' indexes.
    fn kill_and_wait_moved(&mut self, index: usize, service: &str) -> Vec<usize> {
        let dead = self.replicas[index].node.clone();
        self.replicas[index].kill9();
        let survivors: Vec<usize> = (0..3).filter(|i| *i != index).collect();
        assert!(
            wait_until(LEASE + Duration::from_secs(5), || survivors
                .iter()
                .all(|i| self.replicas[*i].view().get(service).is_some_and(|(o, _)| *o != dead && o != "unknown"))),
            "{service} moved away from {dead}; logs:\n{}",
            self.logs()
        );
        survivors
    }

    /// The owner of `service` once every replica agrees on it.
    fn agreed_owner(&self, service: &str) -> String {
        let mut owner = None;
        assert!(
            wait_until(Duration::from_secs(10), || {
                let owners: BTreeSet<String> =
                    self.replicas.iter().filter_map(|r| r.view().get(service).map(|v| v.0.clone())).collect();
                owner = owners.iter().next().cloned();
                owners.len() == 1 && owner.as_deref() != Some("unknown")
            }),
            "every replica names the owner of {service}; logs:\n{}",
            self.logs()
        );
        owner.unwrap_or_default()
    }
}

/// Issue 15, test 7: the replica owning `flaky` is cut off from Redis (its proxy holds connections unanswered). The
/// others take its services over; the service goes down; the new owner restarts it, and the cut-off replica — which
/// still believes it owns it and sees it fail — runs no restart and delivers no alert, then or after it is let back
/// in: the receiver hears of the outage once, from the new owner.
#[test]
fn a_replica_cut_off_from_redis_loses_its_services_and_restarts_nothing() {
    let receiver = AlertReceiver::start();
    let out = receiver.out();
    let c = start_cluster_with("1h", Some(&receiver.hook()));
    let cut = c.agreed_owner("flaky");
    let index = c.replicas.iter().position(|r| r.node == cut).expect("owner");
    c.proxies[index].pause();
    let others: Vec<&Replica> = c.replicas.iter().filter(|r| r.node != cut).collect();
    let moved = || others.iter().all(|r| r.view().get("flaky").is_some_and(|(o, _)| *o != cut && o != "unknown"));
    assert!(wait_until(LEASE + Duration::from_secs(5), moved), "flaky moved away from {cut}; logs:\n{}", c.logs());
    let new_owner = others[0].view()["flaky"].0.clone();

    post(&format!("{}/down", c.flaky_base));
    assert!(
        wait_until(Duration::from_secs(10), || c.restart_lines().len() == 1),
        "restarted by {new_owner}; lines {:?}; logs:\n{}",
        c.restart_lines(),
        c.logs()
    );
    // The cut-off replica saw it fail too and wanted to restart it: refused, since it cannot prove it owns it.
    let refused = || c.replica(&cut).host.log_text().contains("restart not run");
    assert!(wait_until(Duration::from_secs(10), refused), "{cut} refused; log:\n{}", c.replica(&cut).host.log_text());
    c.proxies[index].resume();
    assert!(
        wait_until(Duration::from_secs(10), || aegis_tests::scrape(&c.replica(&cut).admin, "aegis_redis_up", "")
            == Some(1.0)),
        "{cut} reconnected"
    );
    std::thread::sleep(LEASE);
    assert_eq!(c.restart_lines(), vec![new_owner.clone()], "one restart, by the owner that could prove it");
    assert!(c.replica(&cut).host.log_text().contains("Redis unreachable"), "the outage is logged");
    // The cut-off replica raised the alert too (it saw the breaker open) but could not deliver it, and dropped it
    // once back: one firing, the new owner's.
    let alerted = c.replica(&cut).host.log_text().contains("alert notification alert=CircuitBreakerOpen");
    assert!(alerted, "{cut} raised it locally; log:\n{}", c.replica(&cut).host.log_text());
    let firing: Vec<_> = breaker_notifications(&out, "flaky").into_iter().filter(|(s, _)| s == "firing").collect();
    assert_eq!(firing.len(), 1, "{firing:?}; logs:\n{}", c.logs());
    let _ = (&c.dir, &c.redis, &c.base);
}

/// Issue 15, test 6: Redis stops for 10 s. Every replica keeps probing; `flaky` goes down meanwhile and nothing is
/// restarted (nothing can be proven); once Redis is back the breaker's next opening restarts it, by its owner, and
/// every replica shows the same state again.
#[test]
fn redis_down_for_ten_seconds_keeps_probing_runs_no_action_and_reconciles() {
    let mut c = start_cluster("2s");
    let owner = c.agreed_owner("flaky");
    let probes = |c: &Cluster| -> f64 { c.replicas.iter().map(|r| r.checks("svc-00") + r.checks("svc-01")).sum() };
    c.redis.stop();
    let before = probes(&c);
    post(&format!("{}/down", c.flaky_base));
    assert!(
        wait_until(Duration::from_secs(5), || probes(&c) >= before + 10.0),
        "probing goes on without Redis; logs:\n{}",
        c.logs()
    );
    std::thread::sleep(Duration::from_secs(8));
    assert!(c.restart_lines().is_empty(), "no unfenced restart while Redis is down: {:?}", c.restart_lines());
    let opened = || aegis_tests::scrape(&c.replica(&owner).admin, "circuit_breaker_state", "breaker=\"flaky\"");
    assert_eq!(opened(), Some(2.0), "the owner saw flaky fail; logs:\n{}", c.logs());

    c.redis.start_again();
    assert!(
        wait_until(Duration::from_secs(15), || !c.restart_lines().is_empty()),
        "restarted once Redis is back; logs:\n{}",
        c.logs()
    );
    assert!(c.restart_lines().iter().all(|n| *n == owner), "only by the owner: {:?}", c.restart_lines());
    assert!(
        wait_until(Duration::from_secs(10), || {
            let states: BTreeSet<String> =
                c.replicas.iter().filter_map(|r| r.view().get("flaky").map(|v| v.1.clone())).collect();
            states.len() == 1 && (states.contains("open") || states.contains("half-open"))
        }),
        "every replica shows flaky failing: {:?}",
        c.replicas.iter().map(|r| r.view().get("flaky").cloned()).collect::<Vec<_>>()
    );
    let _ = (&c.dir, &c.base);
}

/// A webhook receiver of the test's own (the example webhook-server), which can be told to fail.
struct AlertReceiver {
    dir: tempfile::TempDir,
    port: u16,
    _proc: Proc,
}

impl AlertReceiver {
    fn start() -> AlertReceiver {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let proc =
            aegis_tests::start_receiver(port, &dir.path().join("alerts.jsonl"), &dir.path().join("receiver.log"));
        AlertReceiver { dir, port, _proc: proc }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn hook(&self) -> String {
        format!("{}/hook", self.base())
    }

    /// Where the bodies it accepted are written.
    fn out(&self) -> PathBuf {
        self.dir.path().join("alerts.jsonl")
    }
}

/// `(status, service, startsAt)` of every CircuitBreakerOpen alert the receiver got, in order.
fn breaker_alerts(out: &Path) -> Vec<(String, String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    aegis_tests::received(out)
        .iter()
        .flat_map(|body| body["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == "CircuitBreakerOpen")
        .map(|a| (text(&a["status"]), text(&a["labels"]["service"]), text(&a["startsAt"])))
        .collect()
}

/// `(status, startsAt)` of the CircuitBreakerOpen alerts of `service` the receiver got, in order.
fn breaker_notifications(out: &Path, service: &str) -> Vec<(String, String)> {
    breaker_alerts(out).into_iter().filter(|(_, s, _)| s == service).map(|(status, _, at)| (status, at)).collect()
}

/// A service's breaker alert moves with the service: its owner is killed while the alert fires; the replica that
/// takes the service over carries the alert on and resolves it when the service recovers, and no replica keeps it.
#[test]
fn a_firing_breaker_alert_moves_with_its_service_and_is_resolved_by_the_new_owner() {
    let receiver = AlertReceiver::start();
    let out = receiver.out();
    let mut c = start_cluster_with("2s", Some(&receiver.hook()));
    let owner = c.agreed_owner("flaky");
    post(&format!("{}/down", c.flaky_base));
    let firing = |out: &Path| breaker_notifications(out, "flaky").iter().filter(|(s, _)| s == "firing").count();
    assert!(wait_until(Duration::from_secs(10), || firing(&out) >= 1), "firing; logs:\n{}", c.logs());

    let index = c.replicas.iter().position(|r| r.node == owner).expect("owner");
    let survivors = c.kill_and_wait_moved(index, "flaky");
    post(&format!("{}/up", c.flaky_base));
    assert!(
        wait_until(Duration::from_secs(15), || breaker_notifications(&out, "flaky")
            .iter()
            .any(|(s, _)| s == "resolved")),
        "resolved by the new owner; received {:?}; logs:\n{}",
        breaker_alerts(&out),
        c.logs()
    );
    // No survivor keeps it active.
    std::thread::sleep(Duration::from_millis(500));
    for i in &survivors {
        let active = get_text(&format!("http://{}/api/v1/alerts", c.replicas[*i].admin)).unwrap_or_default();
        assert!(!active.contains("CircuitBreakerOpen"), "{} still has it: {active}", c.replicas[*i].node);
    }
    let _ = (&c.dir, &c.redis, &c.base);
}

/// Issue test 5: an alert reaches the receiver once per status although three replicas run, and killing its
/// owner while the receiver fails still delivers it — the firing the dead owner queued, then the resolution by the
/// new owner, with one `startsAt` — once the receiver recovers.
#[test]
fn an_alert_is_delivered_once_and_survives_its_owners_death_while_the_receiver_fails() {
    let receiver = AlertReceiver::start();
    let out = receiver.out();
    let mut c = start_cluster_with("2s", Some(&receiver.hook()));
    let owner = c.agreed_owner("flaky");
    let index = c.replicas.iter().position(|r| r.node == owner).expect("owner");

    // The receiver fails everything; flaky goes down and its breaker alert fires at its owner, which cannot
    // deliver it.
    post(&format!("{}/fail?count=1000000", receiver.base()));
    post(&format!("{}/down", c.flaky_base));
    let failed = |admin: &str| {
        aegis_tests::scrape(admin, "aegis_alert_deliveries_total", "result=\"failure\",target=\"webhook\"")
            .unwrap_or(0.0)
    };
    assert!(
        wait_until(Duration::from_secs(15), || failed(&c.replicas[index].admin) >= 2.0),
        "the owner tries and fails; logs:\n{}",
        c.logs()
    );
    let survivors = c.kill_and_wait_moved(index, "flaky");
    // The service recovers while the receiver still fails, then the receiver recovers.
    post(&format!("{}/up", c.flaky_base));
    assert!(
        wait_until(Duration::from_secs(15), || survivors
            .iter()
            .all(|i| c.replicas[*i].view().get("flaky").is_some_and(|(_, state)| state == "closed"))),
        "flaky closed again; logs:\n{}",
        c.logs()
    );
    post(&format!("{}/fail?count=0", receiver.base()));
    assert!(
        wait_until(Duration::from_secs(15), || breaker_notifications(&out, "flaky").len() >= 2),
        "delivered after the receiver recovered: {:?}; logs:\n{}",
        breaker_notifications(&out, "flaky"),
        c.logs()
    );
    // Nothing more arrives: once per status, the firing first, both of the alert the dead owner raised.
    std::thread::sleep(Duration::from_secs(2));
    let got = breaker_notifications(&out, "flaky");
    assert_eq!(
        got.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
        ["firing", "resolved"],
        "{got:?}; logs:\n{}",
        c.logs()
    );
    assert_eq!(got[0].1, got[1].1, "one startsAt: the new owner carried the alert on, it did not raise a new one");
    // The other services never alerted, from any replica.
    let others = breaker_alerts(&out).into_iter().filter(|(_, s, _)| s != "flaky").collect::<Vec<_>>();
    assert!(others.is_empty(), "{others:?}");
    let _ = (&c.dir, &c.redis, &c.base);
}

//! Quarantine end to end: strikes quarantine a plugin for every binding, the built-in decides meanwhile, and after
//! the cool-down a healthy plugin is released.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_plugin::{CallResult, PluginEvent, QuarantinePolicy};

use crate::support::{BuiltIn, ask, config, host_with, roomy, service};

#[test]
fn strikes_quarantine_the_plugin_and_a_healthy_probe_releases_it() {
    let quarantine = QuarantinePolicy {
        strikes: 3,
        window: Duration::from_secs(60),
        cool_down: Duration::from_millis(300),
        max_cool_down: Duration::from_secs(5),
    };
    let (host, _dir) = host_with(&["hostile"], roomy(), quarantine);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    host.on_event(Arc::new(move |e: &PluginEvent| sink.lock().unwrap().push(e.clone())));
    // Panics only when the counts show a failure, so the test can make it healthy again.
    let misbehaving = config(&[("mode", "panic"), ("when", "failures")]);
    let a = host.trip_predicate("hostile", service(), misbehaving.clone(), Arc::new(BuiltIn)).unwrap();
    let b = host.trip_predicate("hostile", service(), misbehaving, Arc::new(BuiltIn)).unwrap();

    assert_eq!(ask(&a, &[true]), None, "healthy input: the plugin decides");
    for _ in 0..3 {
        assert_eq!(ask(&a, &[false]).as_deref(), Some("built-in"));
    }
    let stats = &host.stats()[0];
    assert!(stats.quarantined);
    assert_eq!((stats.calls(CallResult::Ok), stats.calls(CallResult::Trap)), (1, 3));

    // Quarantine covers every binding of the plugin, even for input it would handle.
    assert_eq!(ask(&b, &[true]).as_deref(), Some("built-in"));
    assert_eq!(host.stats()[0].calls(CallResult::Quarantined), 1);

    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(ask(&b, &[true]), None, "after the cool-down the plugin decides again");
    let stats = &host.stats()[0];
    assert!(!stats.quarantined);
    assert_eq!(stats.quarantines_total, 1);

    let events = events.lock().unwrap();
    assert!(
        matches!(&events[..], [PluginEvent::Quarantined { plugin, strikes: 3, .. }, PluginEvent::Released { .. }] if plugin == "hostile"),
        "{events:?}"
    );
}

#[test]
fn a_relapse_on_probation_quarantines_again_at_once() {
    let quarantine = QuarantinePolicy {
        strikes: 2,
        window: Duration::from_secs(60),
        cool_down: Duration::from_millis(200),
        max_cool_down: Duration::from_secs(5),
    };
    let (host, _dir) = host_with(&["hostile"], roomy(), quarantine);
    let p = host.trip_predicate("hostile", service(), config(&[("mode", "panic")]), Arc::new(BuiltIn)).unwrap();
    ask(&p, &[true]);
    ask(&p, &[true]);
    assert!(host.stats()[0].quarantined);
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(ask(&p, &[true]).as_deref(), Some("built-in"));
    let stats = &host.stats()[0];
    assert!(stats.quarantined, "one bad probation call is enough");
    assert_eq!((stats.quarantines_total, stats.calls(CallResult::Trap)), (2, 3));
}

//! The SQLite store as the supervisor uses it: a locked database is a clear error, not a hang.

use aegis_runtime::store::{Notification, Store};

fn note(key: &str, target: &str, headers: &[(String, String)], body: &[u8]) -> Notification {
    Notification {
        service: "svc".to_owned(),
        idempotency_key: key.to_owned(),
        target: target.to_owned(),
        content_type: "application/json".to_owned(),
        headers: headers.to_vec(),
        body: body.to_vec(),
    }
}

#[test]
fn a_database_locked_by_another_writer_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("aegis.db");
    let store = Store::open(&path).expect("open");
    let other = rusqlite::Connection::open(&path).expect("second connection");
    other.execute_batch("BEGIN EXCLUSIVE; CREATE TABLE hold (x);").expect("take the write lock");
    let err = store.append_event("svc", "restart", "pid 1").expect_err("locked").to_string();
    assert!(err.contains(&path.display().to_string()) && err.contains("locked"), "{err}");
    other.execute_batch("ROLLBACK").expect("release");
    store.append_event("svc", "restart", "pid 1").expect("works once released");
}

#[test]
fn the_outbox_keeps_entries_until_delivered_across_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("aegis.db");
    let headers = vec![("idempotency-key".to_owned(), "abc@1".to_owned())];
    {
        let store = Store::open(&path).expect("open");
        store.enqueue(&note("abc@1", "http://127.0.0.1:1/hook", &headers, b"{\"a\":1}")).expect("q1");
        store.enqueue(&note("def@2", "http://127.0.0.1:1/hook", &[], b"{\"b\":2}")).expect("q2");
        store.put_state("alerts", "{\"x\":1}").expect("state");
    }
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.get_state("alerts").expect("get").as_deref(), Some("{\"x\":1}"));
    let due = store.due(i64::MAX, 10).expect("due");
    assert_eq!(due.iter().map(|e| e.idempotency_key.as_str()).collect::<Vec<_>>(), ["abc@1", "def@2"], "oldest first");
    assert_eq!((due[0].headers.clone(), due[0].body.clone()), (headers, b"{\"a\":1}".to_vec()));

    // A failed attempt is postponed, not lost; a delivered one is gone.
    store.retry_later(due[0].id, i64::MAX - 1, "connection refused").expect("retry");
    store.delivered(due[1].id).expect("delivered");
    assert!(store.due(due[0].next_attempt_ms + 1, 10).expect("due").is_empty(), "not due yet");
    assert_eq!(store.outbox_status().expect("status"), (1, Some(i64::MAX - 1)));
    let later = store.due(i64::MAX, 10).expect("due");
    assert_eq!((later.len(), later[0].attempts), (1, 1));
}

#[test]
fn an_alerts_resolution_waits_for_its_firing_notification_and_targets_are_served_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("aegis.db")).expect("open");
    let (a, b) = ("http://127.0.0.1:1/a", "http://127.0.0.1:1/b");
    for target in [a, b] {
        store.enqueue(&note("f1@1/firing", target, &[], b"1")).expect("queue");
        store.enqueue(&note("f2@1/firing", target, &[], b"2")).expect("queue");
        store.enqueue(&note("f1@1/resolved", target, &[], b"3")).expect("queue");
    }
    let keys = |due: &[aegis_runtime::store::OutboxEntry], target: &str| -> Vec<String> {
        due.iter().filter(|e| e.target == target).map(|e| e.idempotency_key.clone()).collect()
    };
    let due = store.due(i64::MAX, 10).expect("due");
    assert_eq!(keys(&due, a), ["f1@1/firing", "f2@1/firing"], "f1's resolution waits behind its firing");
    assert_eq!(keys(&due, b), keys(&due, a));
    // At `a`, f1's firing notification fails and waits for a retry: its resolution still waits.
    store.retry_later(due[0].id, i64::MAX - 1, "timed out").expect("retry");
    let due = store.due(i64::MAX - 2, 10).expect("due");
    assert_eq!(keys(&due, a), ["f2@1/firing"]);
    // At `b` it is delivered: the resolution is next there.
    let first_b = due.iter().find(|e| e.target == b).expect("b").id;
    store.delivered(first_b).expect("delivered");
    assert_eq!(keys(&store.due(i64::MAX - 2, 10).expect("due"), b), ["f2@1/firing", "f1@1/resolved"]);
    // At most `per_target` of each target at once.
    let due = store.due(i64::MAX - 2, 1).expect("due");
    assert_eq!((keys(&due, a).len(), keys(&due, b).len()), (1, 1));
}

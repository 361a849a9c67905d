//! The SQLite store as the supervisor uses it: a locked database is a clear error, not a hang.

use aegis_runtime::store::Store;

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

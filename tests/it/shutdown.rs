//! Graceful shutdown: running exports get the grace period, then are abandoned cleanly.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{FAST_QUEUE, PgDb, TestApp, pg_source, unique_name};

#[tokio::test]
async fn shutdown_abandons_a_running_export_without_leaving_anything_half_written() {
    let prefix = unique_name("shut");
    let db = PgDb::create(&format!("{prefix}_locked"));
    db.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g");
    // Another session holds an exclusive lock: pg_dump starts, then waits for it indefinitely.
    let mut holder = std::process::Command::new("psql")
        .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", &db.name, "-c"])
        .arg("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60);")
        .spawn()
        .unwrap();
    let app = TestApp::spawn(&format!(
        "{}[export]\nrow_counts = false\n{FAST_QUEUE}shutdown_grace_secs = 1\n",
        pg_source("pgsrc", &format!("{prefix}*"))
    ))
    .await;
    let store = app.store_dir.path().to_owned();

    let (status, _, _) = app.post("/schedule", &json!(null)).await;
    assert_eq!(status, 200);
    let waiting = || {
        db.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while waiting() != "1" {
        assert!(Instant::now() < deadline, "pg_dump never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(app.store_files().iter().any(|f| f.starts_with("leases/")), "the running export holds its lease");
    assert_eq!(live_dumps_of(&db.name), 1);
    let stopping = Instant::now();
    app.stop().await;
    let took = stopping.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let _ = holder.kill();
    let _ = holder.wait();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    let files = crate::support::files_under(&store);
    assert!(
        files.iter().all(|f| f.starts_with("runs/")),
        "only the run ledger remains, no dump, manifest or lease: {files:?}"
    );
    assert_eq!(live_dumps_of(&db.name), 0, "the abandoned pg_dump was killed");
}

/// Live (not zombie) `pg_dump` children of this test process dumping `database` (other tests run
/// their own at the same time).
fn live_dumps_of(database: &str) -> usize {
    let me = std::process::id().to_string();
    let env = format!("PGDATABASE={database}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("environ")).is_ok_and(|b| b.split(|c| *c == 0).any(|v| v == env.as_bytes()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid …
            let Some((head, rest)) = stat.rsplit_once(") ") else { return false };
            let comm = head.split_once(" (").map_or("", |(_, c)| c);
            let mut fields = rest.split_whitespace();
            let (state, ppid) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
            comm == "pg_dump" && ppid == me && state != "Z"
        })
        .count()
}

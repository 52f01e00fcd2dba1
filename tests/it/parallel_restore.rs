//! The parallel PostgreSQL restore (ADR 0016): a custom-format backup without transforms is checked,
//! spooled to an unnamed temporary file and restored with `pg_restore -j`, by `restore` and by
//! drills; transforms keep the one-transaction path; a damaged backup leaves nothing behind.

use std::path::Path;

use data_backup::restore::RestoreError;
use serde_json::{Value, json};

use crate::restore::{export, request, restore, target};
use crate::support::{PgDb, TestApp, pg_source, pg_url, required_env, unique_name};

/// `[restore]` with `jobs` and a temporary directory of the test's own.
fn restore_settings(jobs: usize, temp: &Path) -> String {
    format!("[restore]\njobs = {jobs}\ntemp_dir = \"{}\"\n", temp.display())
}

/// A source with several tables, indexes, a foreign key and a sequence.
fn multi_table_source(prefix: &str) -> PgDb {
    let src = PgDb::create(prefix);
    src.sql(
        "CREATE TABLE customers (id int PRIMARY KEY, email text UNIQUE, joined date);
         INSERT INTO customers SELECT g, 'c' || g || '@corp.example', date '2020-01-01' + g % 1000 FROM generate_series(1, 20000) g;
         CREATE TABLE orders (id bigserial PRIMARY KEY, customer int REFERENCES customers, total numeric(10,2), note text);
         INSERT INTO orders (customer, total, note) SELECT 1 + g % 20000, g / 7.0, md5(g::text) FROM generate_series(1, 60000) g;
         CREATE INDEX ON orders (customer);
         CREATE TABLE events (at timestamptz, payload jsonb);
         INSERT INTO events SELECT timestamptz '2026-01-01' + g * interval '1 minute', jsonb_build_object('n', g) FROM generate_series(1, 30000) g;",
    );
    src
}

/// Databases whose name starts with `prefix`.
fn pg_names_like(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
        .arg(format!("SELECT datname FROM pg_database WHERE starts_with(datname, '{prefix}')"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect()
}

/// What is left of a restore in `temp`: its entries, and this process's open files in it (the
/// spooled file has no name, so a leak would show as an open descriptor).
fn left_in(temp: &Path) -> (Vec<String>, Vec<String>) {
    let entries =
        std::fs::read_dir(temp).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let open = std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter(|target| target.starts_with(temp))
                .map(|target| target.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    (entries, open)
}

#[tokio::test]
async fn a_custom_format_backup_restores_in_parallel_with_the_source_rows() {
    let src = multi_table_source("par_ok");
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;
    let temp = tempfile::tempdir().unwrap();
    let into = PgDb { name: unique_name("par_ok_into") };

    let report = restore(
        &app,
        &restore_settings(3, temp.path()),
        &request("pgsrc", "pg", &src.name, target(&pg_url(), &into.name)),
    )
    .await
    .unwrap();

    assert_eq!(report.parallel_jobs, Some(3), "pg_restore -j 3 restored it");
    assert_eq!(into.fingerprint(), src.fingerprint());
    assert_eq!(into.sql("SELECT count(*) FROM pg_indexes WHERE tablename = 'orders'"), "2");
    assert_eq!(into.sql("SELECT nextval('orders_id_seq')"), "60001");
    assert_eq!(left_in(temp.path()), (Vec::new(), Vec::new()), "the spooled dump is gone");
    assert!(pg_names_like(&format!("{}_restore_", into.name)).is_empty(), "no side database left");

    // --replace restores beside the target in parallel and swaps it in.
    into.sql("CREATE TABLE mine (x text)");
    let mut req = request("pgsrc", "pg", &src.name, target(&pg_url(), &into.name));
    req.options.replace = true;
    let report = restore(&app, &restore_settings(2, temp.path()), &req).await.unwrap();
    let old = PgDb { name: report.previous.clone().expect("the old database is kept") };
    assert_eq!(report.parallel_jobs, Some(2));
    assert_eq!(into.fingerprint(), src.fingerprint());
    assert_eq!(old.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'mine'"), "1");

    // An existing database is never loaded in place in parallel: that path is one transaction.
    let empty = PgDb::create("par_ok_empty");
    let report = restore(
        &app,
        &restore_settings(2, temp.path()),
        &request("pgsrc", "pg", &src.name, target(&pg_url(), &empty.name)),
    )
    .await
    .unwrap();
    assert_eq!(report.parallel_jobs, None);
    assert_eq!(empty.fingerprint(), src.fingerprint());

    // One job streams.
    let streamed = PgDb { name: unique_name("par_ok_one") };
    let report = restore(
        &app,
        &restore_settings(1, temp.path()),
        &request("pgsrc", "pg", &src.name, target(&pg_url(), &streamed.name)),
    )
    .await
    .unwrap();
    assert_eq!(report.parallel_jobs, None);
    assert_eq!(streamed.fingerprint(), src.fingerprint());
}

#[tokio::test]
async fn a_transform_keeps_the_restore_in_one_transaction() {
    let src = multi_table_source("par_tx");
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;
    let temp = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let anon = dir.path().join("anon.sql");
    std::fs::write(&anon, "UPDATE customers SET email = md5(email) || '@anon.invalid';").unwrap();
    let bad = dir.path().join("bad.sql");
    std::fs::write(&bad, "UPDATE customers SET joined = joined + 1;\nUPDATE no_such_table SET x = 1;\n").unwrap();

    let into = PgDb { name: unique_name("par_tx_into") };
    let mut req = request("pgsrc", "pg", &src.name, target(&pg_url(), &into.name));
    req.transforms = vec![anon];
    let report = restore(&app, &restore_settings(4, temp.path()), &req).await.unwrap();
    assert_eq!((report.parallel_jobs, report.transforms), (None, 1), "streamed, with its transform");
    assert_eq!(into.sql("SELECT count(*) FROM customers WHERE email LIKE '%@corp.example'"), "0");

    // A failing transform: the database this restore created is gone, nothing was ever committed.
    let failed = unique_name("par_tx_failed");
    let mut req = request("pgsrc", "pg", &src.name, target(&pg_url(), &failed));
    req.transforms = vec![bad];
    let err = restore(&app, &restore_settings(4, temp.path()), &req).await.unwrap_err();
    assert!(err.to_string().contains("no_such_table"), "{err}");
    assert!(pg_names_like(&failed).is_empty());
}

#[tokio::test]
async fn a_corrupted_or_short_backup_leaves_no_temp_file_and_no_database() {
    let src = multi_table_source("par_bad");
    let app = TestApp::spawn(&pg_source("pgsrc", &src.name)).await;
    let manifest = export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;
    let path = app.store_dir.path().join(manifest["key"].as_str().unwrap());
    let good = std::fs::read(&path).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let mut flipped = good.clone();
    let at = flipped.len() * 3 / 4;
    flipped[at] ^= 0x40;

    for (what, bytes, says) in
        [("short", good[..good.len() / 2].to_vec(), "truncated"), ("corrupted", flipped, "SHA-256")]
    {
        std::fs::write(&path, &bytes).unwrap();
        let into = unique_name("par_bad_into");

        let err = restore(
            &app,
            &restore_settings(2, temp.path()),
            &request("pgsrc", "pg", &src.name, target(&pg_url(), &into)),
        )
        .await
        .unwrap_err();

        assert!(matches!(err, RestoreError::Integrity { .. }) && err.to_string().contains(says), "{what}: {err}");
        assert!(pg_names_like(&into).is_empty(), "{what}: no target and no side database");
        assert_eq!(left_in(temp.path()), (Vec::new(), Vec::new()), "{what}: no temporary file");
    }
}

#[tokio::test]
async fn a_drill_restores_in_parallel_and_records_its_jobs() {
    let src = multi_table_source("par_drill");
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(&format!(
        "{}\n[verify]\nurl = \"{}\"\n{}",
        pg_source("pgsrc", &src.name),
        pg_url(),
        restore_settings(2, temp.path())
    ))
    .await;
    export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;

    let (status, _, record) =
        app.post("/verify", &json!({"project": "pgsrc", "instance": "pg", "database": src.name})).await;

    assert_eq!(status, 200, "{record}");
    assert_eq!(record["result"], "ok", "{record}");
    assert_eq!(record["restore_jobs"], 2, "the drill took the parallel path: {record}");
    let counts: Vec<(&str, u64)> = record["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap(), t["restored"].as_u64().unwrap()))
        .collect();
    assert_eq!(counts, [("public.customers", 20000), ("public.events", 30000), ("public.orders", 60000)]);
    assert_eq!(left_in(temp.path()), (Vec::new(), Vec::new()));
}

#[tokio::test]
async fn a_backup_in_a_remote_store_restores_in_parallel_through_the_temporary_file() {
    let endpoint = required_env("DATA_BACKUP_TEST_GCS_ENDPOINT");
    let bucket = required_env("DATA_BACKUP_TEST_GCS_BUCKET");
    let src = multi_table_source("par_gcs");
    let app = TestApp::spawn(&format!(
        "{}[store]\nurl = \"gs://{bucket}/{}\"\n[gcp]\ncredentials = \"anonymous\"\nstorage_endpoint = \"{endpoint}\"\n",
        pg_source("pgsrc", &src.name),
        unique_name("par")
    ))
    .await;
    let manifest: Value = export(&app, "pgsrc", "pg", &src.name, "2026-11-20").await;
    assert!(app.store_files().is_empty(), "the backup is in the bucket, not on local disk");
    let temp = tempfile::tempdir().unwrap();
    let into = PgDb { name: unique_name("par_gcs_into") };

    let report = restore(
        &app,
        &restore_settings(2, temp.path()),
        &request("pgsrc", "pg", &src.name, target(&pg_url(), &into.name)),
    )
    .await
    .unwrap();

    assert_eq!(report.parallel_jobs, Some(2));
    assert_eq!(report.bytes, manifest["bytes"].as_u64().unwrap());
    assert_eq!(into.fingerprint(), src.fingerprint());
    assert_eq!(left_in(temp.path()), (Vec::new(), Vec::new()));
}

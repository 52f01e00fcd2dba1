//! Names are data, as the dump tools read their arguments: databases named like options or
//! connection strings are exported as themselves, through the real `/export`, `pg_dump` and `mariadb-dump`.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::{MyDb, PgDb, TestApp, mysql_source, pg_source, run_with_stdin, unique_name, unzstd};

/// Runs SQL on the MariaDB test server (names quoted by the caller).
fn mariadb(sql: &str) {
    let out = Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "--protocol=TCP", "-e", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs SQL in database `db` (any name: it travels in PGDATABASE, never as `-d`).
fn psql_in(db: &str, sql: &str) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-c", sql])
        .env("PGDATABASE", db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Exports `database` through `POST /export`; answers the stored dump, decompressed.
async fn export_dump(app: &TestApp, source: &str, instance: &str, database: &str) -> Vec<u8> {
    let body = json!({"source": source, "project": source, "instance": instance, "database": database,
                      "run_date": "2026-11-20"});
    let (status, _, answer): (u16, _, Value) = app.post("/export", &body).await;
    assert_eq!(status, 200, "{database}: {answer}");
    let dumps: Vec<String> =
        app.store_files().into_iter().filter(|f| f.ends_with(".sql.zst") || f.ends_with(".dump.zst")).collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    unzstd(&app.store_dir.path().join(&dumps[0]))
}

/// A file removed when the test ends, however it ends.
struct RemovedOnDrop(std::path::PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn a_mariadb_schema_named_like_an_option_is_dumped_as_a_schema() {
    let file = format!("{}.txt", unique_name("x"));
    let _written = RemovedOnDrop(file.clone().into());
    let result_file = MyDb { name: format!("--result-file={file}") };
    // Not unique: a longer name would not be the option. IF NOT EXISTS lets two runs meet.
    let all_databases = MyDb { name: "--all-databases".to_owned() };
    for (db, table) in [(&result_file, "only_result_file"), (&all_databases, "only_all_databases")] {
        mariadb(&format!(
            "CREATE DATABASE IF NOT EXISTS `{0}`; CREATE TABLE IF NOT EXISTS `{0}`.`{table}` (n INT); \
             INSERT INTO `{0}`.`{table}` VALUES (1)",
            db.name
        ));
    }

    for (db, table) in [(&result_file, "only_result_file"), (&all_databases, "only_all_databases")] {
        let app = TestApp::spawn(&mysql_source("mysrc", &db.name)).await;
        let dump = String::from_utf8(export_dump(&app, "mysrc", "maria", &db.name).await).unwrap();

        let tables: Vec<&str> = dump.lines().filter(|l| l.starts_with("CREATE TABLE")).collect();
        assert_eq!(tables, [format!("CREATE TABLE `{table}` (")], "{}: only its own tables", db.name);
        assert!(!dump.contains("global_priv"), "{}: no other schema in the dump", db.name);
        assert!(dump.contains("-- Dump completed"));
    }
    assert!(
        !std::path::Path::new(&file).exists(),
        "mariadb-dump took the schema name for --result-file and wrote {file}"
    );
}

#[tokio::test]
async fn a_postgres_database_named_like_a_connection_string_or_an_option_is_dumped_as_itself() {
    let decoy = PgDb::create("names_decoy");
    decoy.sql("CREATE TABLE decoy_table (n int)");
    let conninfo = PgDb { name: format!("host=127.0.0.1 dbname={}", decoy.name) };
    let option = PgDb { name: format!("-x_{}", unique_name("names")) };

    for db in [&conninfo, &option] {
        psql_in("postgres", &format!("CREATE DATABASE \"{}\"", db.name));
        psql_in(&db.name, "CREATE TABLE own_table (n int); INSERT INTO own_table VALUES (1)");
        let app = TestApp::spawn(&pg_source("pgsrc", &db.name)).await;

        let dump = export_dump(&app, "pgsrc", "pg", &db.name).await;

        let sql = run_with_stdin("pg_restore", &["-f", "-"], &dump);
        assert!(sql.contains("own_table"), "{}: its own table is in the dump", db.name);
        assert!(!sql.contains("decoy_table"), "{}: another database was dumped", db.name);
    }
}

//! Drills by default: `serve --now` on embedded defaults, with no `[verify]`, proves every database
//! of its run on throwaway servers of its own (ADR 0014), and a stopped service leaves none behind.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{MyDb, PgDb, mysql_source, pg_source, unique_name};

/// `data-backup serve --now` with `config`, its scratch servers under `tmp` (`TMPDIR`).
fn serve_now(config: &str, dir: &Path, tmp: &Path) -> Child {
    let cfg = dir.join("serve.toml");
    std::fs::write(&cfg, config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_data-backup"))
        .arg("--config")
        .arg(&cfg)
        .args(["serve", "--now"])
        .env_remove("DATA_BACKUP_CONFIG")
        .env("TMPDIR", tmp)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary runs")
}

/// A directory for scratch servers that their system user can reach when the tests run as root.
fn scratch_base() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    tmp
}

/// The verification records under `store`, once there is one for each of `databases`.
fn records_of(store: &Path, databases: &[&str], within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let records: Vec<Value> = crate::support::files_under(store)
            .into_iter()
            .filter(|f| f.contains("verifications/"))
            .filter_map(|f| serde_json::from_slice(&std::fs::read(store.join(f)).ok()?).ok())
            .collect();
        if databases.iter().all(|d| records.iter().any(|r| r["database"] == *d)) {
            return records;
        }
        assert!(Instant::now() < deadline, "no drill of every database within {within:?}: {records:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sigterm_and_wait(child: &mut Child) {
    let sent = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes whose command line names `path`.
fn processes_naming(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&needle))
        .collect()
}

fn left_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

fn on_postgres(sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c", sql])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn on_mariadb(sql: &str) -> String {
    let out = Command::new("mysql")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "--protocol=TCP", "-N", "-B", "-e", sql])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn serve_now_on_embedded_defaults_proves_every_database_of_its_run_on_scratch_servers() {
    let prefix = unique_name("drill_now");
    let pg = PgDb::named(&format!("{prefix}_pg"));
    pg.sql("CREATE TABLE t (n int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 500)");
    let my = MyDb::named(&format!("{prefix}_my"));
    my.sql("CREATE TABLE t (n int PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3)");
    let dir = tempfile::tempdir().unwrap();
    let tmp = scratch_base();
    let store = dir.path().join("store");
    let config = format!(
        "bind = \"127.0.0.1:0\"\n[store]\nurl = \"file://{}\"\n{}{}",
        store.display(),
        pg_source("pgsrc", &format!("{prefix}_*")),
        mysql_source("mysrc", &format!("{prefix}_*")),
    );

    let mut serve = serve_now(&config, dir.path(), tmp.path());
    let records = records_of(&store, &[&pg.name, &my.name], Duration::from_secs(300));
    sigterm_and_wait(&mut serve);

    for record in &records {
        assert_eq!(record["result"], "ok", "{record:#}");
        assert!(record["server"].as_str().unwrap().contains("data-backup-scratch-"), "{record:#}");
    }
    assert!(left_in(tmp.path()).is_empty(), "scratch directories left: {:?}", left_in(tmp.path()));
    assert!(processes_naming(tmp.path()).is_empty(), "{:?}", processes_naming(tmp.path()));
    // Nothing was created on the source servers.
    for record in &records {
        let scratch = record["scratch_database"].as_str().unwrap();
        let account = scratch.replace("data_backup_verify_", "data_backup_drill_");
        assert_eq!(on_postgres(&format!("SELECT count(*) FROM pg_database WHERE datname = '{scratch}'")), "0");
        assert_eq!(on_postgres(&format!("SELECT count(*) FROM pg_roles WHERE rolname = '{account}'")), "0");
        let schemas = on_mariadb(&format!(
            "SELECT count(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{scratch}%'"
        ));
        assert_eq!(schemas, "0");
        assert_eq!(on_mariadb(&format!("SELECT count(*) FROM mysql.user WHERE User = '{account}'")), "0");
    }
}

#[test]
fn a_drill_interrupted_by_sigterm_leaves_no_scratch_server_and_no_directory() {
    let prefix = unique_name("drill_term");
    let pg = PgDb::named(&format!("{prefix}_pg"));
    pg.sql(
        "CREATE TABLE t (n int, s text); INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g",
    );
    let dir = tempfile::tempdir().unwrap();
    let tmp = scratch_base();
    let store = dir.path().join("store");
    let config = format!(
        "bind = \"127.0.0.1:0\"\n[store]\nurl = \"file://{}\"\n{}",
        store.display(),
        pg_source("pgsrc", &format!("{prefix}_*"))
    );

    let mut serve = serve_now(&config, dir.path(), tmp.path());
    // Once the drill's scratch server listens on its socket, the service is told to stop.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let running = std::fs::read_dir(tmp.path()).unwrap().flatten().any(|e| e.path().join(".s.PGSQL.5432").exists());
        if running {
            break;
        }
        assert!(Instant::now() < deadline, "no scratch server started");
        assert!(serve.try_wait().unwrap().is_none(), "serve exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    sigterm_and_wait(&mut serve);

    let recorded: Vec<String> =
        crate::support::files_under(&store).into_iter().filter(|f| f.contains("verifications/")).collect();
    assert!(recorded.is_empty(), "an interrupted drill records nothing: {recorded:?}");
    assert!(processes_naming(tmp.path()).is_empty(), "{:?}", processes_naming(tmp.path()));
    assert!(left_in(tmp.path()).is_empty(), "scratch directories left: {:?}", left_in(tmp.path()));
}

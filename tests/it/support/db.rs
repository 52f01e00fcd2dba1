//! Throwaway databases on the real servers, each uniquely named and dropped when the test ends.

use std::process::Command;

/// A unique, valid database name starting with `prefix`.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A database on the PostgreSQL test server.
pub struct PgDb {
    /// Its name.
    pub name: String,
}

impl PgDb {
    /// Creates a new empty database named `prefix_<random>`.
    pub fn create(prefix: &str) -> Self {
        Self::named(&unique_name(prefix))
    }

    /// Creates a new empty database named exactly `name` (any name: it is quoted).
    pub fn named(name: &str) -> Self {
        Self::psql_on("postgres", &format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\"")));
        Self { name: name.to_owned() }
    }

    fn psql_on(db: &str, sql: &str) -> String {
        run(
            "psql",
            &[
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ],
        )
    }

    /// Runs SQL in this database; answers psql's unaligned output.
    pub fn sql(&self, sql: &str) -> String {
        Self::psql_on(&self.name, sql).trim().to_owned()
    }

    /// A fingerprint of every user table: name, row count and an md5 over its rows in order.
    pub fn fingerprint(&self) -> String {
        let tables = self.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1");
        tables
            .lines()
            .map(|t| {
                self.sql(&format!(
                    "SELECT '{t}:' || count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '-') FROM \"{t}\" x"
                ))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Restores a custom-format dump into this (empty) database with the stock `pg_restore`.
    pub fn restore(&self, dump: &[u8]) {
        super::run_with_stdin(
            "pg_restore",
            &["--no-owner", "--exit-on-error", "-h", "127.0.0.1", "-U", "postgres", "-d", &self.name],
            dump,
        );
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-c"])
            .arg(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name.replace('"', "\"\"")))
            .output();
    }
}

/// A schema (database) on the MariaDB test server.
pub struct MyDb {
    /// Its name.
    pub name: String,
}

impl MyDb {
    /// Creates a new empty schema named `prefix_<random>`.
    pub fn create(prefix: &str) -> Self {
        Self::named(&unique_name(prefix))
    }

    /// Creates a new empty schema named exactly `name` (any name: it is quoted).
    pub fn named(name: &str) -> Self {
        Self::mysql_on(None, &format!("CREATE DATABASE `{}` CHARACTER SET utf8mb4", name.replace('`', "``")));
        Self { name: name.to_owned() }
    }

    fn mysql_on(db: Option<&str>, sql: &str) -> String {
        let mut args = vec![
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "-u",
            "root",
            "--protocol=TCP",
            "-N",
            "-B",
            "--default-character-set=utf8mb4",
        ];
        // `--database=NAME`, never a bare argument: a schema may be called `--result-file=x.txt`.
        let database;
        if let Some(db) = db {
            database = format!("--database={db}");
            args.push(&database);
        }
        args.extend(["-e", sql]);
        run("mysql", &args)
    }

    /// Runs SQL in this schema.
    pub fn sql(&self, sql: &str) -> String {
        Self::mysql_on(Some(&self.name), sql).trim().to_owned()
    }

    /// A fingerprint of every table: name, row count and a checksum.
    pub fn fingerprint(&self) -> String {
        let tables = self.sql(&format!(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = '{}' ORDER BY 1",
            self.name
        ));
        tables
            .lines()
            .map(|t| {
                let count = self.sql(&format!("SELECT count(*) FROM `{t}`"));
                let sum = self.sql(&format!("CHECKSUM TABLE `{t}`"));
                let sum = sum.split_whitespace().last().unwrap_or("").to_owned();
                format!("{t}:{count}:{sum}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Restores an SQL dump into this (empty) schema with the stock `mysql` client.
    pub fn restore(&self, dump: &[u8]) {
        super::run_with_stdin(
            "mysql",
            &[
                "-h",
                "127.0.0.1",
                "-P",
                "3306",
                "-u",
                "root",
                "--protocol=TCP",
                "--default-character-set=utf8mb4",
                &format!("--database={}", self.name),
            ],
            dump,
        );
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        let _ = Command::new("mysql")
            .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "--protocol=TCP", "-e"])
            .arg(format!("DROP DATABASE IF EXISTS `{}`", self.name.replace('`', "``")))
            .output();
    }
}

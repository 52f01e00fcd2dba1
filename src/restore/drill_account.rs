//! The throwaway account a restore drill restores as (ADR 0012).
//!
//! A backup holds code. PostgreSQL functions called by CHECK constraints, defaults, index
//! expressions and triggers run while the backup is restored; MySQL views, routines, triggers and
//! events run as their `DEFINER`. Restored with the configured verification URL (often a
//! superuser), that code would run with its privileges: `ALTER ROLE … SUPERUSER`, `CREATE USER`,
//! writes to other databases of the verification server, and the drill would still say `ok`.
//!
//! So a drill never restores as the configured account. [`DrillAccount::create`] connects with it
//! and creates:
//! - **PostgreSQL**: a role `data_backup_drill_<random>` with `LOGIN`, a random password valid for
//!   a week (longer than any drill), and none of `SUPERUSER`, `CREATEDB`, `CREATEROLE`,
//!   `REPLICATION`, `BYPASSRLS`; and the scratch database `data_backup_verify_<same random>`,
//!   **owned by that role**.
//! - **MySQL/MariaDB**: a user `data_backup_drill_<random>` (at the host the server sees this
//!   service connect from) with a random password, granted `ALL` on the schemas named
//!   `data_backup_verify_<same random>…` only (the scratch schema and the restore's side schema).
//!
//! The drill then restores, counts and runs its checks **connected as that account** (not `SET
//! ROLE`, which restored code could `RESET`), so the worst a hostile backup can do is fail its own
//! drill. [`DrillAccount::remove`] drops the scratch database(s) and the account with the
//! configured URL, whatever happened before.

use chrono::Utc;
use mysql_async::prelude::Queryable;
use secrecy::SecretString;

use super::error::{RestoreError, db_error};
use super::{my, pg};
use crate::settings::ServerUrl;

/// Prefix of the scratch database (PostgreSQL) or schema (MySQL) of a drill.
pub const SCRATCH_PREFIX: &str = "data_backup_verify_";
/// Prefix of a drill's account.
pub const ACCOUNT_PREFIX: &str = "data_backup_drill_";

/// `'text'` as an SQL string literal (quotes doubled; backslashes doubled for MySQL's default mode).
fn literal(text: &str, backslashes: bool) -> String {
    let text = if backslashes { text.replace('\\', "\\\\") } else { text.to_owned() };
    format!("'{}'", text.replace('\'', "''"))
}

/// A throwaway account and the scratch database it owns, on a verification server.
pub struct DrillAccount {
    admin: ServerUrl,
    url: ServerUrl,
    database: String,
    account: String,
    /// MySQL: the host part of the account.
    host: Option<String>,
}

impl std::fmt::Debug for DrillAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DrillAccount").field("url", &self.url).field("database", &self.database).finish_non_exhaustive()
    }
}

impl DrillAccount {
    /// Creates the account and (PostgreSQL) its scratch database on `admin`'s server, connected
    /// with `admin`. Nothing is left behind when it fails.
    pub async fn create(admin: &ServerUrl) -> Result<Self, RestoreError> {
        let id = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let password = hex::encode(rand::random::<[u8; 24]>());
        let mut me = Self {
            admin: admin.clone(),
            url: ServerUrl {
                user: format!("{ACCOUNT_PREFIX}{id}"),
                password: Some(SecretString::from(password.clone())),
                dbname: None,
                ..admin.clone()
            },
            database: format!("{SCRATCH_PREFIX}{id}"),
            account: format!("{ACCOUNT_PREFIX}{id}"),
            host: None,
        };
        let made =
            if admin.scheme == "postgres" { me.create_pg(&password).await } else { me.create_my(&password).await };
        match made {
            Ok(()) => {
                tracing::info!(account = %me.account, db.name = %me.database, "created the drill's throwaway account");
                Ok(me)
            }
            Err(e) => {
                if let Err(left) = me.remove().await {
                    tracing::warn!(account = %me.account, error = %left, "could not remove a half-created drill account");
                }
                Err(e)
            }
        }
    }

    async fn create_pg(&self, password: &str) -> Result<(), RestoreError> {
        let admin = pg::admin(&self.admin).await?;
        let until = (Utc::now() + chrono::Duration::days(7)).to_rfc3339();
        let role = pg::ident(&self.account);
        let statements = [
            format!(
                "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS \
                 PASSWORD {} VALID UNTIL {}",
                literal(password, false),
                literal(&until, false)
            ),
            format!("CREATE DATABASE {} OWNER {role}", pg::ident(&self.database)),
        ];
        for sql in statements {
            admin
                .batch_execute(&sql)
                .await
                .map_err(|e| db_error(&self.admin, &crate::util::error::error_chain_of(&e)))?;
        }
        Ok(())
    }

    async fn create_my(&mut self, password: &str) -> Result<(), RestoreError> {
        let mut conn = my::connect(&self.admin).await?;
        let e = |e: mysql_async::Error| db_error(&self.admin, &e);
        // The host this service connects from, as the server sees it: the account matches exactly
        // the connections the restore tools will make.
        let host: Option<String> = conn.query_first("SELECT SUBSTRING_INDEX(USER(), '@', -1)").await.map_err(e)?;
        let host = host.unwrap_or_else(|| "%".to_owned());
        self.host = Some(host.clone());
        let account = format!("{}@{}", literal(&self.account, true), literal(&host, true));
        // `_` is a wildcard in a grant's schema name: escaped, the pattern is exactly this prefix.
        let schemas = format!("`{}%`", self.database.replace('_', "\\_"));
        let statements = [
            format!("CREATE USER {account} IDENTIFIED BY {}", literal(password, true)),
            format!("GRANT ALL PRIVILEGES ON {schemas}.* TO {account}"),
        ];
        for sql in statements {
            conn.query_drop(sql).await.map_err(e)?;
        }
        let _ = conn.disconnect().await;
        Ok(())
    }

    /// The verification server, as the throwaway account.
    #[must_use]
    pub fn url(&self) -> &ServerUrl {
        &self.url
    }

    /// The scratch database (schema) the drill restores into.
    #[must_use]
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Drops the scratch database(s) and the account; answers what could not be dropped.
    pub async fn remove(&self) -> Result<(), String> {
        if self.admin.scheme == "postgres" { self.remove_pg().await } else { self.remove_my().await }
    }

    async fn remove_pg(&self) -> Result<(), String> {
        let admin = pg::admin(&self.admin).await.map_err(|e| e.to_string())?;
        pg::drop_database(&admin, &self.database).await;
        let mut left = Vec::new();
        if pg::exists(&admin, &self.admin, &self.database).await.map_err(|e| e.to_string())? {
            left.push(format!("database `{}` could not be dropped", self.database));
        }
        if let Err(e) = admin.batch_execute(&format!("DROP ROLE IF EXISTS {}", pg::ident(&self.account))).await {
            left.push(format!(
                "role `{}` could not be dropped: {}",
                self.account,
                crate::util::error::error_chain_of(&e)
            ));
        }
        if left.is_empty() { Ok(()) } else { Err(left.join("; ")) }
    }

    async fn remove_my(&self) -> Result<(), String> {
        let mut conn = my::connect(&self.admin).await.map_err(|e| e.to_string())?;
        let mut left = Vec::new();
        let pattern = format!("{}%", self.database.replace('_', "\\_"));
        let schemas: Vec<String> = conn
            .exec("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?", (&pattern,))
            .await
            .map_err(|e| e.to_string())?;
        for schema in schemas {
            if let Err(e) = conn.query_drop(format!("DROP DATABASE IF EXISTS {}", my::ident(&schema))).await {
                left.push(format!("schema `{schema}` could not be dropped: {e}"));
            }
        }
        if let Some(host) = &self.host {
            let sql = format!("DROP USER IF EXISTS {}@{}", literal(&self.account, true), literal(host, true));
            if let Err(e) = conn.query_drop(sql).await {
                left.push(format!("user `{}` could not be dropped: {e}", self.account));
            }
        }
        let _ = conn.disconnect().await;
        if left.is_empty() { Ok(()) } else { Err(left.join("; ")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_cannot_end_early() {
        assert_eq!(literal("it's", false), "'it''s'");
        assert_eq!(literal(r"a\'b", true), r"'a\\''b'");
    }
}

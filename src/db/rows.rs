//! The one row count: every user table of a database and its rows, named as a manifest's
//! `row_counts` name them (`schema.table` for PostgreSQL, `table` for MySQL/MariaDB). The export
//! counts with it (inside the dump's snapshot) and a restore drill counts the restored database
//! with it, so that the two always count alike.

use std::collections::BTreeMap;

use mysql_async::prelude::Queryable;

use super::ident;

/// The user tables of a PostgreSQL database (plain and partitioned; system schemas left out), as
/// `FROM … WHERE …` to select from.
pub const PG_USER_TABLES: &str = "pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg_toast%'";

/// Rows per table of the database `client` is connected to, in the client's current transaction.
pub async fn pg(client: &tokio_postgres::Client) -> Result<BTreeMap<String, u64>, tokio_postgres::Error> {
    let tables = client.query(&format!("SELECT n.nspname, c.relname FROM {PG_USER_TABLES} ORDER BY 1, 2"), &[]).await?;
    let mut counts = BTreeMap::new();
    for t in tables {
        let (schema, table): (String, String) = (t.get(0), t.get(1));
        let sql = format!("SELECT count(*) FROM {}.{}", ident::pg(&schema), ident::pg(&table));
        let n: i64 = client.query_one(&sql, &[]).await?.get(0);
        counts.insert(format!("{schema}.{table}"), u64::try_from(n).unwrap_or(0));
    }
    Ok(counts)
}

/// Rows per base table of the schema `schema`, in the connection's current transaction.
pub async fn my(conn: &mut mysql_async::Conn, schema: &str) -> Result<BTreeMap<String, u64>, mysql_async::Error> {
    let tables: Vec<String> = conn
        .exec(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1",
            (schema,),
        )
        .await?;
    let mut counts = BTreeMap::new();
    for t in tables {
        let n: Option<u64> =
            conn.query_first(format!("SELECT COUNT(*) FROM {}.{}", ident::my(schema), ident::my(&t))).await?;
        counts.insert(t, n.unwrap_or(0));
    }
    Ok(counts)
}

//! MySQL/MariaDB: the load into a side schema, the transforms there, and the swap of its tables
//! (with the triggers, views, routines and events around the atomic `RENAME TABLE`).

use std::path::PathBuf;

use mysql_async::prelude::Queryable;
use tokio::process::Command;

use crate::db::targets::url_password;
use crate::settings::ServerUrl;
use crate::store::manifest::DumpFormat;
/// How long a MySQL swap waits for another session's metadata lock before it gives up.
const SWAP_LOCK_WAIT_SECS: u32 = 30;

use super::error::{RestoreError, db_error};
use super::names::{MYSQL_MAX_IDENT, old_name, side_name};
use super::pump::{Load, Segment, run_load};
use super::request::{Job, ToolDirs};
use super::stream::{Progress, open_dump};
use super::{database_lines, definers};

pub(super) use crate::db::ident::my as ident;
use crate::db::targets::is_socket;

async fn client(dirs: &ToolDirs) -> Result<PathBuf, RestoreError> {
    if let Some(tool) = crate::db::tools::first_of(dirs.mysql_bin_dir.as_deref(), &["mariadb", "mysql"]).await {
        return Ok(tool.path);
    }
    Err(RestoreError::Tool {
        tool: "mysql".into(),
        status: "not found".into(),
        stderr: "install the MariaDB or MySQL client or set export.mysql_bin_dir".into(),
    })
}

pub(super) async fn connect(server: &ServerUrl) -> Result<mysql_async::Conn, RestoreError> {
    mysql_async::Conn::new(crate::db::targets::url_my(server)).await.map_err(|e| db_error(server, &e))
}

type Res<T> = Result<T, RestoreError>;

async fn run(conn: &mut mysql_async::Conn, server: &ServerUrl, sql: &str) -> Res<()> {
    conn.query_drop(sql).await.map_err(|e| db_error(server, &e))
}

/// A stored object recreated from its `SHOW CREATE` text.
#[derive(Clone, Debug)]
struct Stored {
    kind: &'static str,
    name: String,
    create: String,
    sql_mode: Option<String>,
}

/// What a schema holds.
#[derive(Debug, Default)]
struct Objects {
    tables: Vec<String>,
    views: Vec<Stored>,
    triggers: Vec<Stored>,
    routines: Vec<Stored>,
    events: Vec<Stored>,
}

impl Objects {
    fn is_empty(&self) -> bool {
        self.tables.is_empty()
            && self.views.is_empty()
            && self.triggers.is_empty()
            && self.routines.is_empty()
            && self.events.is_empty()
    }
}

fn col(row: &mysql_async::Row, name: &str) -> Option<String> {
    row.get_opt::<Option<String>, &str>(name).and_then(Result::ok).flatten()
}

async fn objects(conn: &mut mysql_async::Conn, server: &ServerUrl, schema: &str) -> Res<Objects> {
    let e = |e: mysql_async::Error| db_error(server, &e);
    let mut o = Objects {
        tables: conn
            .exec(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? \
                 AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE') ORDER BY 1",
                (schema,),
            )
            .await
            .map_err(e)?,
        ..Objects::default()
    };
    let q = ident(schema);
    let views: Vec<String> = conn
        .exec("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? ORDER BY 1", (schema,))
        .await
        .map_err(e)?;
    for v in views {
        let row: Option<mysql_async::Row> =
            conn.query_first(format!("SHOW CREATE VIEW {q}.{}", ident(&v))).await.map_err(e)?;
        if let Some(create) = row.as_ref().and_then(|r| col(r, "Create View")) {
            o.views.push(Stored { kind: "VIEW", name: v, create, sql_mode: None });
        }
    }
    let triggers: Vec<String> = conn
        .exec("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY 1", (schema,))
        .await
        .map_err(e)?;
    for t in triggers {
        let row: Option<mysql_async::Row> =
            conn.query_first(format!("SHOW CREATE TRIGGER {q}.{}", ident(&t))).await.map_err(e)?;
        if let Some(r) = row
            && let Some(create) = col(&r, "SQL Original Statement")
        {
            o.triggers.push(Stored { kind: "TRIGGER", name: t, create, sql_mode: col(&r, "sql_mode") });
        }
    }
    let routines: Vec<(String, String)> = conn
        .exec(
            "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? ORDER BY 1",
            (schema,),
        )
        .await
        .map_err(e)?;
    for (name, kind) in routines {
        let (kind, column) = if kind == "FUNCTION" {
            ("FUNCTION", "Create Function")
        } else if kind == "PACKAGE" || kind == "PACKAGE BODY" {
            continue;
        } else {
            ("PROCEDURE", "Create Procedure")
        };
        let row: Option<mysql_async::Row> =
            conn.query_first(format!("SHOW CREATE {kind} {q}.{}", ident(&name))).await.map_err(e)?;
        if let Some(r) = row
            && let Some(create) = col(&r, column)
        {
            o.routines.push(Stored { kind, name, create, sql_mode: col(&r, "sql_mode") });
        }
    }
    let events: Vec<String> = conn
        .exec("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? ORDER BY 1", (schema,))
        .await
        .map_err(e)?;
    for ev in events {
        let row: Option<mysql_async::Row> =
            conn.query_first(format!("SHOW CREATE EVENT {q}.{}", ident(&ev))).await.map_err(e)?;
        if let Some(r) = row
            && let Some(create) = col(&r, "Create Event")
        {
            o.events.push(Stored { kind: "EVENT", name: ev, create, sql_mode: col(&r, "sql_mode") });
        }
    }
    Ok(o)
}

/// Creates `objs` (their text moved from schema `from` to `to`) in `to`; views are retried
/// until no more can be created, since one may select from another. Answers what failed.
async fn create_objects(conn: &mut mysql_async::Conn, objs: &[Stored], from: &str, to: &str) -> Vec<String> {
    if let Err(e) = conn.query_drop(format!("USE {}", ident(to))).await {
        return vec![e.to_string()];
    }
    let (qf, qt) = (format!("{}.", ident(from)), format!("{}.", ident(to)));
    let mut pending: Vec<&Stored> = objs.iter().collect();
    let mut errors = Vec::new();
    while !pending.is_empty() {
        let mut failed = Vec::new();
        errors.clear();
        for o in &pending {
            if let Some(mode) = &o.sql_mode {
                let _ = conn.exec_drop("SET SESSION sql_mode = ?", (mode,)).await;
            }
            if let Err(e) = conn.query_drop(o.create.replace(&qf, &qt)).await {
                errors.push(format!("{} {}: {e}", o.kind, o.name));
                failed.push(*o);
            }
        }
        if failed.len() == pending.len() {
            break;
        }
        pending = failed;
    }
    let _ = conn.query_drop("SET SESSION sql_mode = DEFAULT").await;
    errors
}

async fn recreate(conn: &mut mysql_async::Conn, server: &ServerUrl, objs: &[Stored], from: &str, to: &str) -> Res<()> {
    let errors = create_objects(conn, objs, from, to).await;
    if errors.is_empty() { Ok(()) } else { Err(db_error(server, &errors.join("; "))) }
}

/// Everything up to and including the atomic `RENAME TABLE`: the schemas it needs, then the
/// triggers and views (which cannot move with their tables) and the target's routines and
/// events dropped, then the rename. `names` is (target, side, old); each schema it creates is
/// pushed on `created` as soon as it exists, so a cleanup drops those and nothing else.
async fn before_rename(
    conn: &mut mysql_async::Conn,
    server: &ServerUrl,
    (db, side, old): (&str, &str, Option<&str>),
    charset: Option<&str>,
    new: &Objects,
    previous: &Objects,
    created: &mut Vec<String>,
) -> Res<()> {
    if charset.is_none() {
        let cs = schema_exists(conn, server, side).await?.unwrap_or_default();
        run(conn, server, &format!("CREATE DATABASE {}{cs}", ident(db))).await?;
        created.push(db.to_owned());
    }
    if let Some(o) = old {
        run(conn, server, &format!("CREATE DATABASE {}{}", ident(o), charset.unwrap_or_default())).await?;
        created.push(o.to_owned());
    }
    for (schema, objs) in [(side, new), (db, previous)] {
        for t in &objs.triggers {
            run(conn, server, &format!("DROP TRIGGER {}.{}", ident(schema), ident(&t.name))).await?;
        }
        for v in &objs.views {
            run(conn, server, &format!("DROP VIEW {}.{}", ident(schema), ident(&v.name))).await?;
        }
    }
    for r in &previous.routines {
        run(conn, server, &format!("DROP {} {}.{}", r.kind, ident(db), ident(&r.name))).await?;
    }
    for ev in &previous.events {
        run(conn, server, &format!("DROP EVENT {}.{}", ident(db), ident(&ev.name))).await?;
    }
    // The one atomic step: every table out of the target and every restored table in.
    let mut renames: Vec<String> = Vec::new();
    if let Some(o) = old {
        renames
            .extend(previous.tables.iter().map(|t| format!("{}.{} TO {}.{}", ident(db), ident(t), ident(o), ident(t))));
    }
    renames.extend(new.tables.iter().map(|t| format!("{}.{} TO {}.{}", ident(side), ident(t), ident(db), ident(t))));
    if !renames.is_empty() {
        run(conn, server, &format!("RENAME TABLE {}", renames.join(", "))).await?;
    }
    Ok(())
}

async fn schema_exists(conn: &mut mysql_async::Conn, server: &ServerUrl, schema: &str) -> Res<Option<String>> {
    let row: Option<(String, String)> = conn
        .exec_first(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
            (schema,),
        )
        .await
        .map_err(|e| db_error(server, &e))?;
    Ok(row.map(|(cs, coll)| format!(" CHARACTER SET {cs} COLLATE {coll}")))
}

/// See the module docs. Answers (where the previous tables went, bytes read).
pub(super) async fn restore(job: Job<'_>, db: &str) -> Result<(Option<String>, u64), RestoreError> {
    let Job { server, options, .. } = job;
    let mut conn = connect(server).await?;
    let charset = schema_exists(&mut conn, server, db).await?;
    let exists = charset.is_some();
    if !exists && !options.create {
        return Err(RestoreError::Refused(format!(
            "schema `{db}` does not exist on {server}: pass --create to create it"
        )));
    }
    if exists && !options.replace {
        let n: Option<u64> = conn
            .exec_first("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", (db,))
            .await
            .map_err(|e| db_error(server, &e))?;
        let n = n.unwrap_or(0);
        if n > 0 {
            return Err(RestoreError::Refused(format!(
                "schema `{db}` on {server} is not empty ({n} tables): pass --replace to restore beside it and \
                 swap it in (the old tables are kept in a dated schema)"
            )));
        }
    }
    let side = side_name(db, MYSQL_MAX_IDENT);
    run(&mut conn, server, &format!("CREATE DATABASE {}{}", ident(&side), charset.clone().unwrap_or_default())).await?;
    let loaded = load(job, &side).await;
    let bytes = match loaded {
        Ok(b) => b,
        Err(e) => {
            let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS {}", ident(&side))).await;
            return Err(e);
        }
    };
    let old = swap(&mut conn, server, db, &side, charset.as_deref()).await?;
    let _ = conn.disconnect().await;
    Ok((old, bytes))
}

async fn load(job: Job<'_>, side: &str) -> Result<u64, RestoreError> {
    let Job { store, dirs, manifest, server, ids, transforms, options } = job;
    let mysql = client(dirs).await?;
    let mut cmd = Command::new(&mysql);
    if is_socket(server) {
        cmd.arg("--protocol=SOCKET").arg(format!("--socket={}", server.host));
    } else {
        cmd.arg("--protocol=TCP").arg(format!("--host={}", server.host)).arg(format!("--port={}", server.port));
    }
    cmd.args(["--default-character-set=utf8mb4", "--max-allowed-packet=1073741824"])
        .arg(format!("--user={}", server.user))
        // After `--`, the schema is a name whatever it starts with, never an option.
        .arg("--")
        .arg(side);
    crate::db::tools::my_env(&mut cmd, url_password(server, "MYSQL_PWD").as_ref());
    let mut epilogue = vec![Segment { label: None, bytes: b"\n".to_vec() }];
    epilogue.extend(transforms.iter().map(|t| {
        let mut bytes = t.sql.clone().into_bytes();
        bytes.extend_from_slice(b"\n;\n");
        Segment { label: Some(t.path.display().to_string()), bytes }
    }));
    let mut fetch = open_dump(store, manifest, ids).await?;
    if manifest.format == DumpFormat::CloudSqlGz {
        fetch.reader = Box::pin(database_lines::point_at(fetch.reader, &manifest.database, side));
    }
    if options.strip_definers {
        fetch.reader = Box::pin(definers::strip_definers(fetch.reader));
    }
    let progress = Progress::start(options.progress, fetch.read.clone(), manifest.bytes, format!("restoring {side}"));
    let r =
        run_load(fetch, &manifest.key, Load { converter: None, loader: ("mysql".into(), cmd), prelude: b"", epilogue })
            .await;
    progress.finish().await;
    r
}

/// Moves the side schema's tables (and recreates its other objects) into `db`; the previous
/// tables and objects go to a dated schema. See the module docs for what is not atomic.
async fn swap(
    conn: &mut mysql_async::Conn,
    server: &ServerUrl,
    db: &str,
    side: &str,
    charset: Option<&str>,
) -> Result<Option<String>, RestoreError> {
    // A RENAME or DROP TRIGGER waits for the metadata locks of open transactions on the
    // target; MySQL's default wait is a year. Give up after a bounded wait instead.
    run(conn, server, &format!("SET SESSION lock_wait_timeout = {SWAP_LOCK_WAIT_SECS}")).await?;
    let new = objects(conn, server, side).await?;
    let previous = match charset {
        Some(_) => objects(conn, server, db).await?,
        None => Objects::default(),
    };
    let old = (!previous.is_empty()).then(|| old_name(db, MYSQL_MAX_IDENT));
    let others = |o: &Objects| -> Vec<Stored> {
        o.views.iter().chain(&o.routines).chain(&o.triggers).chain(&o.events).cloned().collect()
    };
    let mut created = vec![side.to_owned()];
    let before = before_rename(conn, server, (db, side, old.as_deref()), charset, &new, &previous, &mut created).await;
    if let Err(e) = before {
        // Nothing has moved: put back those of the target's own triggers, views, routines and
        // events that were already dropped, and discard the restore and the schemas this
        // restore created (a schema it failed to create is someone else's: it stays).
        let still: std::collections::HashSet<(&str, String)> = match objects(conn, server, db).await {
            Ok(now) => others(&now).into_iter().map(|o| (o.kind, o.name)).collect(),
            Err(_) => std::collections::HashSet::new(),
        };
        let missing: Vec<Stored> =
            others(&previous).into_iter().filter(|o| !still.contains(&(o.kind, o.name.clone()))).collect();
        let lost = create_objects(conn, &missing, db, db).await;
        for schema in &created {
            let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS {}", ident(schema))).await;
        }
        let lost = if lost.iter().all(|l| l.contains("already exists")) {
            String::new()
        } else {
            format!("; could not put back: {}", lost.join("; "))
        };
        return Err(RestoreError::Target {
            server: server.to_string(),
            message: format!("the swap failed before any table moved, `{db}` is as it was{lost}: {e}"),
        });
    }
    let after = |what: &str, e: RestoreError| RestoreError::Target {
        server: server.to_string(),
        message: format!(
            "the restored tables are in `{db}`{}, but {what} failed (their definitions are still in `{side}`): {e}",
            old.as_ref().map(|o| format!(" and the previous ones in `{o}`")).unwrap_or_default()
        ),
    };
    recreate(conn, server, &others(&new), side, db)
        .await
        .map_err(|e| after("recreating the views, routines and triggers", e))?;
    if let Some(o) = &old {
        recreate(conn, server, &others(&previous), db, o)
            .await
            .map_err(|e| after("recreating the previous views, routines and triggers", e))?;
    }
    run(conn, server, &format!("DROP DATABASE {}", ident(side)))
        .await
        .map_err(|e| after("dropping the side schema", e))?;
    tracing::info!(db.name = %db, previous = ?old, "swapped the restored tables in");
    Ok(old)
}

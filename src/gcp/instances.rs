//! What is known of one Cloud SQL instance ([`InstanceInfo`]) from the Cloud SQL Admin API or the
//! asset inventory, whether it is backed up ([`instance_verdict`]), its engine, and the databases
//! that are each engine's own (left out of every backup, Cloud SQL's and self-hosted servers').

use crate::model::Engine;
use crate::settings::GcpSourceSettings;

/// The Cloud Asset type of a Cloud SQL instance.
pub const SQL_INSTANCE_ASSET_TYPE: &str = "sqladmin.googleapis.com/Instance";

/// PostgreSQL databases that are Cloud SQL's or the server's own (`postgres` unless configured).
pub const POSTGRES_SYSTEM_DATABASES: [&str; 3] = ["cloudsqladmin", "template0", "template1"];
/// MySQL schemas that are the server's own.
pub const MYSQL_SYSTEM_SCHEMAS: [&str; 4] = ["mysql", "sys", "information_schema", "performance_schema"];
/// SQL Server databases that are the server's own.
pub const SQLSERVER_SYSTEM_DATABASES: [&str; 4] = ["master", "model", "msdb", "tempdb"];

/// What discovery needs to know of one instance, whichever API said it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Project id.
    pub project: String,
    /// Instance name.
    pub name: String,
    /// `RUNNABLE`, `SUSPENDED`, …
    pub state: String,
    /// `CLOUD_SQL_INSTANCE`, `READ_REPLICA_INSTANCE`, `ON_PREMISES_INSTANCE`.
    pub instance_type: String,
    /// The primary of a replica.
    pub master_instance_name: String,
    /// `POSTGRES_16`, `MYSQL_8_0`, `SQLSERVER_2019_STANDARD`, …
    pub database_version: String,
    /// `ALWAYS`, `NEVER` (stopped), `ON_DEMAND`.
    pub activation_policy: String,
}

impl InstanceInfo {
    /// An instance as Cloud SQL Admin describes it (`project` when the answer leaves it out).
    #[must_use]
    pub fn from_sql(i: &google_cloud_sql_v1::model::DatabaseInstance, project: &str) -> Self {
        let name = |n: Option<&str>| n.unwrap_or("UNSPECIFIED").to_owned();
        Self {
            project: if i.project.is_empty() { project.to_owned() } else { i.project.clone() },
            name: i.name.clone(),
            state: name(i.state.name()),
            instance_type: name(i.instance_type.name()),
            master_instance_name: i.master_instance_name.clone(),
            database_version: name(i.database_version.name()),
            activation_policy: i.settings.as_ref().map(|s| name(s.activation_policy.name())).unwrap_or_default(),
        }
    }
}

/// The engine of a `databaseVersion`.
#[must_use]
pub fn engine_of(database_version: &str) -> Option<Engine> {
    let v = database_version.to_ascii_uppercase();
    if v.starts_with("POSTGRES") {
        Some(Engine::Postgres)
    } else if v.starts_with("MYSQL") {
        Some(Engine::Mysql)
    } else if v.starts_with("SQLSERVER") {
        Some(Engine::Sqlserver)
    } else {
        None
    }
}

/// Whether an instance is backed up: its engine, or why it is skipped.
pub fn instance_verdict(i: &InstanceInfo, source: &GcpSourceSettings) -> Result<Engine, String> {
    if i.instance_type == "ON_PREMISES_INSTANCE" {
        return Err("external (on-premises) server, not a Cloud SQL instance".to_owned());
    }
    let replica = i.instance_type == "READ_REPLICA_INSTANCE" || !i.master_instance_name.is_empty();
    if replica && !source.include_replicas {
        return Err("read replica: its primary is backed up (include_replicas = true backs it up too)".to_owned());
    }
    if i.state != "RUNNABLE" {
        return Err(format!("state {}: only RUNNABLE instances can export", i.state));
    }
    if i.activation_policy == "NEVER" && !source.include_stopped {
        return Err("stopped (activation policy NEVER; include_stopped = true backs it up anyway)".to_owned());
    }
    engine_of(&i.database_version).ok_or_else(|| format!("unknown database version `{}`", i.database_version))
}

/// Whether `database` is the server's own for `engine`.
#[must_use]
pub fn is_system_database(engine: Engine, database: &str, keep_postgres: bool) -> bool {
    match engine {
        Engine::Postgres => POSTGRES_SYSTEM_DATABASES.contains(&database) || (database == "postgres" && !keep_postgres),
        Engine::Mysql => MYSQL_SYSTEM_SCHEMAS.contains(&database.to_ascii_lowercase().as_str()),
        Engine::Sqlserver => SQLSERVER_SYSTEM_DATABASES.contains(&database.to_ascii_lowercase().as_str()),
    }
}

/// Parses `//cloudsql.googleapis.com/projects/P/instances/I` into (P, I).
#[must_use]
pub fn parse_instance_asset_name(name: &str) -> Option<(String, String)> {
    let rest = name.strip_prefix("//cloudsql.googleapis.com/projects/")?;
    let (project, instance) = rest.split_once("/instances/")?;
    (!project.is_empty() && !instance.is_empty() && !instance.contains('/'))
        .then(|| (project.to_owned(), instance.to_owned()))
}

/// An instance as the asset inventory found it; `None` when the name is not a Cloud SQL instance's.
#[must_use]
pub fn instance_from_asset(r: &google_cloud_asset_v1::model::ResourceSearchResult) -> Option<InstanceInfo> {
    let (project, name) = parse_instance_asset_name(&r.name)?;
    let attr = |k: &str| {
        r.additional_attributes.as_ref().and_then(|a| a.get(k)).and_then(|v| v.as_str()).unwrap_or_default().to_owned()
    };
    Some(InstanceInfo {
        project,
        name,
        state: r.state.clone(),
        instance_type: attr("instanceType"),
        master_instance_name: attr("masterInstanceName"),
        database_version: attr("databaseVersion"),
        activation_policy: attr("activationPolicy"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> GcpSourceSettings {
        crate::settings::Settings::from_toml("[[sources]]\nname = \"g\"\nkind = \"gcp\"\nprojects = [\"p\"]")
            .unwrap()
            .gcp_sources
            .remove(0)
    }

    fn info(state: &str, ty: &str, version: &str) -> InstanceInfo {
        InstanceInfo {
            project: "p".into(),
            name: "i".into(),
            state: state.into(),
            instance_type: ty.into(),
            database_version: version.into(),
            activation_policy: "ALWAYS".into(),
            ..InstanceInfo::default()
        }
    }

    #[test]
    fn only_runnable_primaries_are_kept_and_every_skip_says_why() {
        let s = source();
        assert_eq!(instance_verdict(&info("RUNNABLE", "CLOUD_SQL_INSTANCE", "POSTGRES_16"), &s), Ok(Engine::Postgres));
        assert_eq!(instance_verdict(&info("RUNNABLE", "CLOUD_SQL_INSTANCE", "MYSQL_8_0"), &s), Ok(Engine::Mysql));
        assert_eq!(
            instance_verdict(&info("RUNNABLE", "CLOUD_SQL_INSTANCE", "SQLSERVER_2019_STANDARD"), &s),
            Ok(Engine::Sqlserver)
        );
        assert!(
            instance_verdict(&info("RUNNABLE", "READ_REPLICA_INSTANCE", "POSTGRES_16"), &s)
                .unwrap_err()
                .contains("replica")
        );
        assert!(
            instance_verdict(&info("SUSPENDED", "CLOUD_SQL_INSTANCE", "POSTGRES_16"), &s)
                .unwrap_err()
                .contains("SUSPENDED")
        );
        assert!(
            instance_verdict(&info("RUNNABLE", "ON_PREMISES_INSTANCE", "MYSQL_5_7"), &s)
                .unwrap_err()
                .contains("external")
        );
        let mut stopped = info("RUNNABLE", "CLOUD_SQL_INSTANCE", "POSTGRES_16");
        stopped.activation_policy = "NEVER".into();
        assert!(instance_verdict(&stopped, &s).unwrap_err().contains("stopped"));
        let with_replicas = GcpSourceSettings { include_replicas: true, include_stopped: true, ..s };
        assert!(instance_verdict(&info("RUNNABLE", "READ_REPLICA_INSTANCE", "POSTGRES_16"), &with_replicas).is_ok());
        assert!(instance_verdict(&stopped, &with_replicas).is_ok());
    }

    #[test]
    fn system_databases_are_dropped_per_engine() {
        for db in ["cloudsqladmin", "template0", "template1", "postgres"] {
            assert!(is_system_database(Engine::Postgres, db, false), "{db}");
        }
        assert!(!is_system_database(Engine::Postgres, "postgres", true));
        for db in ["mysql", "sys", "information_schema", "performance_schema"] {
            assert!(is_system_database(Engine::Mysql, db, false), "{db}");
        }
        for db in ["master", "model", "msdb", "tempdb"] {
            assert!(is_system_database(Engine::Sqlserver, db, false), "{db}");
        }
        assert!(!is_system_database(Engine::Mysql, "app", false));
    }

    #[test]
    fn asset_names_give_project_and_instance() {
        assert_eq!(
            parse_instance_asset_name("//cloudsql.googleapis.com/projects/p-1/instances/pg"),
            Some(("p-1".into(), "pg".into()))
        );
        assert_eq!(parse_instance_asset_name("//cloudsql.googleapis.com/projects/p/instances/"), None);
        assert_eq!(parse_instance_asset_name("//compute.googleapis.com/projects/p/zones/z"), None);
    }
}

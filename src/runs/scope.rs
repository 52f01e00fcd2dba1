//! A run's scope: the sources, folders, projects and extra exclusion patterns a `POST /schedule`
//! body narrows one run to (the scheduler job carries the scope, so one service can run
//! "production nightly" and "development weekly"), checked like the settings, and resolved into
//! the sources that run: a `gcp` source walks the named roots instead of its configured ones.
//!
//! A root (folder or project) that no selected `gcp` source covers, by its configuration or its
//! ancestry, widens the run beyond what the service is configured to back up: [`Narrowed::beyond`]
//! names it, and the caller decides who may do that (`http/schedule.rs`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::discovery::{DiscoveryError, Exclusions, Root};
use crate::export::source::Source;
use crate::model::{InvalidField, ProjectId, SourceName};
use crate::settings::folder_name;
use crate::util::glob::compile_glob;

/// The scope of one run (every field optional; an empty scope is the configured one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunScope {
    /// Only these configured sources (default: all of them; with `folders` or `projects`, every
    /// `gcp` source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub sources: Vec<SourceName>,
    /// Folders walked recursively instead of the `gcp` sources' configured roots (`folders/N` or `N`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<String>,
    /// Projects looked at instead of the `gcp` sources' configured roots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub projects: Vec<ProjectId>,
    /// Exclusion patterns added to the configured ones for this run (`project/instance/database` globs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

impl RunScope {
    /// True when the scope names nothing (the run is the configured one).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.folders.is_empty() && self.projects.is_empty() && self.exclude.is_empty()
    }

    /// Checks the scope as the settings are checked, and writes folders as `folders/N`.
    pub fn validate(&mut self) -> Result<(), InvalidField> {
        for folder in &mut self.folders {
            *folder = folder_name(folder).map_err(|reason| InvalidField::new("folders", reason))?;
        }
        for pattern in &self.exclude {
            compile_glob(pattern)
                .map_err(|e| InvalidField::new("exclude", format!("`{pattern}` is not a valid pattern: {e}")))?;
        }
        Ok(())
    }
}

/// What a scope resolves to.
pub struct Narrowed {
    /// The sources that run, `gcp` ones walking the scope's roots.
    pub sources: Vec<Source>,
    /// The configured exclusions and the scope's.
    pub exclusions: Exclusions,
    /// The roots no selected source covers, each with the reason: they widen the run.
    pub beyond: Vec<String>,
}

/// Why a scope cannot run.
#[derive(Debug, thiserror::Error)]
pub enum RunScopeError {
    /// The scope names something that does not exist or cannot be run.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The ancestry of a root could not be read (Resource Manager failing).
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
}

/// Resolves `scope` (already validated) against the configured `sources` and `exclusions`.
pub async fn narrow(sources: &[Source], exclusions: &Exclusions, scope: &RunScope) -> Result<Narrowed, RunScopeError> {
    let exclusions = exclusions
        .with(&scope.exclude)
        .map_err(|e| InvalidField::new("exclude", format!("a pattern is not valid: {e}")))?;
    let mut selected: Vec<&Source> = Vec::new();
    for name in &scope.sources {
        let source = sources.iter().find(|s| &s.name == name).ok_or_else(|| {
            let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
            InvalidField::new("sources", format!("no source is named `{name}` (configured: {})", names.join(", ")))
        })?;
        if !selected.iter().any(|s| s.name == source.name) {
            selected.push(source);
        }
    }
    let roots: Vec<Root<'_>> =
        scope.folders.iter().map(|f| Root::Folder(f)).chain(scope.projects.iter().map(Root::Project)).collect();
    if roots.is_empty() {
        let sources = if selected.is_empty() { sources.to_vec() } else { selected.into_iter().cloned().collect() };
        return Ok(Narrowed { sources, exclusions, beyond: Vec::new() });
    }
    // Roots are walked by `gcp` sources; a self-hosted source runs only when named.
    let (gcp, mut run): (Vec<&Source>, Vec<Source>) = if selected.is_empty() {
        (sources.iter().filter(|s| s.any_instance).collect(), Vec::new())
    } else {
        let (gcp, other): (Vec<&Source>, Vec<&Source>) = selected.into_iter().partition(|s| s.any_instance);
        (gcp, other.into_iter().cloned().collect())
    };
    if gcp.is_empty() {
        return Err(InvalidField::new("folders", "no `gcp` source is selected to walk the folders and projects").into());
    }
    // Each source's (folders, projects) for this run.
    let mut walks: Vec<(Vec<String>, Vec<ProjectId>)> = vec![(Vec::new(), Vec::new()); gcp.len()];
    let walk = |walks: &mut Vec<(Vec<String>, Vec<ProjectId>)>, i: usize, root: Root<'_>| match root {
        Root::Folder(f) => walks[i].0.push(f.to_owned()),
        Root::Project(p) => walks[i].1.push(p.clone()),
    };
    let mut beyond = Vec::new();
    for root in roots {
        let (mut covered, mut why_not) = (false, None);
        for (i, source) in gcp.iter().enumerate() {
            match source.discovery.root_outside(root).await? {
                None => {
                    covered = true;
                    walk(&mut walks, i, root);
                }
                Some(why) => why_not = why_not.or(Some(why)),
            }
        }
        if !covered {
            if gcp.len() > 1 {
                return Err(InvalidField::new(
                    "sources",
                    format!("{root} lies under none of the `gcp` sources: name the one source that should walk it"),
                )
                .into());
            }
            walk(&mut walks, 0, root);
            beyond.push(format!("{root}: {}", why_not.unwrap_or_default()));
        }
    }
    for (source, (folders, projects)) in gcp.into_iter().zip(walks) {
        if folders.is_empty() && projects.is_empty() {
            continue;
        }
        let discovery = source.discovery.narrowed(&folders, &projects).expect("a gcp source walks roots");
        run.push(Source { discovery, ..source.clone() });
    }
    Ok(Narrowed { sources: run, exclusions, beyond })
}

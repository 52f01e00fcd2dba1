//! Whether a project or folder lies inside a `gcp` source: one of its `projects`, or under one of
//! its `folders` (Resource Manager `projects.get`, then `folders.get` up to the organization). An
//! export asked for by hand checks it (`Discovery::out_of_scope`), and so does a run's scope
//! (`Discovery::root_outside`).

use super::GcpDiscovery;
use crate::discovery::DiscoveryError;
use crate::gcp::api::CallError;
use crate::gcp::clients::Clients;
use crate::model::ProjectId;

/// Folders nest at most 10 deep under an organization; the bound only guards a cycle.
const MAX_DEPTH: usize = 16;

impl GcpDiscovery {
    /// Why `project` lies outside this source (`None`: inside), naming its ancestors as far as
    /// they were seen.
    pub(super) async fn project_outside(&self, project: &ProjectId) -> Result<Option<String>, DiscoveryError> {
        if self.source.projects.contains(project) {
            return Ok(None);
        }
        let what = format!("project `{project}`");
        if self.source.folders.is_empty() {
            return Ok(Some(self.outside(&what, &[])));
        }
        let c = self.clients().await?;
        let name = format!("projects/{project}");
        let parent = match self
            .call(&self.apis.resource_manager, "projects.get", || c.projects.get_project().set_name(&name).send())
            .await
        {
            Ok(project) => project.parent,
            // Google answers 403 both for a project the caller may not read and for none at all.
            Err(e @ (CallError::NotFound(_) | CallError::Denied(_))) => {
                return Ok(Some(format!(
                    "{what} cannot be read by this service ({e}), so it is not known to be in source `{}`'s \
                     `projects` or under its `folders`",
                    self.source.name
                )));
            }
            Err(e) => return Err(self.ancestry_failed(&what, &e)),
        };
        self.folders_above(c, &what, parent).await
    }

    /// Why the folder `folder` (`folders/N`) lies outside this source (`None`: it is one of its
    /// `folders` or under one).
    pub(super) async fn folder_outside(&self, folder: &str) -> Result<Option<String>, DiscoveryError> {
        let what = format!("folder `{folder}`");
        if self.source.folders.is_empty() {
            return Ok(Some(self.outside(&what, &[])));
        }
        let c = self.clients().await?;
        self.folders_above(c, &what, folder.to_owned()).await
    }

    /// Walks up from `parent` (`folders/N`, or the organization) until one of the source's folders
    /// (`None`) or the top (why `what` is outside).
    async fn folders_above(
        &self,
        c: &Clients,
        what: &str,
        mut parent: String,
    ) -> Result<Option<String>, DiscoveryError> {
        let folders = self.source.folder_names();
        let mut chain = Vec::new();
        while parent.starts_with("folders/") && chain.len() < MAX_DEPTH {
            if folders.contains(&parent) {
                return Ok(None);
            }
            chain.push(parent.clone());
            let folder = match self
                .call(&self.apis.resource_manager, "folders.get", || c.folders.get_folder().set_name(&parent).send())
                .await
            {
                Ok(folder) => folder,
                // A folder above the caller's reach (or none at all: Google answers 403 for both):
                // none of the configured folders is above it.
                Err(CallError::NotFound(_) | CallError::Denied(_)) => break,
                Err(e) => return Err(self.ancestry_failed(what, &e)),
            };
            parent = folder.parent;
        }
        chain.push(parent);
        Ok(Some(self.outside(what, &chain)))
    }

    /// Why `what` is outside this source, naming its ancestors as far as they were seen.
    fn outside(&self, what: &str, ancestors: &[String]) -> String {
        let mut why =
            format!("{what} is neither one of source `{}`'s `projects` nor under its `folders`", self.source.name);
        if !ancestors.is_empty() {
            why.push_str(&format!(" (its ancestors: {})", ancestors.join(" → ")));
        }
        why
    }

    fn ancestry_failed(&self, what: &str, e: &CallError) -> DiscoveryError {
        let (source_name, message) = (self.source.name.to_string(), format!("ancestry of {what}: {e}"));
        match e {
            CallError::Failed(_) => DiscoveryError::Unavailable { source_name, message },
            _ => DiscoveryError::Refused { source_name, message },
        }
    }
}

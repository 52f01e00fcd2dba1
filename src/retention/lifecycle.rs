//! Bucket lifecycle rules rendered from the policy ([`lifecycle`]): GCS JSON, S3 JSON or Terraform.
//! Every rule matches a class prefix, so nothing but backups is ever expired by the bucket.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::error::RetentionError;
use super::prefixes::class_prefix;
use crate::model::calendar::RetentionClass;
use crate::model::names::ProjectId;
use crate::settings::retention::{ClassRule, ColderStorage, RetentionPolicy};

/// Output format of [`lifecycle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleFormat {
    /// GCS bucket `lifecycle` JSON: the body of a bucket PATCH, or `gcloud storage buckets update --lifecycle-file`.
    Gcs,
    /// S3 `LifecycleConfiguration` JSON (`aws s3api put-bucket-lifecycle-configuration --lifecycle-configuration`).
    S3,
    /// Terraform: `lifecycle_rule` blocks for a `google_storage_bucket`, or for an `s3://` store an
    /// `aws_s3_bucket_lifecycle_configuration` resource.
    Terraform,
}

/// Days after which S3 aborts a multipart upload that never completed (an export killed midway).
pub const ABORT_MULTIPART_AFTER_DAYS: u32 = 2;
/// Most lifecycle rules a GCS bucket takes.
const GCS_MAX_RULES: usize = 100;
/// Most lifecycle rules an S3 bucket takes.
const S3_MAX_RULES: usize = 1000;
/// S3 refuses a transition to Standard-IA earlier than this.
const S3_IA_MIN_DAYS: u32 = 30;

/// The retention of one key prefix.
struct PrefixRule {
    id: String,
    prefix: String,
    rule: ClassRule,
}

/// One rule per class prefix; a class with per-source overrides gets one rule per configured
/// source instead (prefix rules cannot exclude, and the shortest matching rule wins), so backups
/// of sources no longer configured are left to the prune for those classes.
fn prefix_rules(policy: &RetentionPolicy, store_prefix: &str) -> Vec<PrefixRule> {
    let full = |p: String| if store_prefix.is_empty() { p } else { format!("{store_prefix}/{p}") };
    let mut rules = Vec::new();
    for class in RetentionClass::ALL {
        let default = policy.class_rule(class);
        if policy.has_source_overrides(class) {
            for source in policy.sources() {
                // Source names are valid project segments; were one not, its backups would match
                // no rule and be left to the prune (never deleted early).
                let Ok(project) = ProjectId::parse(source) else { continue };
                let prefix = class_prefix(class, Some(&project));
                rules.push(PrefixRule {
                    id: format!("data-backup-{}", prefix.trim_end_matches('/').replace('/', "-")),
                    prefix: full(prefix),
                    rule: policy.rule(class, source),
                });
            }
        } else {
            rules.push(PrefixRule {
                id: format!("data-backup-{}", class.as_str()),
                prefix: full(class_prefix(class, None)),
                rule: default,
            });
        }
    }
    rules
}

/// (scheme, bucket, prefix) of a store URL.
fn store_location(store_url: &str) -> Result<(String, String, String), RetentionError> {
    let url = url::Url::parse(store_url).map_err(|e| RetentionError::Lifecycle(format!("store.url: {e}")))?;
    let scheme = url.scheme().to_owned();
    if scheme == "file" {
        return Ok((scheme, String::new(), String::new()));
    }
    Ok((scheme, url.host_str().unwrap_or_default().to_owned(), url.path().trim_matches('/').to_owned()))
}

fn gcs_rules(rules: &[PrefixRule]) -> Result<Vec<Value>, RetentionError> {
    // Rules with the same action and age are merged into one with several prefixes; deletions
    // first, then moves, each by age.
    let mut merged: BTreeMap<(bool, u32, Option<&'static str>), Vec<String>> = BTreeMap::new();
    for r in rules {
        merged.entry((false, r.rule.keep_days, None)).or_default().push(r.prefix.clone());
        if let Some(colder) = r.rule.colder {
            merged.entry((true, colder.after_days, Some(colder.storage.gcs()))).or_default().push(r.prefix.clone());
        }
    }
    if merged.len() > GCS_MAX_RULES {
        return Err(RetentionError::Lifecycle(format!(
            "{} rules, over the {GCS_MAX_RULES} a GCS bucket takes: fewer per-source overrides, or use prune",
            merged.len()
        )));
    }
    Ok(merged
        .into_iter()
        .map(|((_, age, storage), prefixes)| {
            let action = match storage {
                None => json!({"type": "Delete"}),
                Some(class) => json!({"type": "SetStorageClass", "storageClass": class}),
            };
            json!({"action": action, "condition": {"age": age, "matchesPrefix": prefixes}})
        })
        .collect())
}

fn s3_rules(rules: &[PrefixRule]) -> Result<Vec<Value>, RetentionError> {
    if rules.len() > S3_MAX_RULES {
        return Err(RetentionError::Lifecycle(format!("{} rules, over the {S3_MAX_RULES} S3 takes", rules.len())));
    }
    rules
        .iter()
        .map(|r| {
            if r.id.len() > 255 {
                return Err(RetentionError::Lifecycle(format!("rule id {} is longer than S3's 255 characters", r.id)));
            }
            let mut rule = json!({
                "ID": r.id,
                "Status": "Enabled",
                "Filter": {"Prefix": r.prefix},
                "Expiration": {"Days": r.rule.keep_days},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_AFTER_DAYS},
            });
            if let Some(colder) = r.rule.colder {
                if colder.storage == ColderStorage::Nearline && colder.after_days < S3_IA_MIN_DAYS {
                    return Err(RetentionError::Lifecycle(format!(
                        "{}: S3 moves objects to STANDARD_IA after {S3_IA_MIN_DAYS} days at the earliest, not {}",
                        r.prefix, colder.after_days
                    )));
                }
                rule["Transitions"] = json!([{"Days": colder.after_days, "StorageClass": colder.storage.s3()}]);
            }
            Ok(rule)
        })
        .collect()
}

/// A Terraform (HCL) string literal.
fn hcl(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"").replace("${", "$${").replace("%{", "%%{");
    format!("\"{escaped}\"")
}

fn terraform_gcs(rules: &[Value], location: &str) -> String {
    let mut out = format!(
        "# Lifecycle rules for {location}, rendered by `data-backup lifecycle --format terraform` from the\n\
         # [retention] settings: put these blocks in the bucket's google_storage_bucket resource.\n"
    );
    for rule in rules {
        let prefixes: Vec<String> = rule["condition"]["matchesPrefix"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(hcl)
            .collect();
        let _ = write!(
            out,
            "lifecycle_rule {{\n  condition {{\n    age            = {}\n    matches_prefix = [{}]\n  }}\n  action {{\n    type = {}\n",
            rule["condition"]["age"],
            prefixes.join(", "),
            hcl(rule["action"]["type"].as_str().unwrap_or_default()),
        );
        if let Some(class) = rule["action"]["storageClass"].as_str() {
            let _ = writeln!(out, "    storage_class = {}", hcl(class));
        }
        out.push_str("  }\n}\n");
    }
    out
}

fn terraform_s3(rules: &[Value], bucket: &str, location: &str) -> String {
    let mut out = format!(
        "# Lifecycle rules for {location}, rendered by `data-backup lifecycle --format terraform` from the\n\
         # [retention] settings.\nresource \"aws_s3_bucket_lifecycle_configuration\" \"data_backup\" {{\n  bucket = {}\n",
        hcl(bucket)
    );
    for rule in rules {
        let _ = write!(
            out,
            "\n  rule {{\n    id     = {}\n    status = \"Enabled\"\n    filter {{\n      prefix = {}\n    }}\n",
            hcl(rule["ID"].as_str().unwrap_or_default()),
            hcl(rule["Filter"]["Prefix"].as_str().unwrap_or_default()),
        );
        for t in rule["Transitions"].as_array().into_iter().flatten() {
            let _ = write!(
                out,
                "    transition {{\n      days          = {}\n      storage_class = {}\n    }}\n",
                t["Days"],
                hcl(t["StorageClass"].as_str().unwrap_or_default())
            );
        }
        let _ = write!(
            out,
            "    expiration {{\n      days = {}\n    }}\n    abort_incomplete_multipart_upload {{\n      days_after_initiation = {}\n    }}\n  }}\n",
            rule["Expiration"]["Days"], rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        );
    }
    out.push_str("}\n");
    out
}

/// Renders the policy as bucket lifecycle rules for the store at `store_url` (its prefix, if any,
/// is part of every rule's prefix). Every rule matches a class prefix (`daily/`, `weekly/…/`, …):
/// none touches `labels/`, `latest/`, `runs/`, `leases/` or `reports/`. Per class: delete at age
/// `keep_days`, and move to colder storage at `colder_after_days` when set; S3 rules also abort
/// multipart uploads left unfinished for [`ABORT_MULTIPART_AFTER_DAYS`] days (GCS has no such
/// leftovers: the `gs://` store uploads with resumable sessions, which expire on their own).
pub fn lifecycle(policy: &RetentionPolicy, store_url: &str, format: LifecycleFormat) -> Result<String, RetentionError> {
    let (scheme, bucket, prefix) = store_location(store_url)?;
    let rules = prefix_rules(policy, &prefix);
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("plain JSON") + "\n";
    let location = if scheme == "file" { store_url.to_owned() } else { format!("{scheme}://{bucket}/{prefix}") };
    let location = location.trim_end_matches('/');
    match format {
        LifecycleFormat::Gcs => Ok(pretty(&json!({"lifecycle": {"rule": gcs_rules(&rules)?}}))),
        LifecycleFormat::S3 => Ok(pretty(&json!({"Rules": s3_rules(&rules)?}))),
        LifecycleFormat::Terraform if scheme == "s3" => Ok(terraform_s3(&s3_rules(&rules)?, &bucket, location)),
        LifecycleFormat::Terraform => Ok(terraform_gcs(&gcs_rules(&rules)?, location)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::retention::Colder;

    #[test]
    fn lifecycle_rules_never_touch_anything_but_class_prefixes() {
        let policy = RetentionPolicy::default()
            .with_class_rule(
                RetentionClass::Daily,
                ClassRule { keep_days: 60, colder: Some(Colder { after_days: 30, storage: ColderStorage::Nearline }) },
            )
            .with_source_rule("main", RetentionClass::Daily, ClassRule::keep(60))
            .with_source_rule("legacy", RetentionClass::Weekly, ClassRule::keep(3));
        for url in ["file:///tmp/x", "gs://b", "gs://b/some/prefix", "s3://b/p"] {
            let prefix = store_location(url).unwrap().2;
            let expected_start = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
            let gcs: Value = serde_json::from_str(&lifecycle(&policy, url, LifecycleFormat::Gcs).unwrap()).unwrap();
            let s3: Value = serde_json::from_str(&lifecycle(&policy, url, LifecycleFormat::S3).unwrap()).unwrap();
            let mut prefixes: Vec<String> = Vec::new();
            for rule in gcs["lifecycle"]["rule"].as_array().unwrap() {
                let matches = rule["condition"]["matchesPrefix"].as_array().unwrap();
                assert!(!matches.is_empty(), "every GCS rule is limited to prefixes: {rule}");
                prefixes.extend(matches.iter().map(|p| p.as_str().unwrap().to_owned()));
            }
            for rule in s3["Rules"].as_array().unwrap() {
                prefixes.push(rule["Filter"]["Prefix"].as_str().unwrap().to_owned());
            }
            for p in prefixes {
                let rest = p.strip_prefix(&expected_start).unwrap_or_else(|| panic!("{p} is under {expected_start}"));
                let class = rest.split('/').next().unwrap();
                assert!(RetentionClass::from_segment(class).is_some() && rest.ends_with('/'), "{p}");
            }
        }
    }

    #[test]
    fn s3_lifecycle_refuses_standard_ia_before_thirty_days() {
        let policy = RetentionPolicy::default().with_class_rule(
            RetentionClass::Daily,
            ClassRule { keep_days: 9, colder: Some(Colder { after_days: 3, storage: ColderStorage::Nearline }) },
        );
        let err = lifecycle(&policy, "s3://b", LifecycleFormat::S3).unwrap_err().to_string();
        assert!(err.contains("STANDARD_IA after 30 days"), "{err}");
        assert!(lifecycle(&policy, "gs://b", LifecycleFormat::Gcs).is_ok());
    }
}

# Every variable of the module. docs/deploy.md lists them with the same words; a check
# (tests/deploy/test_terraform.py) fails when a variable has no description or type.

# --- Where it runs ---------------------------------------------------------------------------------

variable "project_id" {
  description = "Project the service, its queue, scheduler jobs, bucket, topic and alerts live in (the ops project)."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run service, the Cloud Tasks queue and the Cloud Scheduler jobs (e.g. europe-west1)."
  type        = string
}

variable "name" {
  description = "Name of the Cloud Run service; also the prefix of the queue, jobs, service accounts and topic."
  type        = string
  default     = "data-backup"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name))
    error_message = "name: 3 to 20 lowercase letters, digits and hyphens, starting with a letter (service account ids derive from it)."
  }
}

variable "image" {
  description = "Container image of the service, built from the repository's Dockerfile (e.g. europe-west1-docker.pkg.dev/ops/images/data-backup:v1.4.0). Pin a tag or digest."
  type        = string
}

variable "labels" {
  description = "Labels put on every resource that takes labels."
  type        = map(string)
  default     = {}
}

variable "enable_apis" {
  description = "Enable the Google APIs the service calls in project_id (Cloud Run, Cloud Tasks, Cloud Scheduler, Cloud SQL Admin, Resource Manager, Cloud Asset, Pub/Sub, Monitoring, Logging, Trace, IAM, Storage, Secret Manager). Turn off when another stack manages project services."
  type        = bool
  default     = true
}

# --- What is backed up -------------------------------------------------------------------------------

variable "folders" {
  description = "Folders whose projects are searched for Cloud SQL instances, recursively (`folders/123456789` or `123456789`). Needs organization_id."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for f in var.folders : can(regex("^(folders/)?[0-9]+$", f))])
    error_message = "folders: each entry is `folders/NUMBER` or `NUMBER`."
  }
}

variable "projects" {
  description = "Projects searched for Cloud SQL instances besides those under folders (project ids)."
  type        = list(string)
  default     = []
}

variable "organization_id" {
  description = "Organization (numeric id) that holds the folders: the least-privilege custom role the service gets on each folder and project is created there. When null, only `projects` can be used, each with a project-level custom role."
  type        = string
  default     = null
}

variable "source_name" {
  description = "Name of the `gcp` source in the service's settings (`sources[].name`); it appears in the run ledgers and in per-source retention overrides."
  type        = string
  default     = "gcp"
}

variable "discovery_strategy" {
  description = "How instances are found: `walk` (Resource Manager folders.list + projects.list, then instances.list per project) or `asset_inventory` (one Cloud Asset search per folder; far fewer calls in large organisations)."
  type        = string
  default     = "walk"

  validation {
    condition     = contains(["walk", "asset_inventory"], var.discovery_strategy)
    error_message = "discovery_strategy: `walk` or `asset_inventory`."
  }
}

variable "include_replicas" {
  description = "Also back up read replicas (by default they are skipped: their primary is backed up)."
  type        = bool
  default     = false
}

variable "include_stopped" {
  description = "Also back up stopped instances (activation policy NEVER); by default they are skipped."
  type        = bool
  default     = false
}

variable "keep_postgres_database" {
  description = "Back up the `postgres` database of PostgreSQL instances too (by default it is dropped with the system databases)."
  type        = bool
  default     = false
}

variable "exclude_patterns" {
  description = "Databases left out: globs over `project/instance/database` (`*` stays within a segment), e.g. [\"*-dev/*/*\", \"*/*/scratch_*\"]."
  type        = list(string)
  default     = []
}

variable "cloudsql_service_accounts" {
  description = "Service accounts of the Cloud SQL instances (`serviceAccountEmailAddress`, one per instance): Cloud SQL writes each export into the bucket as that account, so each gets cloudsql_bucket_roles on the bucket. `data-backup doctor` lists the ones missing."
  type        = list(string)
  default     = []
}

variable "cloudsql_bucket_roles" {
  description = "Roles each Cloud SQL instance service account gets on the bucket. Export needs storage.objects.create; the viewer role lets Cloud SQL check the object it wrote."
  type        = list(string)
  default     = ["roles/storage.objectCreator", "roles/storage.objectViewer"]
}

# --- How exports run ---------------------------------------------------------------------------------

variable "export_wait_secs" {
  description = "How long an operator's /export call waits for its Cloud SQL export operation before answering 200 `running` (a follow-up task finishes it; with export_follow_up = false, 503 with Retry-After and the retry attaches): `export.wait_secs`. Cloud Tasks deliveries do not wait when export_follow_up is on. Each task asks Cloud Tasks to wait export_wait_secs + 120 s (its dispatch deadline, at most 30 minutes); at least 60 s below request_timeout_secs."
  type        = number
  default     = 300

  validation {
    condition     = var.export_wait_secs >= 30 && var.export_wait_secs <= 1500
    error_message = "export_wait_secs: between 30 and 1500 (each task asks Cloud Tasks to wait export_wait_secs + 120 s, at most 30 minutes)."
  }
}

variable "export_follow_up" {
  description = "Check a Cloud SQL export that is still running (or waiting for its busy instance) with a follow-up task scheduled at its expected end, answering 200, instead of 503 polling that throttles the whole queue (`export.follow_up`, ADR 21)."
  type        = bool
  default     = true
}

variable "export_follow_up_min_secs" {
  description = "Follow-ups: the earliest a check comes after the previous one, in seconds (`export.follow_up_min_secs`)."
  type        = number
  default     = 60

  validation {
    condition     = var.export_follow_up_min_secs >= 1
    error_message = "export_follow_up_min_secs: at least 1."
  }
}

variable "export_follow_up_max_secs" {
  description = "Follow-ups: the latest a check comes after the previous one, in seconds (`export.follow_up_max_secs`); between export_follow_up_min_secs and 86400."
  type        = number
  default     = 1800

  validation {
    condition     = var.export_follow_up_max_secs >= 1 && var.export_follow_up_max_secs <= 86400
    error_message = "export_follow_up_max_secs: between 1 and 86400 (and at least export_follow_up_min_secs)."
  }
}

variable "export_follow_up_default_secs" {
  description = "Follow-ups: how long an export is expected to take when its database has no previous backup to learn it from, in seconds (`export.follow_up_default_secs`)."
  type        = number
  default     = 600

  validation {
    condition     = var.export_follow_up_default_secs >= 1 && var.export_follow_up_default_secs <= 86400
    error_message = "export_follow_up_default_secs: between 1 and 86400."
  }
}

variable "export_follow_up_max_checks" {
  description = "Follow-ups: the most checks of one database's day (`export.follow_up_max_checks`); the next one is the failure `follow_ups_exhausted`, reported once. With the defaults a chain covers at least 48 × 60 s and at most 48 × 1800 s."
  type        = number
  default     = 48

  validation {
    condition     = var.export_follow_up_max_checks >= 1 && var.export_follow_up_max_checks <= 1000
    error_message = "export_follow_up_max_checks: between 1 and 1000."
  }
}

variable "export_job" {
  description = "Create the Cloud Run job `NAME-export` (jobs.tf) and run the dumps of self-hosted databases whose previous backup took at least export_job_after_secs as its executions, which follow-up tasks attach to (`export.job`), instead of in a request that lasts at most 30 minutes."
  type        = bool
  default     = false
}

variable "export_job_after_secs" {
  description = "The previous backup's duration, in seconds, from which a self-hosted dump runs as an execution of the export job (`export.job_after_secs`)."
  type        = number
  default     = 1200
}

variable "export_job_timeout_secs" {
  description = "How long one execution of the export job may run, in seconds (Cloud Run allows up to 7 days)."
  type        = number
  default     = 14400

  validation {
    condition     = var.export_job_timeout_secs >= 60 && var.export_job_timeout_secs <= 604800
    error_message = "export_job_timeout_secs: between 60 and 604800 (7 days)."
  }
}

variable "export_offload" {
  description = "Use serverless export (`export.offload`): a temporary instance does the export, so the database instance is not loaded. Costs extra; an instance label overrides it per instance."
  type        = bool
  default     = false
}

variable "report_after_retries" {
  description = "A transient failure is reported (log, Pub/Sub, alert) once its task has been retried this many times (`export.report_after_retries`); permanent failures are reported at once."
  type        = number
  default     = 3
}

variable "pubsub_success" {
  description = "Also publish one `export_succeeded` event per backup to the reports topic (`notify.pubsub_success`), with bytes and duration."
  type        = bool
  default     = false
}

variable "extra_env" {
  description = "More service settings as environment variables (`DATA_BACKUP_<SECTION>__<KEY>`, e.g. DATA_BACKUP_RETENTION__DAILY__KEEP_DAYS = \"14\" or DATA_BACKUP_GCP__SQL_ADMIN_PER_MINUTE = \"100\"); they override the module's own."
  type        = map(string)
  default     = {}
}

variable "secret_env" {
  description = "Settings read from Secret Manager, by variable name: { DATA_BACKUP_NOTIFY__WEBHOOK_URL = { secret = \"data-backup-webhook\", version = \"latest\" } }. The runtime service account is given access to each secret."
  type = map(object({
    secret  = string
    version = optional(string, "latest")
  }))
  default = {}
}

variable "copies" {
  description = "Off-site copies (`[[copies]]`, ADR 0023): further stores every dated backup is copied to, checked, and encrypted on the way with age_recipients. `url` is s3://, az://, gs:// or file://; `options` are object_store options without secrets (region, endpoint); `credentials` maps environment variables the store reads (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AZURE_STORAGE_ACCOUNT_KEY, …) to Secret Manager secrets the runtime service account is given access to. `lock` (off, unlocked, locked) retains each copied object until its class expires in the copy (S3 Object Lock on a bucket created with it, or GCS object retention); `keep_days` maps a class (daily … yearly) to how long this copy keeps it, when not as long as the primary. A gs:// copy needs the runtime service account granted on that bucket, outside this module."
  type = list(object({
    name           = string
    url            = string
    options        = optional(map(string), {})
    age_recipients = optional(list(string), [])
    classes        = optional(list(string))
    lock           = optional(string, "off")
    keep_days      = optional(map(number), {})
    credentials = optional(map(object({
      secret  = string
      version = optional(string, "latest")
    })), {})
  }))
  default = []

  validation {
    condition     = length(distinct([for c in var.copies : c.name])) == length(var.copies)
    error_message = "Each copy needs its own name."
  }

  validation {
    condition     = alltrue([for c in var.copies : contains(["off", "unlocked", "locked"], c.lock)])
    error_message = "A copy's lock is off, unlocked or locked."
  }
}

# --- The service -------------------------------------------------------------------------------------

variable "service_url" {
  description = "The URL callers use, the audience of every ID token (Cloud Scheduler's, Cloud Tasks' and operators'). Default: Cloud Run's deterministic URL https://NAME-PROJECT_NUMBER.REGION.run.app. Set it when a custom domain fronts the service."
  type        = string
  default     = null
}

variable "operator_emails" {
  description = "People and service accounts allowed to call every route (status page, /schedule, /export, /prune, /verify): they get roles/run.invoker and are on the service's allowlist. Service accounts end in .gserviceaccount.com; other entries are users."
  type        = list(string)
  default     = []
}

variable "ingress" {
  description = "Cloud Run ingress: INGRESS_TRAFFIC_ALL (callers still need roles/run.invoker and an allowlisted ID token) or INGRESS_TRAFFIC_INTERNAL_ONLY (Cloud Scheduler and Cloud Tasks of this project still reach it; operators then need a VPC path)."
  type        = string
  default     = "INGRESS_TRAFFIC_ALL"

  validation {
    condition     = contains(["INGRESS_TRAFFIC_ALL", "INGRESS_TRAFFIC_INTERNAL_ONLY", "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"], var.ingress)
    error_message = "ingress: INGRESS_TRAFFIC_ALL, INGRESS_TRAFFIC_INTERNAL_ONLY or INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER."
  }
}

variable "cpu" {
  description = "CPU limit of the service container (Cloud SQL exports are waits; a self-hosted dump source compresses here)."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory limit of the service container. Exports do not grow with database size (dumps are streamed); a restore drill does: its scratch server lives in /tmp, which is memory on Cloud Run, so it needs about 150 MB plus the restored database (README \"Restore drills\"); drill bigger databases on a configured server (DATA_BACKUP_VERIFY__URL / MYSQL_URL)."
  type        = string
  default     = "1Gi"
}

variable "max_instances" {
  description = "Most Cloud Run instances at once (min is 0: nothing runs between nightly runs unless metrics_collector keeps CPU on)."
  type        = number
  default     = 3
}

variable "concurrency" {
  description = "Requests one instance serves at once; also the service's http.max_concurrent_requests. A Cloud Tasks delivery of a Cloud SQL export holds one slot for seconds (follow-ups); an operator's /export, or any delivery with export_follow_up = false, for up to export_wait_secs."
  type        = number
  default     = 20
}

variable "request_timeout_secs" {
  description = "Cloud Run request timeout, in seconds (at most 3600). The service's own limit on long routes is 10 s less, so it answers before Cloud Run cuts the request; the Scheduler job waits up to min(this, 1800)."
  type        = number
  default     = 1800

  validation {
    condition     = var.request_timeout_secs >= 120 && var.request_timeout_secs <= 3600
    error_message = "request_timeout_secs: between 120 and 3600."
  }
}

variable "deletion_protection" {
  description = "Refuse `terraform destroy` of the Cloud Run service (the bucket is never force-destroyed)."
  type        = bool
  default     = true
}

# --- Queue and schedule ------------------------------------------------------------------------------

variable "schedule" {
  description = "Cron schedule of the nightly run (Cloud Scheduler calls POST /schedule)."
  type        = string
  default     = "0 3 * * *"
}

variable "schedule_scope" {
  description = "Scope of the nightly run, sent as the body of POST /schedule: only these `sources`, the gcp sources walking these `folders` and `projects` instead of their configured roots, and these `exclude` patterns on top of the configured ones. Null: the configured sources. The scheduler's account may only narrow: every root must be one of the configured folders or projects, or lie under one."
  type = object({
    sources  = optional(list(string), [])
    folders  = optional(list(string), [])
    projects = optional(list(string), [])
    exclude  = optional(list(string), [])
  })
  default = null
}

variable "extra_schedules" {
  description = "Further scheduler jobs, each POSTing /schedule on its own cron with its own scope (see schedule_scope), e.g. { development = { schedule = \"0 4 * * 0\", scope = { folders = [\"folders/222\"] } } }. Status counts a database as expected when a run since the newest one without a scope (at most 8 days back) listed it."
  type = map(object({
    schedule = string
    scope = object({
      sources  = optional(list(string), [])
      folders  = optional(list(string), [])
      projects = optional(list(string), [])
      exclude  = optional(list(string), [])
    })
  }))
  default = {}

  validation {
    condition     = alltrue([for k in keys(var.extra_schedules) : can(regex("^[a-z][a-z0-9-]{0,20}$", k))])
    error_message = "extra_schedules: keys are short job name suffixes (lowercase letters, digits, -)."
  }
}

variable "drill_schedule" {
  description = "Cron schedule of the restore drills (Cloud Scheduler calls POST /verify/due), in schedule_time_zone; after the night's exports are done. Empty: no drill job."
  type        = string
  default     = "0 7 * * *"
}

variable "drill_count" {
  description = "Databases proven by each drill job (`verify.nightly_count`): the least recently verified, never-verified first. At least the number of databases divided by 7 proves all of them every week."
  type        = number
  default     = 3

  validation {
    condition     = var.drill_count >= 1
    error_message = "drill_count: at least 1."
  }
}

variable "schedule_time_zone" {
  description = "Time zone of schedule. The run date the backups are filed under is always the UTC date of the scheduled time."
  type        = string
  default     = "Etc/UTC"
}

variable "task_max_concurrent_dispatches" {
  description = "Exports Cloud Tasks runs at once. Each running Cloud SQL export makes a few Cloud SQL Admin calls a minute (polling); keep this × 4 well under the Admin API quota of about 180 calls a minute shared with discovery."
  type        = number
  default     = 10
}

variable "task_max_dispatches_per_second" {
  description = "Exports Cloud Tasks starts per second."
  type        = number
  default     = 1
}

variable "task_max_retry_duration_secs" {
  description = "How long Cloud Tasks keeps retrying one delivery that failed (transient errors, a follow-up that could not be created, or, with export_follow_up = false, 503 while its operation runs or the instance is busy) before giving up. A long export is checked by follow-up tasks, each a new task, so this need not cover the export's duration."
  type        = number
  default     = 3600
}

variable "task_min_backoff_secs" {
  description = "Shortest wait before Cloud Tasks retries an export."
  type        = number
  default     = 60
}

variable "task_max_backoff_secs" {
  description = "Longest wait between two retries of an export."
  type        = number
  default     = 300
}

# --- The bucket --------------------------------------------------------------------------------------

variable "bucket_name" {
  description = "Name of the backup bucket (globally unique). The service writes at its root: <class>/<project>/<instance>/<database>/<date>/…, latest/, runs/, leases/, reports/."
  type        = string
}

variable "bucket_location" {
  description = "Location of the bucket: a region, a dual-region or a multi-region (EU, US). Default: region. A location other than the databases' costs egress."
  type        = string
  default     = null
}

variable "bucket_storage_class" {
  description = "Default storage class of new objects."
  type        = string
  default     = "STANDARD"
}

variable "soft_delete_days" {
  description = "Deleted objects (lifecycle expiry, prune, a mistake) stay restorable this many days: 0 (off) or 7 to 90."
  type        = number
  default     = 7

  validation {
    condition     = var.soft_delete_days == 0 || (var.soft_delete_days >= 7 && var.soft_delete_days <= 90)
    error_message = "soft_delete_days: 0, or between 7 and 90."
  }
}

variable "retention_policy_days" {
  description = "Bucket retention policy: no object can be deleted or replaced before this age. null: none. Keep it at most the shortest keep_days (9 for dailies by default), or lifecycle expiry waits for it."
  type        = number
  default     = null
}

variable "retention_policy_locked" {
  description = "Lock the retention policy. IRREVERSIBLE: a locked policy can never be shortened or removed, and the bucket cannot be deleted while it holds objects."
  type        = bool
  default     = false
}

variable "object_retention" {
  description = "Object retention of every new backup until its retention class expires (the service's retention.lock): \"off\", \"unlocked\" (a bucket administrator can shorten it) or \"locked\" (nobody can). Enables object retention on the bucket; use it instead of retention_policy_days, not with it."
  type        = string
  default     = "off"

  validation {
    condition     = contains(["off", "unlocked", "locked"], var.object_retention)
    error_message = "object_retention: off, unlocked or locked."
  }
}

variable "kms_key_name" {
  description = "Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) encrypting the bucket and the reports topic; null: Google-managed keys. The Cloud Storage and Pub/Sub service agents are given use of it."
  type        = string
  default     = null
}

variable "access_log_bucket" {
  description = "Bucket that receives the backup bucket's usage logs; null: none (Cloud Audit Logs still record access)."
  type        = string
  default     = null
}

# --- Monitoring --------------------------------------------------------------------------------------

variable "alerts_enabled" {
  description = "Create the log-based metrics and alert policies (scheduler job failure, export errors, exports not running, databases without a fresh backup)."
  type        = bool
  default     = true
}

variable "notification_channels" {
  description = "Existing Cloud Monitoring notification channels (projects/P/notificationChannels/N) every alert goes to."
  type        = list(string)
  default     = []
}

variable "notification_emails" {
  description = "Email addresses that get an email notification channel each, added to notification_channels."
  type        = list(string)
  default     = []
}

variable "exports_not_running_hours" {
  description = "`Exports not running` fires when Cloud Tasks made no export attempt for this many hours (a day plus slack)."
  type        = number
  default     = 26
}

variable "metrics_collector" {
  description = "Run an OpenTelemetry Collector sidecar that sends the service's metrics to Managed Service for Prometheus and its traces to Cloud Trace, refresh the status hourly, and alert on databases without a fresh backup. Keeps CPU allocated while an instance lives (instance-based billing)."
  type        = bool
  default     = true
}

variable "dashboard_enabled" {
  description = "Create a Cloud Monitoring dashboard of the status metrics: states, hours since the newest backup, sizes, export times and drills per database (metrics_collector only)."
  type        = bool
  default     = true
}

variable "collector_image" {
  description = "Image of the collector sidecar (Google-Built OpenTelemetry Collector)."
  type        = string
  default     = "us-docker.pkg.dev/cloud-ops-agents-artifacts/google-cloud-opentelemetry-collector/otelcol-google:0.160.0"
}

variable "status_refresh_schedule" {
  description = "Cron schedule of the job that calls GET /status so the freshness metrics are recomputed and exported (metrics_collector only)."
  type        = string
  default     = "17 * * * *"
}

variable "role_id_prefix" {
  description = "Prefix of the custom IAM role ids the module creates (Discovery, BucketInspector). Deleted custom roles keep their id for up to 37 days: change the prefix to recreate sooner."
  type        = string
  default     = "dataBackup"

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9_.]{2,40}$", var.role_id_prefix))
    error_message = "role_id_prefix: letters, digits, `_` and `.`, 3 to 41 characters, starting with a letter."
  }
}

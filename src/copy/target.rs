//! One off-site copy ([`CopyTarget`]): copies a committed backup of the primary store to the copy's
//! store under the same layout key, and what can go wrong ([`CopyError`]).
//!
//! Contract of [`CopyTarget::copy`]: the dump is streamed from the primary (bounded memory),
//! encrypted on the way when the copy has `age_recipients` and the primary object is plaintext,
//! and checked twice: the bytes read from the primary against the primary manifest's size and
//! SHA-256, then the object read back from the copy against what was uploaded. The copy's manifest
//! is written last, with a conditional create, so a copy killed midway leaves at most a dump
//! without a manifest, which is no backup and which the next attempt replaces. A copy whose
//! manifest is already there and names a dump of the recorded size is left alone. With `lock`, the
//! copy's dump and manifest are then retained until the backup's class expires in the copy (GCS
//! object retention, S3 Object Lock), on every run, so a lock missed once is set the next time.
//! Once the copy holds the backup, its `latest/<project>/<instance>/<database>.json` is advanced to
//! the copy's manifest (never moved back to an older run date), so the status reads a copy as it
//! reads the primary: one listing of `latest/` and one read per database.

use std::sync::{Arc, Mutex};

use age::x25519::Recipient;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use tokio_util::io::{InspectReader, StreamReader};

use crate::settings::retention::RetentionLock;
use crate::settings::{CopySettings, RetentionPolicy};
use crate::store::bucket::{ByteReader, PutOutcome};
use crate::store::layout::Key;
use crate::store::manifest::{Encryption, Manifest};
use crate::store::{BackupStore, StoreError};

/// Why a copy failed, classified where it happened.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The primary or the copy store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The primary object is missing or differs from its manifest.
    #[error("the primary object {key} cannot be copied: {reason}")]
    Source {
        /// The primary dump's key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The object read back from the copy is not what was uploaded (it was deleted or replaced
    /// meanwhile): the next attempt uploads it again.
    #[error("the copy of {key} does not check: {reason}")]
    Mismatch {
        /// The copy's dump key.
        key: String,
        /// What differs.
        reason: String,
    },
    /// The copy's manifest is committed but its dump is missing, of another size or another
    /// object than the one it recorded. A manifest is never replaced, so no retry mends it: an
    /// operator removes the copy's manifest and dump, and the next delivery copies them again.
    #[error("the copy of {key} is damaged: {reason}")]
    Damaged {
        /// The copy's dump key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The copy's store holds the manifest of another backup under the same key.
    #[error("the copy already holds another backup's manifest at {key}")]
    Conflict {
        /// The manifest's key.
        key: String,
    },
    /// The backup cannot be copied at all (an unparseable key, encryption that cannot start).
    #[error("{0}")]
    Invalid(String),
}

impl CopyError {
    /// True when the same copy may succeed later.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store(e) => e.is_transient(),
            Self::Mismatch { .. } => true,
            Self::Source { .. } | Self::Damaged { .. } | Self::Conflict { .. } | Self::Invalid(_) => false,
        }
    }

    /// A short class name for logs and reports.
    #[must_use]
    pub fn class(&self) -> &'static str {
        match self {
            Self::Store(_) => "copy_store",
            Self::Source { .. } => "copy_source",
            Self::Mismatch { .. } => "copy_mismatch",
            Self::Damaged { .. } => "copy_damaged",
            Self::Conflict { .. } => "copy_conflict",
            Self::Invalid(_) => "copy_invalid",
        }
    }
}

/// What [`CopyTarget::copy`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CopyOutcome {
    /// This call copied the backup: the copy's dump key and its size.
    Copied {
        /// The dump's key in the copy.
        key: String,
        /// Its size.
        bytes: u64,
    },
    /// The copy already held this backup; nothing was written.
    AlreadyCopied,
    /// The backup's retention class is not copied here (`classes`).
    NotCopied,
}

/// One `[[copies]]` store: its bucket under the primary's layout, its recipients, its classes.
#[derive(Debug)]
pub struct CopyTarget {
    /// The `[[copies]]` name.
    pub name: String,
    /// The copy's store (its bucket, the primary's layout).
    pub store: BackupStore,
    recipients: Vec<Recipient>,
    recipient_names: Vec<String>,
    settings: CopySettings,
    /// The copy's retention policy (`[copies.retention]` over `[retention]`): its lock's dates.
    policy: RetentionPolicy,
}

/// A SHA-256 and a byte count, updated by an [`InspectReader`] as bytes flow.
type Tally = Arc<Mutex<(Sha256, u64)>>;

fn tally() -> Tally {
    Arc::new(Mutex::new((Sha256::new(), 0)))
}

fn counted<R: tokio::io::AsyncRead + Send + 'static>(reader: R, t: Tally) -> InspectReader<R, impl FnMut(&[u8])> {
    InspectReader::new(reader, move |chunk: &[u8]| {
        let mut g = t.lock().expect("tally lock");
        g.0.update(chunk);
        g.1 += chunk.len() as u64;
    })
}

fn finish(tally: &Tally) -> (String, u64) {
    let g = tally.lock().expect("tally lock");
    (hex::encode(g.0.clone().finalize()), g.1)
}

/// Whether `copy` is the manifest of the same backup as `primary` (the fields no copy changes).
fn same_backup(copy: &Manifest, primary: &Manifest) -> bool {
    (&copy.source, &copy.project, &copy.instance, &copy.database, &copy.run_date, &copy.run_id, copy.started_at)
        == (
            &primary.source,
            &primary.project,
            &primary.instance,
            &primary.database,
            &primary.run_date,
            &primary.run_id,
            primary.started_at,
        )
}

impl CopyTarget {
    /// The copy `settings` describes, over its opened `store`, kept by `policy` (the copy's own).
    pub fn new(settings: CopySettings, store: BackupStore, policy: RetentionPolicy) -> Result<Self, String> {
        let recipients = crate::crypto::parse_recipients(&settings.age_recipients)?;
        let recipient_names = settings.age_recipients.iter().map(|r| r.trim().to_owned()).collect();
        Ok(Self { name: settings.name.clone(), store, recipients, recipient_names, settings, policy })
    }

    /// With `lock`, retains the copy's dump and manifest until the backup's class expires in this
    /// copy; set once its manifest is there, again on a repeat (a copy stopped between its
    /// manifest and its lock gets the lock the next time).
    async fn retain(&self, manifest_key: &Key, copy: &Manifest) -> Result<(), CopyError> {
        let locked = match self.settings.lock {
            RetentionLock::Off => return Ok(()),
            RetentionLock::Unlocked => false,
            RetentionLock::Locked => true,
        };
        let Some(Key::Dump { class, date, .. }) = Key::parse(&copy.key) else {
            return Err(CopyError::Invalid(format!("{} is not the key of a dated dump", copy.key)));
        };
        let until = self.policy.retain_until(class, &copy.project, date.date());
        for key in [copy.key.clone(), manifest_key.path()] {
            if !self.store.bucket().retain_until(&key, until, locked).await.map_err(StoreError::from)? {
                return Err(CopyError::Invalid(format!(
                    "the copy `{}` asks for a lock but its store has no object retention",
                    self.name
                )));
            }
        }
        tracing::info!(copy.name = %self.name, key = %copy.key, until = %until, locked, "copy retained");
        Ok(())
    }

    /// Copies the backup `primary_manifest` describes from `primary`; see the module contract.
    /// Once the copy holds the backup (copied now or before), the copy's `latest/` pointer of the
    /// database is advanced to it (never back to an older run date), as the primary's is.
    pub async fn copy(&self, primary: &BackupStore, primary_manifest: &Manifest) -> Result<CopyOutcome, CopyError> {
        let m = primary_manifest;
        let Some(Key::Dump { class, db, date, format, encrypted }) = Key::parse(&m.key) else {
            return Err(CopyError::Invalid(format!("{} is not the key of a dated dump", m.key)));
        };
        if !self.settings.copies_class(class) {
            return Ok(CopyOutcome::NotCopied);
        }
        let (outcome, held) =
            self.copy_dump(primary, m, Key::Dump { class, db: db.clone(), date, format, encrypted }).await?;
        self.store.advance_latest(&db, &held).await?;
        Ok(outcome)
    }

    /// The copy itself, once its class is known to be copied: what it did and the copy's manifest.
    async fn copy_dump(
        &self,
        primary: &BackupStore,
        m: &Manifest,
        source: Key,
    ) -> Result<(CopyOutcome, Manifest), CopyError> {
        let Key::Dump { class, db, date, format, encrypted } = source else {
            return Err(CopyError::Invalid(format!("{} is not the key of a dated dump", m.key)));
        };
        let manifest_key = Key::Manifest { class, db: db.clone(), date };
        if let Some(existing) = self.store.read::<Manifest>(&manifest_key).await? {
            let outcome = self.check_existing(&manifest_key, &existing, m).await?;
            return Ok((outcome, existing));
        }
        let encrypt = !encrypted && !self.recipients.is_empty();
        let dump = Key::Dump { class, db, date, format, encrypted: encrypted || encrypt };
        let dump_key = dump.path();

        let Some(stream) = primary.bucket().get_stream(&m.key).await.map_err(StoreError::from)? else {
            return Err(CopyError::Source { key: m.key.clone(), reason: "the object is missing".to_owned() });
        };
        let read = tally();
        let source = counted(StreamReader::new(stream.map_err(std::io::Error::other)), read.clone());
        let written = tally();
        let body: ByteReader = if encrypt {
            let cipher = crate::crypto::encrypting_reader(source, &self.recipients).map_err(CopyError::Invalid)?;
            Box::pin(counted(cipher, written.clone()))
        } else {
            Box::pin(counted(source, written.clone()))
        };
        let stored = self.store.put_dump(&dump, body).await?;

        let (read_sha, read_bytes) = finish(&read);
        if read_bytes != m.bytes || m.sha256.as_ref().is_some_and(|s| *s != read_sha) {
            self.discard(&dump_key).await;
            return Err(CopyError::Source {
                key: m.key.clone(),
                reason: format!(
                    "read {read_bytes} bytes with SHA-256 {read_sha}, the manifest records {} bytes with SHA-256 {}",
                    m.bytes,
                    m.sha256.as_deref().unwrap_or("(none)")
                ),
            });
        }
        let (sha, bytes) = finish(&written);
        let (back_sha, back_bytes) = self.read_back(&dump_key).await?;
        if (back_sha.as_str(), back_bytes) != (sha.as_str(), bytes) || stored.size != bytes {
            self.discard(&dump_key).await;
            return Err(CopyError::Mismatch {
                key: dump_key,
                reason: format!(
                    "uploaded {bytes} bytes with SHA-256 {sha}, read back {back_bytes} bytes with SHA-256 {back_sha}"
                ),
            });
        }

        let mut copy = m.clone();
        copy.key.clone_from(&dump_key);
        copy.bytes = bytes;
        copy.sha256 = Some(sha);
        copy.object_version = stored.version;
        if encrypt {
            copy.encryption = Some(Encryption { scheme: "age".to_owned(), recipients: self.recipient_names.clone() });
            // The primary object's CRC32C does not describe the ciphertext.
            if let Some(cloud_sql) = &mut copy.cloud_sql {
                cloud_sql.crc32c = None;
            }
        }
        match self.store.create_json(&manifest_key, &copy).await? {
            PutOutcome::Created => {
                self.retain(&manifest_key, &copy).await?;
                Ok((CopyOutcome::Copied { key: dump_key, bytes }, copy))
            }
            // Another copy of the same backup committed first. Its dump and ours are the same bytes
            // unless encrypted (each encryption differs): then ours replaced the dump its manifest
            // describes, which must be reported, not accepted.
            PutOutcome::AlreadyExists => match self.store.read::<Manifest>(&manifest_key).await? {
                Some(existing) if same_backup(&existing, m) && existing.sha256 == copy.sha256 => {
                    Ok((CopyOutcome::AlreadyCopied, existing))
                }
                Some(existing) if same_backup(&existing, m) => Err(CopyError::Damaged {
                    key: dump_key,
                    reason: "a concurrent copy committed its manifest for another encryption of the dump".to_owned(),
                }),
                _ => Err(CopyError::Conflict { key: manifest_key.path() }),
            },
        }
    }

    /// A manifest is already in the copy: the same backup with its dump whole is done; anything
    /// else is reported (a manifest is never replaced).
    async fn check_existing(
        &self,
        manifest_key: &Key,
        existing: &Manifest,
        primary: &Manifest,
    ) -> Result<CopyOutcome, CopyError> {
        if !same_backup(existing, primary) {
            return Err(CopyError::Conflict { key: manifest_key.path() });
        }
        match self.store.bucket().head(&existing.key).await.map_err(StoreError::from)? {
            // The same size and, where the store names versions, the very object the manifest
            // recorded (an encryption of the same dump written over it has the same size).
            Some(info)
                if info.size == existing.bytes
                    && (existing.object_version.is_none() || info.version == existing.object_version) =>
            {
                self.retain(manifest_key, existing).await?;
                Ok(CopyOutcome::AlreadyCopied)
            }
            Some(info) if info.size == existing.bytes => Err(CopyError::Damaged {
                key: existing.key.clone(),
                reason: format!(
                    "its manifest records the object version {}, the store holds {}",
                    existing.object_version.as_deref().unwrap_or("-"),
                    info.version.as_deref().unwrap_or("-")
                ),
            }),
            Some(info) => Err(CopyError::Damaged {
                key: existing.key.clone(),
                reason: format!("its manifest records {} bytes, the object holds {}", existing.bytes, info.size),
            }),
            None => Err(CopyError::Damaged {
                key: existing.key.clone(),
                reason: "its manifest is there but the dump is missing".to_owned(),
            }),
        }
    }

    /// The SHA-256 and size of the copy's object `key`, streamed.
    async fn read_back(&self, key: &str) -> Result<(String, u64), CopyError> {
        let Some(mut stream) = self.store.bucket().get_stream(key).await.map_err(StoreError::from)? else {
            return Err(CopyError::Mismatch { key: key.to_owned(), reason: "vanished after its upload".to_owned() });
        };
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(StoreError::from)?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
        }
        Ok((hex::encode(hasher.finalize()), size))
    }

    /// Deletes a dump that failed its check (without a manifest it is no backup either way).
    async fn discard(&self, key: &str) {
        if let Err(e) = self.store.bucket().delete(key).await {
            tracing::warn!(copy.name = %self.name, key, error = %e, "could not delete a copy that failed its check");
        }
    }
}

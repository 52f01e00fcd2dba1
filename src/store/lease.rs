//! Export leases, as [`BackupStore`] methods: an export of (database, day) holds the newest object
//! under `leases/<db>/<day>/`, named by a sequence number and created with a conditional create, so
//! of two exporters racing for the same sequence number exactly one wins. A lease is live until its
//! `expires_at`; its holder renews it by creating the next sequence number, and a new exporter may
//! take over an expired lease the same way. No step needs an overwrite or a compare-and-swap, so
//! every backend (including the local filesystem) gives the same guarantee.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{DatabaseRef, RunDate};
use crate::store::bucket::PutOutcome;
use crate::store::layout::{Key, path_of};
use crate::store::{BackupStore, StoreError};

/// The body of a lease object.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct LeaseBody {
    owner: String,
    expires_at: DateTime<Utc>,
}

/// A lease held on the export of one database for one day.
#[derive(Clone, Debug)]
pub struct Lease {
    db: DatabaseRef,
    date: RunDate,
    seq: u32,
    owner: String,
    ttl: Duration,
}

/// Answer of [`BackupStore::acquire_lease`].
#[derive(Debug)]
pub enum LeaseOutcome {
    /// The lease is ours.
    Acquired(Lease),
    /// Another export holds it until `until`.
    Held {
        /// When the other lease expires unless renewed.
        until: DateTime<Utc>,
    },
}

impl BackupStore {
    async fn lease_seqs(&self, db: &DatabaseRef, date: RunDate) -> Result<Vec<u32>, StoreError> {
        let path = path_of(db);
        let dir = self.layout.lease(&path, date, 0).path();
        let dir = dir.rsplit_once('/').map_or("", |(d, _)| d);
        let mut seqs: Vec<u32> = self
            .bucket
            .list(dir)
            .await?
            .iter()
            .filter_map(|o| match Key::parse(&o.key)? {
                k @ (Key::Lease { seq, .. } | Key::LabelLease { seq, .. }) => {
                    (k == self.layout.lease(&path, date, seq)).then_some(seq)
                }
                _ => None,
            })
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    async fn create_lease(&self, lease: &Lease) -> Result<PutOutcome, StoreError> {
        let body = LeaseBody {
            owner: lease.owner.clone(),
            expires_at: Utc::now() + chrono::Duration::from_std(lease.ttl).unwrap_or(chrono::Duration::MAX),
        };
        let key = self.layout.lease(&path_of(&lease.db), lease.date, lease.seq).path();
        Ok(self.bucket.put_if_absent(&key, Self::to_json(&body)).await?)
    }

    /// Takes the lease on (`db`, `date`) unless a live one is held by another export.
    pub async fn acquire_lease(
        &self,
        db: &DatabaseRef,
        date: RunDate,
        ttl: Duration,
    ) -> Result<LeaseOutcome, StoreError> {
        let seqs = self.lease_seqs(db, date).await?;
        let next = match seqs.last() {
            Some(&seq) => {
                let key = self.layout.lease(&path_of(db), date, seq);
                if let Some(body) = self.read::<LeaseBody>(&key).await?
                    && body.expires_at > Utc::now()
                {
                    return Ok(LeaseOutcome::Held { until: body.expires_at });
                }
                seq + 1
            }
            None => 1,
        };
        let lease = Lease { db: db.clone(), date, seq: next, owner: uuid::Uuid::new_v4().to_string(), ttl };
        match self.create_lease(&lease).await? {
            PutOutcome::Created => Ok(LeaseOutcome::Acquired(lease)),
            PutOutcome::AlreadyExists => {
                Ok(LeaseOutcome::Held { until: Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default() })
            }
        }
    }

    /// Extends a held lease. `Ok(false)` means it was lost (it expired and another export took it).
    pub async fn renew_lease(&self, lease: &mut Lease) -> Result<bool, StoreError> {
        let mut next = lease.clone();
        next.seq += 1;
        match self.create_lease(&next).await? {
            PutOutcome::Created => {
                let _ = self.bucket.delete(&self.layout.lease(&path_of(&lease.db), lease.date, lease.seq).path()).await;
                *lease = next;
                Ok(true)
            }
            PutOutcome::AlreadyExists => Ok(false),
        }
    }

    /// Gives a lease back (and sweeps the expired ones before it), so a retry need not wait for it to expire.
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        for seq in self.lease_seqs(&lease.db, lease.date).await?.into_iter().filter(|s| *s <= lease.seq) {
            self.bucket.delete(&self.layout.lease(&path_of(&lease.db), lease.date, seq).path()).await?;
        }
        Ok(())
    }
}

impl Lease {
    /// How often the holder should renew.
    #[must_use]
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }
}

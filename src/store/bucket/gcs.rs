//! TEMPORARY STUB (replaced by the real implementation).
use async_trait::async_trait;
use bytes::Bytes;

use super::{Bucket, BucketError, ByteReader, ByteStream, ObjectInfo, PutOutcome};

/// stub
#[derive(Debug)]
pub struct GcsBucket;

impl GcsBucket {
    /// stub
    pub async fn new(
        _bucket: &str,
        _prefix: &str,
        _endpoint: Option<&str>,
        _anonymous: bool,
    ) -> Result<Self, BucketError> {
        Err(BucketError::Permanent("stub".into()))
    }
}

#[async_trait]
impl Bucket for GcsBucket {
    async fn put_stream(&self, _: &str, _: ByteReader) -> Result<ObjectInfo, BucketError> {
        unimplemented!()
    }
    async fn put_if_absent(&self, _: &str, _: Bytes) -> Result<PutOutcome, BucketError> {
        unimplemented!()
    }
    async fn put(&self, _: &str, _: Bytes) -> Result<(), BucketError> {
        unimplemented!()
    }
    async fn get(&self, _: &str) -> Result<Option<Bytes>, BucketError> {
        unimplemented!()
    }
    async fn get_stream(&self, _: &str) -> Result<Option<ByteStream>, BucketError> {
        unimplemented!()
    }
    async fn head(&self, _: &str) -> Result<Option<ObjectInfo>, BucketError> {
        unimplemented!()
    }
    async fn list(&self, _: &str) -> Result<Vec<ObjectInfo>, BucketError> {
        unimplemented!()
    }
    async fn delete(&self, _: &str) -> Result<(), BucketError> {
        unimplemented!()
    }
}

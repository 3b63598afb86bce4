//! Object storage: where segment objects live. The contract every backend meets
//! (see `tests/contract.rs`):
//!
//! - `put_if_absent` creates a key atomically and never overwrites: a second put
//!   of the same key fails with `AlreadyExists` (S3 `If-None-Match: *`). A reader
//!   sees either no object or the whole object.
//! - `get_range` returns exactly the bytes asked for, or `NotFound`, or
//!   `InvalidInput` if the range lies outside the object.
//! - `delete` is idempotent.

use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::Result;

#[cfg(feature = "embedded")]
mod local;
mod memory;
#[cfg(feature = "aws")]
mod s3;

#[cfg(feature = "embedded")]
pub use local::LocalDirStore;
pub use memory::MemoryObjectStore;
#[cfg(feature = "aws")]
pub use s3::S3Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// Creates `key` with `body`; `AlreadyExists` if the key exists.
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<()>;
    /// The whole object.
    async fn get(&self, key: &str) -> Result<Bytes>;
    /// Bytes `range` of the object.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes>;
    /// Removes `key`; succeeds if it is already gone.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Objects whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
}

pub type SharedObjectStore = Arc<dyn ObjectStore>;

/// Creates `key` with `body`, or finds it already holding exactly `body`: for
/// keys written once (a flush's object, unique per incarnation and seq; a
/// compaction's, unique per object), a key already taken can only be an
/// earlier attempt of the same write whose answer was lost, and is read back
/// to be sure. Other content there is `Corrupt`.
pub async fn put_exactly(objects: &dyn ObjectStore, key: &str, body: Bytes) -> Result<()> {
    match objects.put_if_absent(key, body.clone()).await {
        Err(e) if e.kind() == crate::ErrorKind::AlreadyExists => {
            let found = objects.get(key).await?;
            if found == body {
                tracing::info!(key, "put: the object from an earlier attempt is intact");
                Ok(())
            } else {
                Err(crate::Error::Corrupt(format!(
                    "put: {key} already exists with other content ({} bytes, expected {})",
                    found.len(),
                    body.len()
                )))
            }
        }
        r => r,
    }
}

/// Checks that `range` lies inside an object of `size` bytes.
pub(crate) fn check_range(key: &str, range: &Range<u64>, size: u64) -> Result<()> {
    if range.start > range.end || range.end > size {
        return Err(crate::Error::InvalidInput(format!(
            "range {}..{} is outside {key} ({size} bytes)",
            range.start, range.end
        )));
    }
    Ok(())
}

/// Checks a key is a relative path of safe segments (no `..`, no leading `/`).
pub(crate) fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(crate::Error::InvalidInput(format!(
            "object key {key:?} is not allowed"
        )))
    }
}

//! S3 (and S3-compatible: LocalStack, moto) object store.
//!
//! - `put_if_absent` is one PutObject with `If-None-Match: *`: 412
//!   `PreconditionFailed` → `AlreadyExists`; 409 `ConditionalRequestConflict` (a
//!   concurrent conditional write in flight) → `Unavailable`. A PUT whose first
//!   attempt timed out after landing and was retried by the SDK reports
//!   `AlreadyExists`; segment keys are unique per flush, so the caller can treat
//!   that as "resolve by reading back".
//! - `get_range` sends a `Range` header and checks the answer against
//!   `Content-Range`, because S3 silently truncates a range that runs past the end.
//!   An empty range costs a HeadObject (a `Range` header cannot ask for 0 bytes).
//! - `list` pages through ListObjectsV2 (1,000 keys per request).
//!
//! Costs: one request per call (two for an empty range); see `AwsStats`.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::{ObjectInfo, ObjectStore, check_key, check_range};
use crate::aws::{AwsStats, classify, code, status};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Prepended to every key; empty or ending in `/`.
    prefix: String,
    stats: Arc<AwsStats>,
}

impl S3Store {
    /// A store over `bucket`, keys under `prefix` (e.g. `"floe"`; `None` for the
    /// bucket root).
    pub fn new(
        client: Client,
        bucket: impl Into<String>,
        prefix: Option<&str>,
        stats: Arc<AwsStats>,
    ) -> Self {
        let prefix = match prefix.map(|p| p.trim_matches('/')) {
            Some(p) if !p.is_empty() => format!("{p}/"),
            _ => String::new(),
        };
        S3Store {
            client,
            bucket: bucket.into(),
            prefix,
            stats,
        }
    }

    /// An S3 client from the standard configuration; `force_path_style` for
    /// emulators that do not serve virtual-hosted buckets.
    pub fn client(config: &aws_config::SdkConfig, force_path_style: bool) -> Client {
        let conf = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(force_path_style)
            .build();
        Client::from_conf(conf)
    }

    pub fn stats(&self) -> &Arc<AwsStats> {
        &self.stats
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn what(&self, op: &str, key: &str) -> String {
        format!("s3 {op} {}/{}{key}", self.bucket, self.prefix)
    }

    async fn collect(&self, key: &str, body: ByteStream) -> Result<Bytes> {
        body.collect()
            .await
            .map(|d| d.into_bytes())
            .map_err(|e| Error::Unavailable(format!("{}: body: {e}", self.what("GetObject", key))))
    }

    async fn head_size(&self, key: &str) -> Result<u64> {
        AwsStats::inc(&self.stats.s3_get);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await
        {
            Ok(out) => Ok(out.content_length().unwrap_or(0).max(0) as u64),
            Err(e) if status(&e) == Some(404) => Err(Error::NotFound(self.what("HeadObject", key))),
            Err(e) => Err(classify(&self.what("HeadObject", key), e)),
        }
    }
}

/// The total size from a `Content-Range: bytes a-b/total` header.
fn content_range_total(v: Option<&str>) -> Option<u64> {
    v?.rsplit_once('/')?.1.trim().parse().ok()
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<()> {
        check_key(key)?;
        AwsStats::inc(&self.stats.s3_put);
        let r = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if status(&e) == Some(412) || code(&e) == Some("PreconditionFailed") => {
                Err(Error::AlreadyExists(self.what("PutObject", key)))
            }
            Err(e) if status(&e) == Some(409) => Err(Error::Unavailable(format!(
                "{}: a concurrent conditional write is in flight (ConditionalRequestConflict)",
                self.what("PutObject", key)
            ))),
            Err(e) => Err(classify(&self.what("PutObject", key), e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        check_key(key)?;
        AwsStats::inc(&self.stats.s3_get);
        let r = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        match r {
            Ok(out) => self.collect(key, out.body).await,
            Err(e) if code(&e) == Some("NoSuchKey") || status(&e) == Some(404) => {
                Err(Error::NotFound(self.what("GetObject", key)))
            }
            Err(e) => Err(classify(&self.what("GetObject", key), e)),
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        check_key(key)?;
        if range.start > range.end {
            return Err(Error::InvalidInput(format!(
                "range {}..{} of {key} starts after it ends",
                range.start, range.end
            )));
        }
        if range.start == range.end {
            let size = self.head_size(key).await?;
            check_range(key, &range, size)?;
            return Ok(Bytes::new());
        }
        AwsStats::inc(&self.stats.s3_get);
        let r = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await;
        match r {
            Ok(out) => {
                let total = content_range_total(out.content_range());
                let bytes = self.collect(key, out.body).await?;
                if bytes.len() as u64 != range.end - range.start {
                    // Truncated at the end of the object.
                    let size = total.unwrap_or(range.start + bytes.len() as u64);
                    check_range(key, &range, size)?;
                    return Err(Error::Internal(format!(
                        "{}: asked for {} bytes, got {}",
                        self.what("GetObject", key),
                        range.end - range.start,
                        bytes.len()
                    )));
                }
                Ok(bytes)
            }
            Err(e) if code(&e) == Some("NoSuchKey") || status(&e) == Some(404) => {
                Err(Error::NotFound(self.what("GetObject", key)))
            }
            Err(e) if code(&e) == Some("InvalidRange") || status(&e) == Some(416) => {
                Err(Error::InvalidInput(format!(
                    "range {}..{} is outside {key}",
                    range.start, range.end
                )))
            }
            Err(e) => Err(classify(&self.what("GetObject", key), e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        AwsStats::inc(&self.stats.s3_delete);
        let r = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key))
            .send()
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("NoSuchKey") || status(&e) == Some(404) => Ok(()),
            Err(e) => Err(classify(&self.what("DeleteObject", key), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            AwsStats::inc(&self.stats.s3_list);
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.full_key(prefix))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| classify(&self.what("ListObjectsV2", prefix), e))?;
            for o in page.contents() {
                let Some(k) = o.key() else { continue };
                let Some(k) = k.strip_prefix(&self.prefix) else {
                    continue;
                };
                out.push(ObjectInfo {
                    key: k.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

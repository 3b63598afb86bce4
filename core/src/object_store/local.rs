use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectInfo, ObjectStore, check_key, check_range};
use crate::error::{Error, Result};

/// Objects as files under a directory: written to a temporary file, fsynced, then
/// linked into place with `link(2)`, which fails if the name exists. That gives
/// S3's `If-None-Match: *` semantics and never exposes a partial object, even
/// across `kill -9` or power loss (the directory is fsynced after the link).
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join(".tmp"))
            .map_err(|e| Error::io(&format!("create {}", root.display()), e))?;
        Ok(LocalDirStore { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Error::Internal(format!("blocking task failed: {e}")))?
    }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(&format!("fsync {}", dir.display()), e))
}

fn walk(dir: &Path, root: &Path, prefix: &str, out: &mut Vec<ObjectInfo>) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("list", e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| Error::io("list", e))?;
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .map_err(|e| Error::Internal(e.to_string()))?
            .to_string_lossy()
            .replace('\\', "/");
        if rel.starts_with(".tmp") {
            continue;
        }
        let meta = entry.metadata().map_err(|e| Error::io("list", e))?;
        if meta.is_dir() {
            if prefix.starts_with(&rel) || rel.starts_with(prefix) {
                walk(&path, root, prefix, out)?;
            }
        } else if rel.starts_with(prefix) {
            out.push(ObjectInfo {
                key: rel,
                size: meta.len(),
            });
        }
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for LocalDirStore {
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<()> {
        let path = self.path(key)?;
        let tmp = self
            .root
            .join(".tmp")
            .join(uuid::Uuid::new_v4().to_string());
        let key = key.to_string();
        Self::blocking(move || {
            let parent = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(parent).map_err(|e| Error::io("create dir", e))?;
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&body)?;
                f.sync_all()
            };
            if let Err(e) = write() {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::io(&format!("write {key}"), e));
            }
            let linked = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => fsync_dir(parent),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(Error::AlreadyExists(key))
                }
                Err(e) => Err(Error::io(&format!("link {key}"), e)),
            }
        })
        .await
    }

    async fn get(&self, key: &str) -> Result<Bytes> {
        let path = self.path(key)?;
        let key = key.to_string();
        Self::blocking(move || {
            std::fs::read(&path)
                .map(Bytes::from)
                .map_err(|e| Error::io(&key, e))
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        let path = self.path(key)?;
        let key = key.to_string();
        Self::blocking(move || {
            let mut f = std::fs::File::open(&path).map_err(|e| Error::io(&key, e))?;
            let size = f.metadata().map_err(|e| Error::io(&key, e))?.len();
            check_range(&key, &range, size)?;
            let mut buf = vec![0u8; (range.end - range.start) as usize];
            f.seek(SeekFrom::Start(range.start))
                .and_then(|_| f.read_exact(&mut buf))
                .map_err(|e| Error::io(&key, e))?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        Self::blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("delete", e)),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        Self::blocking(move || {
            let mut out = Vec::new();
            walk(&root, &root, &prefix, &mut out)?;
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }
}

//! The evidence artifact store: content-addressed by SHA-256, through `object_store`.
//!
//! `AUMOS_GOVERNANCE_EVIDENCE_ARTIFACT_BUCKET` picks the backend: `s3://bucket[/prefix]`
//! (credentials and endpoint from the usual `AWS_*` variables), `gs://bucket[/prefix]`
//! (`GOOGLE_*`), `file:///dir`, or unset for `<data dir>/artifacts` on the local disk.
//!
//! An upload streams into `staging/<uuid>` (a multipart upload: at most one part is held
//! in memory) while its SHA-256 and size are computed. Only when the caller commits is it
//! moved to `sha256/<hex>`; a rejected upload (hash mismatch, over the size limit, or a
//! failed ledger append) is deleted from staging, so nothing is stored.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, WriteMultipart};
use sha2::{Digest, Sha256 as Hasher};

use aggregates::compliance::Sha256;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("invalid artifact store location: {0}")]
    Config(String),
    #[error("the artifact exceeds {0} bytes")]
    TooLarge(u64),
    #[error("the artifact store is unavailable: {0}")]
    Unavailable(#[from] object_store::Error),
    #[error("the stored artifact {0} does not match its hash")]
    Corrupt(String),
}

/// Where artifacts live.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    store: Arc<dyn ObjectStore>,
    pub max_bytes: u64,
}

impl ArtifactStore {
    pub fn from_location(location: Option<&str>, data_dir: &std::path::Path, max_bytes: u64) -> Result<Self, ArtifactError> {
        let config = |e: object_store::Error| ArtifactError::Config(e.to_string());
        let store: Arc<dyn ObjectStore> = match location {
            Some(url) if url.starts_with("s3://") || url.starts_with("gs://") => {
                let (scheme, rest) = url.split_at(5);
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let inner: Arc<dyn ObjectStore> = if scheme == "s3://" {
                    Arc::new(object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket).build().map_err(config)?)
                } else {
                    Arc::new(object_store::gcp::GoogleCloudStorageBuilder::from_env().with_bucket_name(bucket).build().map_err(config)?)
                };
                if prefix.trim_matches('/').is_empty() {
                    inner
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(inner, prefix.trim_matches('/')))
                }
            }
            other => {
                let dir = match other.and_then(|u| u.strip_prefix("file://")) {
                    Some(d) => std::path::PathBuf::from(d),
                    None => data_dir.join("artifacts"),
                };
                std::fs::create_dir_all(&dir).map_err(|e| ArtifactError::Config(format!("{}: {e}", dir.display())))?;
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(config)?)
            }
        };
        Ok(Self { store, max_bytes })
    }

    fn final_path(sha: &Sha256) -> Path {
        Path::from(format!("sha256/{}", sha.as_str()))
    }

    /// Starts streaming an upload into staging.
    pub async fn begin(&self) -> Result<Upload, ArtifactError> {
        let staging = Path::from(format!("staging/{}", uuid::Uuid::new_v4()));
        let upload = self.store.put_multipart(&staging).await?;
        Ok(Upload { writer: Some(WriteMultipart::new(upload)), hasher: Hasher::new(), size: 0, max: self.max_bytes, staging })
    }

    /// Moves a finished upload to its content address (a rename on the local disk; copy
    /// and delete on object stores).
    pub async fn commit(&self, staged: &Staged) -> Result<(), ArtifactError> {
        self.store.rename(&staged.staging, &Self::final_path(&staged.sha256)).await?;
        Ok(())
    }

    /// Deletes a staged upload, if it is still there (best effort: staging is not evidence).
    pub async fn discard(&self, staged: &Staged) {
        match self.store.delete(&staged.staging).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!(path = %staged.staging, error = %e, "cannot delete a staged artifact"),
        }
    }

    /// Removes a committed artifact (best effort: used when recording it failed).
    pub async fn remove(&self, sha: &Sha256) {
        if let Err(e) = self.store.delete(&Self::final_path(sha)).await {
            tracing::warn!(sha256 = %sha, error = %e, "cannot remove an unrecorded artifact");
        }
    }

    /// Reads an artifact and checks it against its address before handing it out.
    pub async fn get_verified(&self, sha: &Sha256) -> Result<Bytes, ArtifactError> {
        let bytes = self.store.get(&Self::final_path(sha)).await?.bytes().await?;
        if Sha256::from_digest(Hasher::digest(&bytes).into()) != *sha {
            return Err(ArtifactError::Corrupt(sha.to_string()));
        }
        Ok(bytes)
    }

    /// Whether an artifact is stored at this address.
    pub async fn exists(&self, sha: &Sha256) -> Result<bool, ArtifactError> {
        match self.store.head(&Self::final_path(sha)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Overwrites a stored artifact (tests only: simulates tampering in the bucket).
    pub async fn put_raw(&self, sha: &Sha256, bytes: Bytes) -> Result<(), ArtifactError> {
        self.store.put(&Self::final_path(sha), bytes.into()).await?;
        Ok(())
    }
}

/// An upload in progress.
pub struct Upload {
    writer: Option<WriteMultipart>,
    hasher: Hasher,
    size: u64,
    max: u64,
    staging: Path,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("staging", &self.staging).field("size", &self.size).finish()
    }
}

/// A complete upload, in staging.
#[derive(Debug, Clone)]
pub struct Staged {
    pub sha256: Sha256,
    pub size_bytes: u64,
    staging: Path,
}

impl Upload {
    /// Adds a chunk; fails once the size limit is passed.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), ArtifactError> {
        self.size += chunk.len() as u64;
        if self.size > self.max {
            return Err(ArtifactError::TooLarge(self.max));
        }
        self.hasher.update(chunk);
        if let Some(w) = self.writer.as_mut() {
            // Back-pressure: wait while too many parts are in flight.
            w.wait_for_capacity(4).await?;
            w.write(chunk);
        }
        Ok(())
    }

    pub async fn finish(mut self) -> Result<Staged, ArtifactError> {
        if let Some(w) = self.writer.take() {
            w.finish().await?;
        }
        Ok(Staged { sha256: Sha256::from_digest(self.hasher.finalize().into()), size_bytes: self.size, staging: self.staging })
    }

    /// Gives up: aborts the multipart upload, so nothing is left behind.
    pub async fn abort(mut self) {
        if let Some(w) = self.writer.take() {
            if let Err(e) = w.abort().await {
                tracing::warn!(error = %e, "cannot abort an artifact upload");
            }
        }
    }
}

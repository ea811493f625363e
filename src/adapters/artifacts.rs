//! The evidence artifact store: content-addressed by SHA-256, through `object_store`.
//!
//! `AUMOS_GOVERNANCE_EVIDENCE_ARTIFACT_BUCKET` picks the backend: `s3://bucket[/prefix]`
//! (credentials and endpoint from the usual `AWS_*` variables), `gs://bucket[/prefix]`
//! (`GOOGLE_*`), `file:///dir`, or unset for `<data dir>/artifacts` on the local disk.
//!
//! An upload streams into `staging/<uuid>` (a multipart upload: at most one part is held
//! in memory) while its SHA-256 and size are computed. Only when the caller commits is it
//! moved to `sha256/<hex>`; a rejected upload (hash mismatch, over the size limit, or a
//! failed ledger append) is deleted from staging, so nothing is stored. Both [`Upload`]
//! and [`Staged`] clean up when dropped unsettled (a client that disconnects mid-upload
//! drops the request's future): the open multipart upload is aborted, the staged object
//! deleted, in a task of their own.

use std::sync::atomic::{AtomicBool, Ordering};
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
        Ok(Upload {
            writer: Some(WriteMultipart::new(upload)),
            hasher: Hasher::new(),
            size: 0,
            max: self.max_bytes,
            staging,
            store: Arc::clone(&self.store),
        })
    }

    /// Moves a finished upload to its content address (a rename on the local disk; copy
    /// and delete on object stores).
    pub async fn commit(&self, staged: &Staged) -> Result<(), ArtifactError> {
        self.store.rename(&staged.staging, &Self::final_path(&staged.sha256)).await?;
        staged.settled.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Deletes a staged upload, if it is still there (best effort: staging is not evidence).
    pub async fn discard(&self, staged: &Staged) {
        staged.settled.store(true, Ordering::Relaxed);
        delete_staged(self.store.as_ref(), &staged.staging).await;
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

async fn delete_staged(store: &dyn ObjectStore, path: &Path) {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => tracing::warn!(path = %path, error = %e, "cannot delete a staged artifact"),
    }
}

/// Runs a clean-up from a `Drop` (no runtime: nothing to run it on, nothing is lost but
/// staging space).
fn spawn_cleanup(task: impl std::future::Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(task);
    }
}

/// An upload in progress.
pub struct Upload {
    writer: Option<WriteMultipart>,
    hasher: Hasher,
    size: u64,
    max: u64,
    staging: Path,
    store: Arc<dyn ObjectStore>,
}

impl Drop for Upload {
    /// Dropped before `finish` or `abort` (the request went away mid-stream): abort the
    /// multipart upload so no part stays behind.
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            let path = self.staging.clone();
            spawn_cleanup(async move {
                if let Err(e) = w.abort().await {
                    tracing::warn!(%path, error = %e, "cannot abort an abandoned artifact upload");
                }
            });
        }
    }
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload").field("staging", &self.staging).field("size", &self.size).finish()
    }
}

/// A complete upload, in staging. Dropped before it was committed or discarded, it is
/// deleted from staging.
#[derive(Debug)]
pub struct Staged {
    pub sha256: Sha256,
    pub size_bytes: u64,
    staging: Path,
    store: Arc<dyn ObjectStore>,
    settled: AtomicBool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.settled.load(Ordering::Relaxed) {
            let (store, path) = (Arc::clone(&self.store), self.staging.clone());
            spawn_cleanup(async move { delete_staged(store.as_ref(), &path).await });
        }
    }
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
            if let Err(e) = w.finish().await {
                // `finish` consumed the writer; its parts must not outlive the request.
                delete_staged(self.store.as_ref(), &self.staging).await;
                return Err(e.into());
            }
        }
        Ok(Staged {
            sha256: Sha256::from_digest(self.hasher.clone().finalize().into()),
            size_bytes: self.size,
            staging: self.staging.clone(),
            store: Arc::clone(&self.store),
            settled: AtomicBool::new(false),
        })
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

//! Receiving a body: written to a temporary file while it is hashed and counted, so it never
//! sits whole in memory and its address (sha256) is known before it is stored.

use std::io;
use std::path::Path;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

use crate::Error;

/// A received body in a temporary file that is deleted on drop unless it is persisted.
pub(crate) struct Staged {
    pub path: TempPath,
    pub sha256: String,
    pub size: u64,
}

pub(crate) async fn stage<S>(dir: &Path, mut body: S, limit: u64) -> Result<Staged, Error>
where
    S: Stream<Item = io::Result<Bytes>> + Send + Unpin,
{
    tokio::fs::create_dir_all(dir).await?;
    let dir = dir.to_owned();
    let temp = tokio::task::spawn_blocking(move || {
        tempfile::Builder::new().prefix(".upload-").tempfile_in(dir)
    })
    .await
    .map_err(io::Error::other)??;
    let (file, path) = temp.into_parts();
    let mut file = tokio::fs::File::from_std(file);

    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        size = size.saturating_add(chunk.len() as u64);
        if size > limit {
            return Err(Error::TooLarge { limit });
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await?;
    }
    // On disk before anyone can see it under its final name.
    file.sync_all().await?;
    Ok(Staged {
        path,
        sha256: hex::encode(hasher.finalize()),
        size,
    })
}

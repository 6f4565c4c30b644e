//! The directory backend: `<root>/<sha256[0..2]>/<sha256>`, received into `<root>/.tmp` and
//! renamed into place, so a partially written object is never visible under its name.

use std::io;
use std::path::PathBuf;

use futures::StreamExt;
use tokio_util::io::ReaderStream;

use crate::stage::Staged;
use crate::{ByteStream, Error};

const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub(crate) struct DirBackend {
    root: PathBuf,
}

impl DirBackend {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn staging_dir(&self) -> PathBuf {
        self.root.join(".tmp")
    }

    fn object_path(&self, sha256: &str) -> PathBuf {
        self.root.join(&sha256[..2]).join(sha256)
    }

    pub async fn store(&self, staged: Staged) -> Result<(), Error> {
        let dest = self.object_path(&staged.sha256);
        if tokio::fs::try_exists(&dest).await? {
            // The same content is already stored; the temporary file goes on drop.
            return Ok(());
        }
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        // A concurrent store of the same content renames identical bytes over it: harmless.
        tokio::task::spawn_blocking(move || staged.path.persist(&dest))
            .await
            .map_err(io::Error::other)?
            .map_err(|err| err.error)?;
        Ok(())
    }

    pub async fn read(&self, sha256: &str) -> Result<ByteStream, Error> {
        let file = tokio::fs::File::open(self.object_path(sha256)).await?;
        Ok(ReaderStream::with_capacity(file, READ_CHUNK).boxed())
    }
}

//! Per-session workspace directory access, confined to the workspace root, and git
//! checkpoints of it kept outside the workspace.
//!
//! Every path is relative to the root and is resolved with `cap_std` (openat2
//! `RESOLVE_BENEATH` where the kernel has it), so symlinks created inside the container
//! can never lead a read or write outside the root.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use cap_std::ambient_authority;
use cap_std::fs::{Dir, DirBuilder, DirBuilderExt, MetadataExt, OpenOptions, OpenOptionsExt};
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Uid};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::process::Command;
use utoipa::ToSchema;

/// The uid/gid that files created by the service must belong to (the container's user),
/// or None to leave ownership alone.
pub type Owner = Option<(u32, u32)>;

const MAX_PATH_LEN: usize = 4096;
const DIR_MODE: u32 = 0o755;
const FILE_MODE: u32 = 0o644;
/// The message of the error cap-std returns when resolution would leave the base directory.
const CAP_STD_ESCAPE_MESSAGE: &str = "a path led outside of the filesystem";

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("{path}: absolute paths are not allowed; paths are relative to the workspace root")]
    Absolute { path: String },
    #[error("{path}: '..' components are not allowed; paths are relative to the workspace root")]
    Parent { path: String },
    #[error("{path}: invalid path: {reason}")]
    Invalid { path: String, reason: &'static str },
    #[error("{path}: resolves outside the workspace")]
    Escapes { path: String },
    #[error("{path}: is a symbolic link; write to the path it points to instead")]
    Symlink { path: String },
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    #[error("{path}: not a directory")]
    NotADirectory { path: String },
    #[error("{path}: is a directory")]
    IsADirectory { path: String },
    #[error("{path}: not a UTF-8 text file")]
    Binary { path: String },
    #[error("directory has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl FsError {
    /// A stable slug for the problem type.
    pub fn kind(&self) -> &'static str {
        match self {
            FsError::Absolute { .. } => "path-absolute",
            FsError::Parent { .. } => "path-parent",
            FsError::Invalid { .. } => "path-invalid",
            FsError::Escapes { .. } => "path-escapes",
            FsError::Symlink { .. } => "path-symlink",
            FsError::NotFound { .. } => "not-found",
            FsError::NotADirectory { .. } => "not-a-directory",
            FsError::IsADirectory { .. } => "is-a-directory",
            FsError::Binary { .. } => "binary-file",
            FsError::TooManyEntries { .. } => "too-many-entries",
            FsError::Io { .. } => "io",
        }
    }
}

/// Whether `err` is cap-std's refusal of a path that resolves outside its base directory
/// (openat2 `EXDEV` and cap-std's own resolver both produce it). It is a `PermissionDenied`
/// error without an OS error code, which a real `EACCES` always has.
fn is_escape(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::PermissionDenied
        && err.raw_os_error().is_none()
        && err
            .get_ref()
            .is_some_and(|inner| inner.to_string() == CAP_STD_ESCAPE_MESSAGE)
}

fn map_io(path: &str, err: io::Error) -> FsError {
    let path = path.to_owned();
    if is_escape(&err) {
        return FsError::Escapes { path };
    }
    // Both come from what the caller asked for or what the container made, not from the host.
    let reason = match rustix::io::Errno::from_io_error(&err) {
        Some(rustix::io::Errno::NAMETOOLONG) => {
            Some("a name is longer than 255 bytes, or the resolved path too long")
        }
        Some(rustix::io::Errno::LOOP) => Some("too many levels of symbolic links"),
        _ => None,
    };
    if let Some(reason) = reason {
        return FsError::Invalid { path, reason };
    }
    match err.kind() {
        io::ErrorKind::NotFound => FsError::NotFound { path },
        io::ErrorKind::NotADirectory => FsError::NotADirectory { path },
        io::ErrorKind::IsADirectory => FsError::IsADirectory { path },
        _ => FsError::Io { path, source: err },
    }
}

fn host_path(path: &Path) -> String {
    path.display().to_string()
}

/// Lexically validates a workspace-relative path and returns its normal components
/// (no empty or "." components). An empty result means the root.
fn components(path: &str, allow_root: bool) -> Result<Vec<&str>, FsError> {
    if path.len() > MAX_PATH_LEN {
        let shown: String = path.chars().take(64).collect();
        return Err(FsError::Invalid {
            path: format!("{shown}..."),
            reason: "longer than 4096 bytes",
        });
    }
    if path.contains('\0') {
        return Err(FsError::Invalid {
            path: path.replace('\0', "\\0"),
            reason: "contains a NUL byte",
        });
    }
    if path.starts_with('/') {
        return Err(FsError::Absolute {
            path: path.to_owned(),
        });
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(FsError::Parent {
            path: path.to_owned(),
        });
    }
    if parts.is_empty() && !allow_root {
        return Err(FsError::Invalid {
            path: path.to_owned(),
            reason: "empty file name",
        });
    }
    Ok(parts)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub name: String,
    /// Relative to the workspace root, '/'-separated.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Bytes for files, the target length for symlinks, 0 for directories.
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileOut {
    pub path: String,
    pub content: String,
    /// The full size of the file in bytes, even when `content` is truncated.
    pub size: u64,
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WriteOut {
    pub path: String,
    pub bytes: u64,
    pub created: bool,
}

/// A session's workspace directory. All access goes through a `cap_std::fs::Dir` handle
/// on the root.
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    dir: Dir,
    owner: Owner,
}

impl Workspace {
    /// Creates `root` (must not exist yet; parent must exist), mode 0o755, chowned to
    /// owner.
    pub fn create(root: &Path, owner: Owner) -> Result<Self, FsError> {
        let shown = host_path(root);
        std::fs::DirBuilder::new()
            .mode(DIR_MODE)
            .create(root)
            .map_err(|err| map_io(&shown, err))?;
        // The umask may have cleared bits of the requested mode.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(DIR_MODE))
            .map_err(|err| map_io(&shown, err))?;
        let workspace = Self::open(root, owner)?;
        workspace.chown_fd(&workspace.dir, &shown)?;
        Ok(workspace)
    }

    /// Opens an existing workspace directory.
    pub fn open(root: &Path, owner: Owner) -> Result<Self, FsError> {
        let dir = Dir::open_ambient_dir(root, ambient_authority())
            .map_err(|err| map_io(&host_path(root), err))?;
        Ok(Self {
            root: root.to_path_buf(),
            dir,
            owner,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Entries of a directory ("" or "." is the root), sorted by name. Symlinks are not
    /// followed to classify an entry.
    pub fn list(&self, dir: &str, limit: usize) -> Result<Vec<Entry>, FsError> {
        let parts = components(dir, true)?;
        let prefix = parts.join("/");
        let handle = self.open_dir(&prefix)?;
        let mut out = Vec::new();
        for entry in handle.entries().map_err(|err| map_io(&prefix, err))? {
            let entry = entry.map_err(|err| map_io(&prefix, err))?;
            let name = entry.file_name();
            let meta = match handle.symlink_metadata(&name) {
                Ok(meta) => meta,
                // Removed since the directory was read.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(map_io(&prefix, err)),
            };
            if out.len() == limit {
                return Err(FsError::TooManyEntries { limit });
            }
            let file_type = meta.file_type();
            let kind = if file_type.is_symlink() {
                EntryKind::Symlink
            } else if file_type.is_dir() {
                EntryKind::Dir
            } else if file_type.is_file() {
                EntryKind::File
            } else {
                EntryKind::Other
            };
            let name = name.to_string_lossy().into_owned();
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            out.push(Entry {
                name,
                path,
                kind,
                size: if kind == EntryKind::Dir {
                    0
                } else {
                    meta.len()
                },
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Reads a UTF-8 text file; at most `limit` bytes are returned (cut on a char
    /// boundary) with `truncated` set and the full size reported. Content that is not
    /// UTF-8 or contains NUL bytes is refused as binary.
    pub fn read(&self, path: &str, limit: usize) -> Result<FileOut, FsError> {
        let rel = components(path, false)?.join("/");
        let meta = self.dir.metadata(&rel).map_err(|err| map_io(&rel, err))?;
        check_regular(&meta, &rel)?;
        // Non-blocking so that a FIFO swapped in after the check cannot hang the read.
        let mut options = OpenOptions::new();
        options
            .read(true)
            .custom_flags(oflags(OFlags::NONBLOCK | OFlags::NOCTTY));
        let mut file = self
            .dir
            .open_with(&rel, &options)
            .map_err(|err| map_io(&rel, err))?;
        let meta = file.metadata().map_err(|err| map_io(&rel, err))?;
        check_regular(&meta, &rel)?;

        let capacity = usize::try_from(meta.len()).unwrap_or(usize::MAX).min(limit);
        let mut buf = Vec::with_capacity(capacity.saturating_add(1));
        (&mut file)
            .take(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
            .read_to_end(&mut buf)
            .map_err(|err| map_io(&rel, err))?;
        let truncated = buf.len() > limit;
        let size = if truncated {
            buf.truncate(limit);
            meta.len().max((limit as u64).saturating_add(1))
        } else {
            buf.len() as u64
        };
        let content = match String::from_utf8(buf) {
            Ok(content) => content,
            // Only an incomplete character at the cut is acceptable.
            Err(err) if truncated && err.utf8_error().error_len().is_none() => {
                let valid = err.utf8_error().valid_up_to();
                let mut bytes = err.into_bytes();
                bytes.truncate(valid);
                String::from_utf8(bytes).map_err(|_| FsError::Binary { path: rel.clone() })?
            }
            Err(_) => return Err(FsError::Binary { path: rel }),
        };
        if content.contains('\0') {
            return Err(FsError::Binary { path: rel });
        }
        Ok(FileOut {
            path: rel,
            content,
            size,
            truncated,
        })
    }

    /// Writes (creates or replaces) a file through a temporary file and a rename,
    /// creating missing parent directories. Created directories and the file are chowned
    /// to the owner; a replaced file keeps its permission bits. Refuses a path whose last
    /// component is a symlink.
    pub fn write(&self, path: &str, content: &[u8]) -> Result<WriteOut, FsError> {
        let parts = components(path, false)?;
        let rel = parts.join("/");
        let Some((name, parents)) = parts.split_last() else {
            return Err(FsError::Invalid {
                path: rel,
                reason: "empty file name",
            });
        };
        let parent = self.ensure_parents(parents, &rel)?;
        let (created, mode) = match parent.symlink_metadata(name) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(FsError::Symlink { path: rel });
            }
            Ok(meta) if meta.is_dir() => return Err(FsError::IsADirectory { path: rel }),
            // A FIFO, socket or device is left as it is rather than replaced.
            Ok(meta) if !meta.is_file() => {
                return Err(FsError::Invalid {
                    path: rel,
                    reason: "not a regular file",
                });
            }
            Ok(meta) => (false, meta.mode() & 0o777),
            Err(err) if err.kind() == io::ErrorKind::NotFound => (true, FILE_MODE),
            Err(err) => return Err(map_io(&rel, err)),
        };

        let (temp, mut file) = create_temp(&parent).map_err(|err| map_io(&rel, err))?;
        let result = file
            .write_all(content)
            .and_then(|()| self.chown_raw(&file))
            .and_then(|()| {
                rustix::fs::fchmod(&file, Mode::from_bits_truncate(mode)).map_err(Into::into)
            })
            .and_then(|()| {
                drop(file);
                // rename(2) replaces whatever entry is at `name` without following it.
                parent.rename(&temp, &parent, name)
            });
        if let Err(err) = result {
            let _ = parent.remove_file(&temp);
            return Err(map_io(&rel, err));
        }
        Ok(WriteOut {
            path: rel,
            bytes: content.len() as u64,
            created,
        })
    }

    /// Whether a regular file exists at `path` (false for missing; errors for escapes).
    pub fn is_file(&self, path: &str) -> Result<bool, FsError> {
        let rel = components(path, true)?.join("/");
        if rel.is_empty() {
            return Ok(false);
        }
        match self.dir.metadata(&rel).map_err(|err| map_io(&rel, err)) {
            Ok(meta) => Ok(meta.is_file()),
            Err(FsError::NotFound { .. } | FsError::NotADirectory { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Removes the whole workspace directory tree, never following symlinks.
    pub fn remove(self) -> Result<(), FsError> {
        for entry in self.dir.entries().map_err(|err| map_io("", err))? {
            let entry = entry.map_err(|err| map_io("", err))?;
            let name = entry.file_name();
            let shown = name.to_string_lossy().into_owned();
            // cap-std removes a symlink itself and walks directories without following.
            match self.dir.remove_dir_all(&name) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(map_io(&shown, err)),
            }
        }
        let Workspace { root, dir, .. } = self;
        drop(dir);
        std::fs::remove_dir(&root).map_err(|err| map_io(&host_path(&root), err))
    }

    /// Recursively chowns every entry to the owner without following symlinks.
    pub fn chown_all(&self) -> Result<(), FsError> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        self.chown_fd(&self.dir, "")?;

        // Depth-first with one open directory per level, so wide trees (node_modules)
        // do not exhaust file descriptors.
        struct Level {
            dir: Dir,
            prefix: String,
            subdirs: Vec<OsString>,
        }
        let chown_level = |dir: Dir, prefix: String| -> Result<Level, FsError> {
            let mut subdirs = Vec::new();
            for entry in dir.entries().map_err(|err| map_io(&prefix, err))? {
                let entry = entry.map_err(|err| map_io(&prefix, err))?;
                let name = entry.file_name();
                let shown = join_shown(&prefix, &name);
                match rustix::fs::chownat(&dir, &name, uid, gid, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::NOENT) => continue,
                    Err(err) => return Err(map_io(&shown, err.into())),
                }
                if entry
                    .file_type()
                    .map_err(|err| map_io(&shown, err))?
                    .is_dir()
                {
                    subdirs.push(name);
                }
            }
            Ok(Level {
                dir,
                prefix,
                subdirs,
            })
        };

        let root = self.dir.try_clone().map_err(|err| map_io("", err))?;
        let mut stack = vec![chown_level(root, String::new())?];
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.subdirs.pop() else {
                stack.pop();
                continue;
            };
            let shown = join_shown(&top.prefix, &name);
            let mut options = OpenOptions::new();
            options
                .read(true)
                .custom_flags(oflags(OFlags::NOFOLLOW | OFlags::DIRECTORY));
            let child = match top.dir.open_with(&name, &options) {
                Ok(file) => Dir::from_std_file(file.into_std()),
                // Replaced by something else since it was listed.
                Err(err)
                    if err.kind() == io::ErrorKind::NotFound
                        || err.kind() == io::ErrorKind::NotADirectory
                        || err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) =>
                {
                    continue;
                }
                Err(err) => return Err(map_io(&shown, err)),
            };
            stack.push(chown_level(child, shown)?);
        }
        Ok(())
    }

    fn open_dir(&self, rel: &str) -> Result<Dir, FsError> {
        if rel.is_empty() {
            self.dir.try_clone()
        } else {
            self.dir.open_dir(rel)
        }
        .map_err(|err| map_io(rel, err))
    }

    /// Opens the parent directory of a file to be written, creating (and chowning) the
    /// missing directories. Each prefix is resolved from the root, so symlinked ancestors
    /// work as long as they stay inside.
    fn ensure_parents(&self, parents: &[&str], rel: &str) -> Result<Dir, FsError> {
        let full = parents.join("/");
        match self.open_dir(&full) {
            Err(FsError::NotFound { .. }) => {}
            Err(FsError::Escapes { .. }) => return Err(FsError::Escapes { path: rel.into() }),
            Err(FsError::NotADirectory { .. }) => {
                return Err(FsError::NotADirectory { path: rel.into() });
            }
            other => return other,
        }
        let mut builder = DirBuilder::new();
        builder.mode(DIR_MODE);
        for depth in 1..=parents.len() {
            let prefix = parents[..depth].join("/");
            match self.dir.open_dir(&prefix) {
                Ok(_) => continue,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(map_io(rel, err)),
            }
            match self.dir.create_dir_with(&prefix, &builder) {
                Ok(()) => {
                    let created = self.dir.open_dir(&prefix).map_err(|err| map_io(rel, err))?;
                    self.chown_fd(&created, &prefix)?;
                }
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(map_io(rel, err)),
            }
        }
        self.dir.open_dir(&full).map_err(|err| map_io(rel, err))
    }

    fn chown_raw(&self, fd: impl std::os::fd::AsFd) -> io::Result<()> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        // AT_EMPTY_PATH rather than fchown(2): cap-std opens directories with O_PATH.
        rustix::fs::chownat(
            fd,
            c"",
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::EMPTY_PATH,
        )
        .map_err(Into::into)
    }

    fn chown_fd(&self, fd: impl std::os::fd::AsFd, shown: &str) -> Result<(), FsError> {
        self.chown_raw(fd).map_err(|err| map_io(shown, err))
    }
}

/// A new temporary file in `dir`, under a name the container cannot guess ahead (it could
/// have taken a predictable one with a file or a symlink; `create_new` does not follow).
fn create_temp(dir: &Dir) -> io::Result<(String, cap_std::fs::File)> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true).mode(0o600);
    let mut attempts = 0;
    loop {
        let temp = format!(".autonoma-write-{}.tmp", uuid::Uuid::new_v4().simple());
        match dir.open_with(&temp, &options) {
            Ok(file) => return Ok((temp, file)),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => {
                attempts += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

fn oflags(flags: OFlags) -> i32 {
    flags.bits() as i32
}

fn check_regular(meta: &cap_std::fs::Metadata, rel: &str) -> Result<(), FsError> {
    if meta.is_dir() {
        Err(FsError::IsADirectory { path: rel.into() })
    } else if !meta.is_file() {
        Err(FsError::Invalid {
            path: rel.into(),
            reason: "not a regular file",
        })
    } else {
        Ok(())
    }
}

fn join_shown(prefix: &str, name: &OsStr) -> String {
    let name = name.to_string_lossy();
    if prefix.is_empty() {
        name.into_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

// ---------------------------------------------------------------------------------------
// Checkpoints

const GIT_TIMEOUT: Duration = Duration::from_secs(30);
const EXCLUDES: &str = "node_modules/\n.git/\ndist/\n.cache/\n.next/\n";
const GIT_CONFIG: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "safe.directory=*",
    "user.name=autonoma",
    "user.email=sandbox@autonoma.local",
    "commit.gpgsign=false",
    "core.symlinks=true",
    "core.bare=false",
    "core.autocrlf=false",
];
/// Separates fields in `git log` output; the message comes last so it may contain it.
const FIELD_SEP: char = '\x1f';
const LOG_FORMAT: &str = "--format=%H%x1f%ct%x1f%B";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{command} failed: {stderr}")]
    Git { command: String, stderr: String },
    #[error("checkpoint {id} not found")]
    NotFound { id: String },
    #[error("invalid checkpoint id {id:?}: expected 7 to 40 hex characters")]
    InvalidId { id: String },
    #[error("git did not finish within {} seconds", GIT_TIMEOUT.as_secs())]
    Timeout,
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Fs(#[from] FsError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// The full commit sha.
    pub id: String,
    pub message: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// Git checkpoints of a work tree, kept in a git directory outside it so that nothing in
/// the container can plant hooks or config that the host's git would run.
#[derive(Debug)]
pub struct Checkpoints {
    git_dir: PathBuf,
    work_tree: PathBuf,
    /// Git operations share the index; one at a time.
    lock: tokio::sync::Mutex<()>,
}

impl Checkpoints {
    pub fn new(git_dir: PathBuf, work_tree: PathBuf) -> Self {
        Self {
            git_dir,
            work_tree,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Stages everything and commits it with `message` when the tree differs from the
    /// last checkpoint; None when nothing changed. The first call always commits.
    pub async fn take(&self, message: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        let _guard = self.lock.lock().await;
        self.ensure_init().await?;
        self.take_locked(message).await
    }

    /// Newest first, at most `limit`.
    pub async fn list(&self, limit: usize) -> Result<Vec<Checkpoint>, CheckpointError> {
        let _guard = self.lock.lock().await;
        if limit == 0 || !tokio::fs::try_exists(self.git_dir.join("HEAD")).await? {
            return Ok(Vec::new());
        }
        if self.head().await?.is_none() {
            return Ok(Vec::new());
        }
        let count = format!("--max-count={limit}");
        let out = self
            .run(&["log", "-z", LOG_FORMAT, &count, "HEAD"], &[])
            .await?;
        parse_log(&out)
    }

    /// Checkpoints the current state ("before restore to <id>"), then makes the work tree
    /// equal to checkpoint `id`: tracked files restored, files added since removed,
    /// excluded paths untouched. Ownership is then fixed with `workspace.chown_all()`,
    /// which runs synchronously.
    pub async fn restore(
        &self,
        id: &str,
        workspace: &Workspace,
    ) -> Result<Checkpoint, CheckpointError> {
        let id = validate_id(id)?;
        let _guard = self.lock.lock().await;
        self.ensure_init().await?;
        let commit = format!("{id}^{{commit}}");
        let out = self
            .output(&["rev-parse", "--verify", "--quiet", &commit], &[])
            .await?;
        if !out.status.success() {
            return Err(CheckpointError::NotFound { id });
        }
        let sha = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let target = self.show(&sha).await?;
        self.take_locked(&format!("before restore to {sha}"))
            .await?;
        // The index now holds the current state, so read-tree also removes the files
        // that were added since `sha`; ignored files are not in the index and stay.
        self.run(&["read-tree", "-u", "--reset", &sha], &[]).await?;
        workspace.chown_all()?;
        Ok(target)
    }

    /// Deletes the git dir.
    pub async fn remove(&self) -> Result<(), CheckpointError> {
        let _guard = self.lock.lock().await;
        match tokio::fs::remove_dir_all(&self.git_dir).await {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err.into()),
            _ => Ok(()),
        }
    }

    async fn take_locked(&self, message: &str) -> Result<Option<Checkpoint>, CheckpointError> {
        self.unstage_special_files().await?;
        self.run(&["add", "--all"], &[]).await?;
        let tree = self.run(&["write-tree"], &[]).await?.trim().to_owned();
        let head = self.head().await?;
        if let Some(head) = &head {
            let head_tree = self
                .run(&["rev-parse", &format!("{head}^{{tree}}")], &[])
                .await?;
            if head_tree.trim() == tree {
                return Ok(None);
            }
        }
        let now = OffsetDateTime::now_utc();
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let date = format!("{} +0000", now.unix_timestamp());
        let mut args = vec!["commit-tree", tree.as_str(), "-m", message];
        if let Some(head) = &head {
            args.extend(["-p", head.as_str()]);
        }
        let env = [
            ("GIT_AUTHOR_DATE", date.as_str()),
            ("GIT_COMMITTER_DATE", date.as_str()),
        ];
        let commit = self.run(&args, &env).await?.trim().to_owned();
        self.run(&["update-ref", "HEAD", &commit], &[]).await?;
        Ok(Some(Checkpoint {
            id: commit,
            message: message.to_owned(),
            created_at: now,
        }))
    }

    /// A checkpoint holds files and links. `git add --all` stops on a tracked path that has
    /// since become a FIFO, socket or device ("can only add regular files, symbolic links
    /// or git-directories"), so such paths leave the index first; untracked ones it skips.
    async fn unstage_special_files(&self) -> Result<(), CheckpointError> {
        let tracked = self.output(&["ls-files", "-z"], &[]).await?;
        if !tracked.status.success() {
            finish("git ls-files -z", tracked)?;
            return Ok(());
        }
        let work_tree = self.work_tree.clone();
        let special = tokio::task::spawn_blocking(move || {
            let mut special = Vec::new();
            for path in tracked.stdout.split(|&b| b == 0).filter(|p| !p.is_empty()) {
                let on_disk = work_tree.join(OsStr::from_bytes(path));
                let is_special = std::fs::symlink_metadata(&on_disk).is_ok_and(|meta| {
                    let kind = meta.file_type();
                    !(kind.is_file() || kind.is_dir() || kind.is_symlink())
                });
                if is_special {
                    special.extend_from_slice(path);
                    special.push(0);
                }
            }
            special
        })
        .await
        .map_err(io::Error::other)?;
        if special.is_empty() {
            return Ok(());
        }
        let mut cmd = self.command(true);
        cmd.env("GIT_LITERAL_PATHSPECS", "1").args([
            "rm",
            "--cached",
            "--quiet",
            "--ignore-unmatch",
            "--pathspec-from-file=-",
            "--pathspec-file-nul",
        ]);
        finish(
            "git rm --cached (special files)",
            run_with_input(cmd, special).await?,
        )?;
        Ok(())
    }

    async fn head(&self) -> Result<Option<String>, CheckpointError> {
        let out = self
            .output(&["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], &[])
            .await?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
    }

    async fn show(&self, sha: &str) -> Result<Checkpoint, CheckpointError> {
        let out = self
            .run(&["log", "-z", LOG_FORMAT, "--max-count=1", sha], &[])
            .await?;
        parse_log(&out)?
            .into_iter()
            .next()
            .ok_or_else(|| CheckpointError::NotFound { id: sha.to_owned() })
    }

    /// `git init` on first use (a bare git dir; the work tree is always passed
    /// explicitly), and the exclude file.
    async fn ensure_init(&self) -> Result<(), CheckpointError> {
        if self.git_dir.starts_with(&self.work_tree) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the checkpoint git dir must be outside the work tree",
            )
            .into());
        }
        if !tokio::fs::try_exists(self.git_dir.join("HEAD")).await? {
            if let Some(parent) = self.git_dir.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let mut cmd = self.command(false);
            cmd.args([
                "-c",
                "init.defaultBranch=checkpoints",
                "init",
                "--bare",
                "--quiet",
                "--template=",
            ])
            .arg(&self.git_dir);
            finish("git init", run_with_timeout(cmd).await?)?;
        }
        let info = self.git_dir.join("info");
        tokio::fs::create_dir_all(&info).await?;
        let exclude = info.join("exclude");
        if tokio::fs::read_to_string(&exclude).await.ok().as_deref() != Some(EXCLUDES) {
            tokio::fs::write(&exclude, EXCLUDES).await?;
        }
        // Calls are serialized, so a lock file left here is from a git killed on timeout.
        match tokio::fs::remove_file(self.git_dir.join("index.lock")).await {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err.into()),
            _ => Ok(()),
        }
    }

    fn command(&self, with_repo: bool) -> Command {
        let home = self.git_dir.parent().unwrap_or(&self.git_dir);
        let mut cmd = Command::new("git");
        // No inherited GIT_* variables (GIT_DIR, GIT_INDEX_FILE, ...) may apply.
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("HOME", home)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("LC_ALL", "C");
        if with_repo {
            let mut git_dir = OsString::from("--git-dir=");
            git_dir.push(&self.git_dir);
            let mut work_tree = OsString::from("--work-tree=");
            work_tree.push(&self.work_tree);
            cmd.arg(git_dir).arg(work_tree).current_dir(&self.work_tree);
        } else {
            cmd.current_dir(home);
        }
        for setting in GIT_CONFIG {
            cmd.arg("-c").arg(setting);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    async fn output(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Output, CheckpointError> {
        let mut cmd = self.command(true);
        cmd.args(args);
        for (key, value) in env {
            cmd.env(key, value);
        }
        run_with_timeout(cmd).await
    }

    async fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Result<String, CheckpointError> {
        let out = self.output(args, env).await?;
        finish(&format!("git {}", args.join(" ")), out)
    }
}

async fn run_with_timeout(mut cmd: Command) -> Result<Output, CheckpointError> {
    match tokio::time::timeout(GIT_TIMEOUT, cmd.output()).await {
        Ok(out) => Ok(out?),
        Err(_) => Err(CheckpointError::Timeout),
    }
}

async fn run_with_input(mut cmd: Command, input: Vec<u8>) -> Result<Output, CheckpointError> {
    cmd.stdin(Stdio::piped());
    let run = async {
        let mut child = cmd.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            tokio::io::AsyncWriteExt::write_all(&mut stdin, &input).await?;
        }
        child.wait_with_output().await
    };
    match tokio::time::timeout(GIT_TIMEOUT, run).await {
        Ok(out) => Ok(out?),
        Err(_) => Err(CheckpointError::Timeout),
    }
}

fn finish(command: &str, out: Output) -> Result<String, CheckpointError> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(CheckpointError::Git {
            command: command.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

fn validate_id(id: &str) -> Result<String, CheckpointError> {
    if (7..=40).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id.to_ascii_lowercase())
    } else {
        Err(CheckpointError::InvalidId { id: id.to_owned() })
    }
}

fn parse_log(out: &str) -> Result<Vec<Checkpoint>, CheckpointError> {
    out.split('\0')
        .map(|record| record.trim_start_matches('\n'))
        .filter(|record| !record.is_empty())
        .map(|record| {
            let mut fields = record.splitn(3, FIELD_SEP);
            let (Some(id), Some(time), Some(message)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(unexpected_log(record));
            };
            let created_at = time
                .parse::<i64>()
                .ok()
                .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
                .ok_or_else(|| unexpected_log(record))?;
            Ok(Checkpoint {
                id: id.to_owned(),
                message: message.trim_end_matches('\n').to_owned(),
                created_at,
            })
        })
        .collect()
}

fn unexpected_log(record: &str) -> CheckpointError {
    CheckpointError::Git {
        command: "git log".to_owned(),
        stderr: format!("unexpected output: {record:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt as _, symlink};
    use tempfile::TempDir;

    const OWNER: (u32, u32) = (1000, 1000);

    fn setup(owner: Owner) -> (TempDir, Workspace) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let ws = Workspace::create(&tmp.path().join("ws"), owner).expect("create workspace");
        (tmp, ws)
    }

    fn host(ws: &Workspace, rel: &str) -> PathBuf {
        ws.root().join(rel)
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn workspace_and_checkpoints_are_send_and_sync() {
        assert_send_sync::<Workspace>();
        assert_send_sync::<Checkpoints>();
    }

    #[test]
    fn lexical_refusals() {
        let (_tmp, ws) = setup(None);
        std::fs::create_dir(host(&ws, "a")).expect("create dir");
        for path in ["..", "../x", "a/../../x", "a/.."] {
            assert!(
                matches!(ws.list(path, 10), Err(FsError::Parent { .. })),
                "{path}"
            );
            assert!(
                matches!(ws.read(path, 10), Err(FsError::Parent { .. })),
                "{path}"
            );
            assert!(
                matches!(ws.write(path, b"x"), Err(FsError::Parent { .. })),
                "{path}"
            );
            assert!(
                matches!(ws.is_file(path), Err(FsError::Parent { .. })),
                "{path}"
            );
        }
        for path in ["/etc/passwd", "/", "//etc"] {
            assert!(
                matches!(ws.list(path, 10), Err(FsError::Absolute { .. })),
                "{path}"
            );
            assert!(
                matches!(ws.read(path, 10), Err(FsError::Absolute { .. })),
                "{path}"
            );
            assert!(
                matches!(ws.write(path, b"x"), Err(FsError::Absolute { .. })),
                "{path}"
            );
        }
        let err = ws.read("/etc/passwd", 10).expect_err("refused");
        assert_eq!(err.kind(), "path-absolute");
        assert!(
            err.to_string().contains("relative to the workspace root"),
            "{err}"
        );

        for path in ["a\0b", "a/\0"] {
            assert!(matches!(ws.list(path, 10), Err(FsError::Invalid { .. })));
            assert!(matches!(ws.read(path, 10), Err(FsError::Invalid { .. })));
            assert!(matches!(ws.write(path, b"x"), Err(FsError::Invalid { .. })));
        }
        for path in ["", ".", "./", "./."] {
            assert!(
                matches!(ws.read(path, 10), Err(FsError::Invalid { .. })),
                "{path}"
            );
            assert!(
                matches!(ws.write(path, b"x"), Err(FsError::Invalid { .. })),
                "{path}"
            );
        }
        let long = "a/".repeat(2100);
        assert!(matches!(
            ws.write(&long, b"x"),
            Err(FsError::Invalid { .. })
        ));
        assert_eq!(
            ws.read(&long, 1).expect_err("refused").kind(),
            "path-invalid"
        );
        // Nothing was created by the refused writes.
        assert_eq!(ws.list("", 10).expect("list").len(), 1);
    }

    #[test]
    fn symlink_to_outside_file_is_refused() {
        let (_tmp, ws) = setup(None);
        symlink("/etc/passwd", host(&ws, "leak")).expect("symlink");
        let err = ws.read("leak", 1 << 20).expect_err("refused");
        assert!(matches!(err, FsError::Escapes { .. }), "{err:?}");
        assert_eq!(err.kind(), "path-escapes");
        assert!(!err.to_string().contains("root:"), "{err}");
        assert!(matches!(ws.is_file("leak"), Err(FsError::Escapes { .. })));
        assert!(matches!(ws.list("leak", 10), Err(FsError::Escapes { .. })));
        assert!(matches!(
            ws.write("leak", b"pwned"),
            Err(FsError::Symlink { .. })
        ));
        // Listing shows the link itself without following it.
        let entries = ws.list("", 10).expect("list");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].kind, EntryKind::Symlink);
        assert_eq!(entries[0].size, "/etc/passwd".len() as u64);
    }

    #[test]
    fn symlink_to_root_as_directory_component_is_refused() {
        let (tmp, ws) = setup(None);
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("create dir");
        std::fs::write(outside.join("secret.txt"), "secret").expect("write");
        symlink("/", host(&ws, "rootlink")).expect("symlink");

        let err = ws
            .read("rootlink/etc/passwd", 1 << 20)
            .expect_err("refused");
        assert!(matches!(err, FsError::Escapes { .. }), "{err:?}");
        let via_root = format!("rootlink{}", outside.join("secret.txt").display());
        assert!(matches!(
            ws.read(&via_root, 100),
            Err(FsError::Escapes { .. })
        ));
        assert!(matches!(
            ws.list("rootlink", 10),
            Err(FsError::Escapes { .. })
        ));
        assert!(matches!(
            ws.list("rootlink/etc", 10),
            Err(FsError::Escapes { .. })
        ));

        for target in ["pwned.txt", "new/dir/pwned.txt"] {
            let path = format!("rootlink{}/{target}", outside.display());
            let err = ws.write(&path, b"pwned").expect_err("refused");
            assert!(matches!(err, FsError::Escapes { .. }), "{err:?}");
        }
        assert!(!outside.join("pwned.txt").exists());
        assert!(!outside.join("new").exists());
    }

    #[test]
    fn relative_symlink_upwards_is_refused() {
        let tmp = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(tmp.path().join("x")).expect("create dir");
        std::fs::write(tmp.path().join("secret.txt"), "secret").expect("write");
        let ws = Workspace::create(&tmp.path().join("x/ws"), None).expect("create workspace");
        symlink("../..", host(&ws, "up")).expect("symlink");
        // The link really does lead to the secret for anyone following it blindly.
        assert_eq!(
            std::fs::read_to_string(host(&ws, "up/secret.txt")).expect("read"),
            "secret"
        );

        assert!(matches!(
            ws.read("up/secret.txt", 100),
            Err(FsError::Escapes { .. })
        ));
        assert!(matches!(
            ws.is_file("up/secret.txt"),
            Err(FsError::Escapes { .. })
        ));
        assert!(matches!(ws.list("up", 100), Err(FsError::Escapes { .. })));
        assert!(matches!(
            ws.write("up/new.txt", b"x"),
            Err(FsError::Escapes { .. })
        ));
        assert!(matches!(
            ws.write("up/deep/new.txt", b"x"),
            Err(FsError::Escapes { .. })
        ));
        assert!(matches!(
            ws.write("up/secret.txt", b"x"),
            Err(FsError::Escapes { .. })
        ));
        assert!(!tmp.path().join("new.txt").exists());
        assert!(!tmp.path().join("deep").exists());
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("secret.txt")).expect("read"),
            "secret"
        );
    }

    #[test]
    fn symlinks_inside_the_workspace_can_be_read_through() {
        let (_tmp, ws) = setup(None);
        ws.write("sub/real.txt", b"hello").expect("write");
        symlink("sub/real.txt", host(&ws, "link.txt")).expect("symlink");
        symlink("sub", host(&ws, "dirlink")).expect("symlink");
        std::fs::create_dir(host(&ws, "other")).expect("create dir");
        symlink("../sub/real.txt", host(&ws, "other/up.txt")).expect("symlink");

        assert_eq!(ws.read("link.txt", 100).expect("read").content, "hello");
        assert_eq!(
            ws.read("dirlink/real.txt", 100).expect("read").content,
            "hello"
        );
        assert_eq!(ws.read("other/up.txt", 100).expect("read").content, "hello");
        assert!(ws.is_file("link.txt").expect("is file"));
        let listed = ws.list("dirlink", 10).expect("list");
        assert_eq!(listed[0].path, "dirlink/real.txt");
        // Writing below a symlinked directory that stays inside is fine.
        ws.write("dirlink/new.txt", b"new").expect("write");
        assert_eq!(
            std::fs::read_to_string(host(&ws, "sub/new.txt")).expect("read"),
            "new"
        );
    }

    #[test]
    fn writing_to_a_symlink_is_refused() {
        let (_tmp, ws) = setup(None);
        ws.write("real.txt", b"original").expect("write");
        symlink("real.txt", host(&ws, "link.txt")).expect("symlink");
        symlink("missing.txt", host(&ws, "dangling.txt")).expect("symlink");
        let err = ws.write("link.txt", b"changed").expect_err("refused");
        assert!(matches!(err, FsError::Symlink { .. }), "{err:?}");
        assert_eq!(err.kind(), "path-symlink");
        assert!(matches!(
            ws.write("dangling.txt", b"x"),
            Err(FsError::Symlink { .. })
        ));
        assert_eq!(ws.read("real.txt", 100).expect("read").content, "original");
        assert!(!host(&ws, "missing.txt").exists());
        assert!(
            std::fs::symlink_metadata(host(&ws, "link.txt"))
                .expect("lstat")
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn write_creates_parents_chowns_and_round_trips() {
        let (_tmp, ws) = setup(Some(OWNER));
        let root_meta = std::fs::metadata(ws.root()).expect("metadata");
        assert_eq!((root_meta.uid(), root_meta.gid()), OWNER);
        assert_eq!(root_meta.mode() & 0o7777, 0o755);

        let out = ws
            .write("./a//b/c.txt", "héllo\n".as_bytes())
            .expect("write");
        assert_eq!(
            out,
            WriteOut {
                path: "a/b/c.txt".into(),
                bytes: 7,
                created: true
            }
        );
        for rel in ["a", "a/b", "a/b/c.txt"] {
            let meta = std::fs::symlink_metadata(host(&ws, rel)).expect("lstat");
            assert_eq!((meta.uid(), meta.gid()), OWNER, "{rel}");
        }
        assert_eq!(
            std::fs::metadata(host(&ws, "a/b"))
                .expect("metadata")
                .mode()
                & 0o777,
            0o755
        );
        let meta = std::fs::metadata(host(&ws, "a/b/c.txt")).expect("metadata");
        assert_eq!(meta.mode() & 0o777, 0o644);
        assert_eq!(ws.read("a/b/c.txt", 100).expect("read").content, "héllo\n");

        // Replacing keeps the mode, gets the owner again, and reports created=false.
        std::fs::set_permissions(
            host(&ws, "a/b/c.txt"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        std::os::unix::fs::chown(host(&ws, "a/b/c.txt"), Some(0), Some(0)).expect("chown");
        let out = ws.write("a/b/c.txt", b"second").expect("write");
        assert!(!out.created);
        assert_eq!(out.bytes, 6);
        let meta = std::fs::metadata(host(&ws, "a/b/c.txt")).expect("metadata");
        assert_eq!(meta.mode() & 0o777, 0o755);
        assert_eq!((meta.uid(), meta.gid()), OWNER);
        assert_eq!(ws.read("a/b/c.txt", 100).expect("read").content, "second");

        // A directory that already existed keeps its owner.
        std::fs::create_dir(host(&ws, "rootowned")).expect("create dir");
        ws.write("rootowned/x/y.txt", b"").expect("write");
        assert_eq!(
            std::fs::metadata(host(&ws, "rootowned"))
                .expect("metadata")
                .uid(),
            0
        );
        assert_eq!(
            std::fs::metadata(host(&ws, "rootowned/x"))
                .expect("metadata")
                .uid(),
            OWNER.0
        );
        assert_eq!(ws.read("rootowned/x/y.txt", 10).expect("read").content, "");

        // No temporary files are left behind.
        let names: Vec<String> = ws
            .list("a/b", 10)
            .expect("list")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["c.txt"]);
    }

    #[test]
    fn write_without_owner_leaves_ownership_alone() {
        let (_tmp, ws) = setup(None);
        ws.write("d/f.txt", b"x").expect("write");
        assert_eq!(
            std::fs::metadata(host(&ws, "d/f.txt"))
                .expect("metadata")
                .uid(),
            0
        );
        assert_eq!(std::fs::metadata(ws.root()).expect("metadata").uid(), 0);
    }

    #[test]
    fn write_errors() {
        let (_tmp, ws) = setup(None);
        ws.write("file.txt", b"x").expect("write");
        std::fs::create_dir(host(&ws, "dir")).expect("create dir");
        assert!(matches!(
            ws.write("dir", b"x"),
            Err(FsError::IsADirectory { .. })
        ));
        assert!(matches!(
            ws.write("dir/", b"x"),
            Err(FsError::IsADirectory { .. })
        ));
        let err = ws.write("file.txt/x.txt", b"x").expect_err("refused");
        assert!(matches!(err, FsError::NotADirectory { .. }), "{err:?}");
        assert!(matches!(
            ws.write("file.txt/a/b", b"x"),
            Err(FsError::NotADirectory { .. })
        ));
    }

    #[test]
    fn read_truncates_on_a_char_boundary() {
        let (_tmp, ws) = setup(None);
        let text = "ab€cd"; // '€' is 3 bytes: a b [e2 82 ac] c d
        ws.write("t.txt", text.as_bytes()).expect("write");
        for limit in [3, 4] {
            let out = ws.read("t.txt", limit).expect("read");
            assert_eq!(out.content, "ab", "limit {limit}");
            assert!(out.truncated);
            assert_eq!(out.size, 7);
        }
        let out = ws.read("t.txt", 5).expect("read");
        assert_eq!(
            (out.content.as_str(), out.truncated, out.size),
            ("ab€", true, 7)
        );
        let out = ws.read("t.txt", 7).expect("read");
        assert_eq!(
            (out.content.as_str(), out.truncated, out.size),
            (text, false, 7)
        );
        let out = ws.read("t.txt", 0).expect("read");
        assert_eq!(
            (out.content.as_str(), out.truncated, out.size),
            ("", true, 7)
        );
        assert_eq!(out.path, "t.txt");
    }

    #[test]
    fn read_detects_binary_and_non_files() {
        let (_tmp, ws) = setup(None);
        ws.write("bin", &[0x89, b'P', b'N', b'G', 0xff, 0xfe])
            .expect("write");
        ws.write("nul", b"abc\0def").expect("write");
        // Invalid UTF-8 after the limit is not inspected; inside it is.
        ws.write("late", b"hello\xff").expect("write");
        ws.write("cut", "ab€".as_bytes()).expect("write");
        ws.write("incomplete", b"ab\xe2\x82").expect("write");
        let err = ws.read("bin", 100).expect_err("refused");
        assert!(matches!(err, FsError::Binary { .. }), "{err:?}");
        assert_eq!(err.kind(), "binary-file");
        assert!(matches!(ws.read("nul", 100), Err(FsError::Binary { .. })));
        assert!(matches!(ws.read("late", 100), Err(FsError::Binary { .. })));
        assert_eq!(ws.read("late", 5).expect("read").content, "hello");
        assert!(matches!(
            ws.read("incomplete", 100),
            Err(FsError::Binary { .. })
        ));

        std::fs::create_dir(host(&ws, "dir")).expect("create dir");
        assert!(matches!(
            ws.read("dir", 100),
            Err(FsError::IsADirectory { .. })
        ));
        assert!(matches!(
            ws.read("missing", 100),
            Err(FsError::NotFound { .. })
        ));
        assert!(matches!(
            ws.read("bin/x", 100),
            Err(FsError::NotADirectory { .. })
        ));
        let fifo = host(&ws, "fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            Mode::from_bits_truncate(0o644),
            0,
        )
        .expect("mkfifo");
        assert!(matches!(
            ws.read("fifo", 100),
            Err(FsError::Invalid {
                reason: "not a regular file",
                ..
            })
        ));
    }

    #[test]
    fn is_file_cases() {
        let (_tmp, ws) = setup(None);
        ws.write("f.txt", b"x").expect("write");
        std::fs::create_dir(host(&ws, "d")).expect("create dir");
        assert!(ws.is_file("f.txt").expect("is file"));
        assert!(!ws.is_file("d").expect("is file"));
        assert!(!ws.is_file("missing").expect("is file"));
        assert!(!ws.is_file("f.txt/x").expect("is file"));
        assert!(!ws.is_file("").expect("is file"));
        assert!(matches!(
            ws.is_file("/etc/passwd"),
            Err(FsError::Absolute { .. })
        ));
    }

    #[test]
    fn list_sorts_classifies_and_limits() {
        let (_tmp, ws) = setup(None);
        ws.write("b.txt", b"abc").expect("write");
        ws.write("src/main.tsx", b"12345").expect("write");
        ws.write("A.md", b"").expect("write");
        symlink("b.txt", host(&ws, "c-link")).expect("symlink");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            host(&ws, "pipe"),
            rustix::fs::FileType::Fifo,
            Mode::from_bits_truncate(0o644),
            0,
        )
        .expect("mkfifo");

        let entries = ws.list("", 5).expect("list");
        let summary: Vec<(&str, &str, EntryKind, u64)> = entries
            .iter()
            .map(|e| (e.name.as_str(), e.path.as_str(), e.kind, e.size))
            .collect();
        assert_eq!(
            summary,
            [
                ("A.md", "A.md", EntryKind::File, 0),
                ("b.txt", "b.txt", EntryKind::File, 3),
                ("c-link", "c-link", EntryKind::Symlink, 5),
                ("pipe", "pipe", EntryKind::Other, 0),
                ("src", "src", EntryKind::Dir, 0),
            ]
        );
        assert_eq!(ws.list(".", 5).expect("list"), entries);
        let err = ws.list("", 4).expect_err("refused");
        assert!(
            matches!(err, FsError::TooManyEntries { limit: 4 }),
            "{err:?}"
        );
        assert_eq!(err.kind(), "too-many-entries");

        let sub = ws.list("src/", 10).expect("list");
        assert_eq!(sub.len(), 1);
        assert_eq!((sub[0].path.as_str(), sub[0].size), ("src/main.tsx", 5));
        assert!(matches!(
            ws.list("b.txt", 10),
            Err(FsError::NotADirectory { .. })
        ));
        assert!(matches!(ws.list("nope", 10), Err(FsError::NotFound { .. })));
        assert!(ws.list("src", 1).is_ok());
        assert!(matches!(
            ws.list("src", 0),
            Err(FsError::TooManyEntries { limit: 0 })
        ));
    }

    #[test]
    fn create_and_open() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().join("ws");
        let ws = Workspace::create(&root, None).expect("create workspace");
        ws.write("x", b"1").expect("write");
        assert!(Workspace::create(&root, None).is_err());
        assert!(matches!(
            Workspace::create(&tmp.path().join("no/parent"), None),
            Err(FsError::NotFound { .. })
        ));
        let again = Workspace::open(&root, None).expect("open workspace");
        assert_eq!(again.read("x", 10).expect("read").content, "1");
        assert!(matches!(
            Workspace::open(&tmp.path().join("missing"), None),
            Err(FsError::NotFound { .. })
        ));
    }

    #[test]
    fn chown_all_does_not_follow_symlinks() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let outside = tmp.path().join("outside.txt");
        std::fs::write(&outside, "x").expect("write");
        let outside_dir = tmp.path().join("outside-dir");
        std::fs::create_dir(&outside_dir).expect("create dir");
        std::fs::write(outside_dir.join("f"), "x").expect("write");

        let root = tmp.path().join("ws");
        Workspace::create(&root, None)
            .expect("create workspace")
            .write("a/b/c.txt", b"x")
            .expect("write");
        symlink(&outside, root.join("a/leak")).expect("symlink");
        symlink(&outside_dir, root.join("a/b/leakdir")).expect("symlink");
        for i in 0..50 {
            std::fs::create_dir_all(root.join(format!("wide/d{i}/e"))).expect("create dirs");
        }
        let ws = Workspace::open(&root, Some(OWNER)).expect("open workspace");
        ws.chown_all().expect("chown all");

        for rel in [
            "",
            "a",
            "a/b",
            "a/b/c.txt",
            "a/leak",
            "a/b/leakdir",
            "wide/d7/e",
        ] {
            let meta = std::fs::symlink_metadata(root.join(rel)).expect("lstat");
            assert_eq!((meta.uid(), meta.gid()), OWNER, "{rel}");
        }
        assert_eq!(std::fs::metadata(&outside).expect("metadata").uid(), 0);
        assert_eq!(std::fs::metadata(&outside_dir).expect("metadata").uid(), 0);
        assert_eq!(
            std::fs::metadata(outside_dir.join("f"))
                .expect("metadata")
                .uid(),
            0
        );

        // Without an owner nothing changes.
        std::os::unix::fs::lchown(root.join("a/b/c.txt"), Some(0), Some(0)).expect("lchown");
        Workspace::open(&root, None)
            .expect("open workspace")
            .chown_all()
            .expect("chown all");
        assert_eq!(
            std::fs::metadata(root.join("a/b/c.txt"))
                .expect("metadata")
                .uid(),
            0
        );
    }

    #[test]
    fn loops_and_overlong_names_are_invalid_paths() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let ws = Workspace::create(&tmp.path().join("ws"), None).expect("create workspace");
        symlink("self", ws.root().join("self")).expect("symlink");
        let long = "n".repeat(256);
        for path in ["self", "self/x", long.as_str()] {
            assert!(
                matches!(ws.read(path, 10), Err(FsError::Invalid { .. })),
                "read {path}"
            );
        }
        for path in ["self/x", long.as_str()] {
            assert!(
                matches!(ws.write(path, b"x"), Err(FsError::Invalid { .. })),
                "write {path}"
            );
        }
        assert!(matches!(ws.list("self", 10), Err(FsError::Invalid { .. })));
    }

    #[test]
    fn write_leaves_fifos_alone() {
        use std::os::unix::fs::FileTypeExt as _;
        let tmp = tempfile::tempdir().expect("temp dir");
        let ws = Workspace::create(&tmp.path().join("ws"), None).expect("create workspace");
        let fifo = ws.root().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, Mode::from_raw_mode(0o644)).expect("mkfifo");
        assert!(matches!(
            ws.write("fifo", b"x"),
            Err(FsError::Invalid { .. })
        ));
        assert!(matches!(ws.read("fifo", 10), Err(FsError::Invalid { .. })));
        assert!(
            std::fs::symlink_metadata(&fifo)
                .expect("metadata")
                .file_type()
                .is_fifo()
        );
    }

    #[test]
    fn remove_does_not_follow_symlinks() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("create dir");
        std::fs::write(outside.join("keep.txt"), "keep").expect("write");
        let root = tmp.path().join("ws");
        let ws = Workspace::create(&root, Some(OWNER)).expect("create workspace");
        ws.write("deep/er/file.txt", b"x").expect("write");
        symlink(&outside, root.join("deep/link")).expect("symlink");
        symlink("/", root.join("rootlink")).expect("symlink");
        ws.remove().expect("remove");
        assert!(!root.exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("keep.txt")).expect("read"),
            "keep"
        );
    }

    #[test]
    fn error_slugs() {
        let io = || io::Error::other("x");
        let cases: [(FsError, &str); 11] = [
            (FsError::Absolute { path: "/".into() }, "path-absolute"),
            (FsError::Parent { path: "..".into() }, "path-parent"),
            (
                FsError::Invalid {
                    path: "".into(),
                    reason: "r",
                },
                "path-invalid",
            ),
            (FsError::Escapes { path: "".into() }, "path-escapes"),
            (FsError::Symlink { path: "".into() }, "path-symlink"),
            (FsError::NotFound { path: "".into() }, "not-found"),
            (
                FsError::NotADirectory { path: "".into() },
                "not-a-directory",
            ),
            (FsError::IsADirectory { path: "".into() }, "is-a-directory"),
            (FsError::Binary { path: "".into() }, "binary-file"),
            (FsError::TooManyEntries { limit: 1 }, "too-many-entries"),
            (
                FsError::Io {
                    path: "".into(),
                    source: io(),
                },
                "io",
            ),
        ];
        for (err, slug) in cases {
            assert_eq!(err.kind(), slug);
        }
        // A genuine permission error is not mistaken for an escape.
        let denied = io::Error::from_raw_os_error(rustix::io::Errno::ACCESS.raw_os_error());
        assert!(!is_escape(&denied));
        assert!(is_escape(&io::Error::new(
            io::ErrorKind::PermissionDenied,
            CAP_STD_ESCAPE_MESSAGE
        )));
    }

    // --- checkpoints ---

    struct Fixture {
        tmp: TempDir,
        ws: Workspace,
        cps: Checkpoints,
    }

    fn fixture(owner: Owner) -> Fixture {
        let tmp = tempfile::tempdir().expect("temp dir");
        let ws = Workspace::create(&tmp.path().join("ws"), owner).expect("create workspace");
        let cps = Checkpoints::new(
            tmp.path().join("git/checkpoints.git"),
            ws.root().to_path_buf(),
        );
        Fixture { tmp, ws, cps }
    }

    fn content(ws: &Workspace, rel: &str) -> Option<String> {
        std::fs::read_to_string(ws.root().join(rel)).ok()
    }

    #[tokio::test]
    async fn take_commits_only_changes() {
        let f = fixture(None);
        assert!(f.cps.list(10).await.expect("list").is_empty());
        let first = f
            .cps
            .take("empty")
            .await
            .expect("take")
            .expect("first take commits");
        assert_eq!(first.id.len(), 40);
        assert_eq!(first.message, "empty");
        assert!(f.cps.take("again").await.expect("take").is_none());
        f.ws.write("a.txt", b"1").expect("write");
        let second = f.cps.take("added a").await.expect("take").expect("changed");
        assert!(f.cps.take("again").await.expect("take").is_none());
        // Changes only under excluded paths do not count.
        f.ws.write("node_modules/x/index.js", b"1").expect("write");
        f.ws.write("dist/out.js", b"1").expect("write");
        f.ws.write("src/.cache/c", b"1").expect("write");
        assert!(f.cps.take("excluded only").await.expect("take").is_none());

        let list = f.cps.list(10).await.expect("list");
        assert_eq!(list, [second.clone(), first.clone()]);
        assert_eq!(f.cps.list(1).await.expect("list"), [second]);
        assert!(f.cps.list(0).await.expect("list").is_empty());
        let age = OffsetDateTime::now_utc() - first.created_at;
        assert!(age.whole_seconds().abs() < 60, "{age}");
    }

    #[tokio::test]
    async fn a_tracked_file_that_became_a_fifo_leaves_the_checkpoint() {
        let f = fixture(None);
        f.ws.write("pipe", b"was a file").expect("write");
        f.ws.write("odd [name]*", b"kept").expect("write");
        f.cps.take("files").await.expect("take").expect("changed");
        let pipe = f.ws.root().join("pipe");
        std::fs::remove_file(&pipe).expect("remove");
        rustix::fs::mkfifoat(rustix::fs::CWD, &pipe, Mode::from_raw_mode(0o644)).expect("mkfifo");
        let taken = f
            .cps
            .take("fifo")
            .await
            .expect("a FIFO does not fail the checkpoint");
        assert!(taken.is_some(), "the file's removal is a change");
        let tracked = f.cps.run(&["ls-files"], &[]).await.expect("ls-files");
        assert_eq!(tracked.lines().collect::<Vec<_>>(), ["odd [name]*"]);
        // Still a FIFO, and still nothing to add once it is out of the index.
        assert!(f.cps.take("again").await.expect("take").is_none());
    }

    #[tokio::test]
    async fn restore_brings_back_the_old_state() {
        let f = fixture(Some(OWNER));
        f.ws.write("a.txt", b"one").expect("write");
        f.ws.write("src/b.txt", b"two").expect("write");
        f.ws.write("node_modules/pkg/index.js", b"nm1")
            .expect("write");
        symlink("a.txt", f.ws.root().join("link")).expect("symlink");
        let first = f
            .cps
            .take("first")
            .await
            .expect("take")
            .expect("a change to commit");

        f.ws.write("a.txt", b"ONE").expect("write");
        f.ws.write("c.txt", b"added").expect("write");
        f.ws.write("newdir/d.txt", b"added").expect("write");
        std::fs::remove_file(f.ws.root().join("src/b.txt")).expect("remove file");
        std::fs::remove_file(f.ws.root().join("link")).expect("remove file");
        f.ws.write("node_modules/pkg/index.js", b"nm2")
            .expect("write");
        let second = f
            .cps
            .take("second")
            .await
            .expect("take")
            .expect("a change to commit");
        f.ws.write("uncommitted.txt", b"later").expect("write");

        let restored = f
            .cps
            .restore(&first.id[..10], &f.ws)
            .await
            .expect("restore");
        assert_eq!(restored, first);
        assert_eq!(content(&f.ws, "a.txt").as_deref(), Some("one"));
        assert_eq!(content(&f.ws, "src/b.txt").as_deref(), Some("two"));
        assert_eq!(content(&f.ws, "c.txt"), None);
        assert_eq!(content(&f.ws, "uncommitted.txt"), None);
        assert!(!f.ws.root().join("newdir").exists());
        assert_eq!(
            std::fs::read_link(f.ws.root().join("link")).expect("read link"),
            Path::new("a.txt")
        );
        assert_eq!(
            content(&f.ws, "node_modules/pkg/index.js").as_deref(),
            Some("nm2")
        );
        for rel in ["a.txt", "src", "src/b.txt", "link"] {
            let meta = std::fs::symlink_metadata(f.ws.root().join(rel)).expect("lstat");
            assert_eq!((meta.uid(), meta.gid()), OWNER, "{rel}");
        }

        // The state before the restore was itself checkpointed, and can be restored.
        let list = f.cps.list(10).await.expect("list");
        let messages: Vec<&str> = list.iter().map(|c| c.message.as_str()).collect();
        let before = format!("before restore to {}", first.id);
        assert_eq!(messages, [before.as_str(), "second", "first"]);
        assert_eq!(list[1], second);
        f.cps.restore(&list[0].id, &f.ws).await.expect("restore");
        assert_eq!(content(&f.ws, "uncommitted.txt").as_deref(), Some("later"));
        assert_eq!(content(&f.ws, "a.txt").as_deref(), Some("ONE"));
        assert_eq!(content(&f.ws, "src/b.txt"), None);
    }

    #[tokio::test]
    async fn restore_does_not_write_through_symlinks() {
        let f = fixture(None);
        let outside = f.tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("create dir");
        f.ws.write("conf/app.txt", b"app").expect("write");
        f.ws.write("keep/k.txt", b"k").expect("write");
        let first = f
            .cps
            .take("first")
            .await
            .expect("take")
            .expect("a change to commit");

        // The container swaps directories for symlinks that lead outside, one of them
        // hidden from git by a .gitignore of its own.
        std::fs::remove_dir_all(f.ws.root().join("conf")).expect("remove dir");
        symlink(&outside, f.ws.root().join("conf")).expect("symlink");
        std::fs::remove_dir_all(f.ws.root().join("keep")).expect("remove dir");
        symlink(&outside, f.ws.root().join("keep")).expect("symlink");
        f.ws.write(".gitignore", b"keep\n").expect("write");

        f.cps.restore(&first.id, &f.ws).await.expect("restore");
        assert!(!outside.join("app.txt").exists());
        assert!(!outside.join("k.txt").exists());
        assert_eq!(content(&f.ws, "conf/app.txt").as_deref(), Some("app"));
        assert_eq!(content(&f.ws, "keep/k.txt").as_deref(), Some("k"));
        for rel in ["conf", "keep"] {
            let meta = std::fs::symlink_metadata(f.ws.root().join(rel)).expect("lstat");
            assert!(meta.is_dir(), "{rel}");
        }
    }

    #[tokio::test]
    async fn restore_rejects_bad_and_unknown_ids() {
        let f = fixture(None);
        for id in [
            "",
            "abc",
            "abcdef",
            "xyz1234",
            "../../etc",
            "--help",
            &"a".repeat(41),
        ] {
            let err = f.cps.restore(id, &f.ws).await.expect_err("refused");
            assert!(
                matches!(err, CheckpointError::InvalidId { .. }),
                "{id}: {err:?}"
            );
        }
        f.cps.take("first").await.expect("take");
        f.ws.write("a.txt", b"x").expect("write");
        for id in ["deadbeef", "0000000", &"1".repeat(40)] {
            let err = f.cps.restore(id, &f.ws).await.expect_err("refused");
            assert!(
                matches!(err, CheckpointError::NotFound { .. }),
                "{id}: {err:?}"
            );
        }
        // A failed restore changes nothing.
        assert_eq!(content(&f.ws, "a.txt").as_deref(), Some("x"));
        assert_eq!(f.cps.list(10).await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn workspace_git_hooks_and_config_are_ignored() {
        let f = fixture(None);
        let marker = f.tmp.path().join("marker");
        let script = format!("#!/bin/sh\necho ran >> {}\n", marker.display());
        let git_dir = f.ws.root().join(".git");
        std::fs::create_dir_all(git_dir.join("hooks")).expect("create dirs");
        std::fs::create_dir_all(git_dir.join("refs/heads")).expect("create dirs");
        std::fs::create_dir_all(git_dir.join("objects")).expect("create dirs");
        std::fs::write(git_dir.join("HEAD"), "ref: refs/heads/main\n").expect("write");
        for hook in [
            "pre-commit",
            "post-commit",
            "post-checkout",
            "reference-transaction",
            "fsmon",
        ] {
            let path = git_dir.join("hooks").join(hook);
            std::fs::write(&path, &script).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let fsmon = git_dir.join("hooks/fsmon");
        std::fs::write(
            git_dir.join("config"),
            format!(
                "[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tfsmonitor = {}\n\
                 \thooksPath = .git/hooks\n[user]\n\tname = t\n\temail = t@t\n",
                fsmon.display()
            ),
        )
        .expect("write");
        f.ws.write("a.txt", b"1").expect("write");

        let first = f
            .cps
            .take("first")
            .await
            .expect("take")
            .expect("a change to commit");
        f.ws.write("a.txt", b"2").expect("write");
        f.cps
            .take("second")
            .await
            .expect("take")
            .expect("a change to commit");
        f.cps.list(10).await.expect("list");
        f.cps.restore(&first.id, &f.ws).await.expect("restore");
        assert!(!marker.exists(), "a hook from the workspace ran");
        // The workspace's .git is neither checkpointed nor touched by a restore.
        assert!(git_dir.join("config").exists());
        assert_eq!(content(&f.ws, "a.txt").as_deref(), Some("1"));

        // The planted repository is live: plain git in the workspace does run it.
        let status = std::process::Command::new("git")
            .current_dir(f.ws.root())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .stderr(Stdio::null())
            .args([
                "-c",
                "safe.directory=*",
                "commit",
                "--allow-empty",
                "-q",
                "-m",
                "x",
            ])
            .status()
            .expect("run git");
        assert!(status.success());
        assert!(
            marker.exists(),
            "the planted hook should run under plain git"
        );
    }

    #[tokio::test]
    async fn remove_deletes_the_git_dir() {
        let f = fixture(None);
        f.cps.take("first").await.expect("take");
        let git_dir = f.tmp.path().join("git/checkpoints.git");
        assert!(git_dir.join("HEAD").exists());
        assert_eq!(
            std::fs::read_to_string(git_dir.join("info/exclude")).expect("read"),
            EXCLUDES
        );
        f.cps.remove().await.expect("remove");
        assert!(!git_dir.exists());
        f.cps.remove().await.expect("remove");
        assert!(f.cps.list(10).await.expect("list").is_empty());
        // Checkpoints start over after a removal.
        assert!(f.cps.take("again").await.expect("take").is_some());
    }

    #[tokio::test]
    async fn git_dir_inside_the_work_tree_is_refused() {
        let f = fixture(None);
        let cps = Checkpoints::new(f.ws.root().join(".checkpoints"), f.ws.root().to_path_buf());
        assert!(matches!(cps.take("x").await, Err(CheckpointError::Io(_))));
        assert!(!f.ws.root().join(".checkpoints").exists());
    }

    #[test]
    fn parse_log_reads_multiline_messages() {
        let out = "aaaa\x1f1700000000\x1fline one\nline two\n\n\0bbbb\x1f1600000000\x1fx\x1fy\n\0";
        let list = parse_log(out).expect("parse");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].message, "line one\nline two");
        assert_eq!(list[0].created_at.unix_timestamp(), 1_700_000_000);
        assert_eq!(list[1].message, "x\x1fy");
        assert!(parse_log("garbage\0").is_err());
    }
}

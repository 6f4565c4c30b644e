//! Runs a local PostgreSQL cluster from the installed server binaries: `initdb` once per data
//! directory, then `postgres` as a child process listening on loopback only.
//!
//! PostgreSQL refuses to run as root, so when this process is root, `initdb` and the server run as
//! the `postgres` OS user (which the distribution packages create) and the directories they use
//! are handed to it.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::{Pid, User};
use tracing::{debug, info, warn};

/// The tools a usable installation must provide together.
const SERVER_TOOLS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
/// The OS account the server runs as when this process is root.
const OS_USER: &str = "postgres";
/// The database superuser `initdb` creates; connections authenticate with `trust`.
const DB_SUPERUSER: &str = "postgres";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const LOG_TAIL_LINES: usize = 40;
const INSTALL_HINT: &str = "install the PostgreSQL server with `apt-get install -y postgresql` \
     (Debian/Ubuntu) or `brew install postgresql` (macOS)";

/// A directory holding the PostgreSQL server tools (`initdb`, `pg_ctl`, `postgres`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    bin_dir: PathBuf,
}

impl PgBinaries {
    /// Finds the server tools on `PATH`, else in the newest `/usr/lib/postgresql/<version>/bin`
    /// (Debian/Ubuntu keep them off `PATH`), else in a Homebrew keg.
    pub fn locate() -> Result<Self> {
        let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect())
            .unwrap_or_default();
        candidates.extend(versioned_bin_dirs(Path::new("/usr/lib/postgresql"), ""));
        for keg_root in ["/opt/homebrew/opt", "/usr/local/opt"] {
            candidates.extend(versioned_bin_dirs(Path::new(keg_root), "postgresql"));
        }
        locate_in(&candidates)
    }

    /// Uses the server tools in `bin_dir`, failing if any is missing.
    pub fn from_dir(bin_dir: impl Into<PathBuf>) -> Result<Self> {
        let bin_dir = bin_dir.into();
        let missing: Vec<&str> = SERVER_TOOLS
            .into_iter()
            .filter(|tool| !is_executable(&bin_dir.join(tool)))
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} lacks the PostgreSQL server tool(s) {}; {INSTALL_HINT}",
                bin_dir.display(),
                missing.join(", ")
            );
        }
        Ok(Self { bin_dir })
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Path of a tool in the installation's bin directory (`psql`, `pg_isready`, ...); it may not
    /// exist when only the server tools are installed there.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// The server's version line, e.g. `postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)`.
    pub fn version(&self) -> Result<String> {
        let postgres = self.tool("postgres");
        let out = Command::new(&postgres)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} --version", postgres.display()))?;
        if !out.status.success() {
            bail!(
                "{} --version failed ({}): {}",
                postgres.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

fn locate_in(candidates: &[PathBuf]) -> Result<PgBinaries> {
    let mut incomplete = Vec::new();
    for dir in candidates {
        let present: Vec<&str> = SERVER_TOOLS
            .into_iter()
            .filter(|tool| is_executable(&dir.join(tool)))
            .collect();
        let Some(first) = present.first() else {
            continue;
        };
        // Tools on PATH are often symlinks into the real installation, which holds the full set
        // (pg_isready, psql, ...), so prefer that directory.
        if let Ok(real) = fs::canonicalize(dir.join(first))
            && let Some(real_dir) = real.parent()
            && let Ok(bins) = PgBinaries::from_dir(real_dir)
        {
            return Ok(bins);
        }
        if present.len() == SERVER_TOOLS.len() {
            return Ok(PgBinaries {
                bin_dir: dir.clone(),
            });
        }
        incomplete.push(format!("{} has only {}", dir.display(), present.join(", ")));
    }
    let mut message = String::from(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH \
         or in /usr/lib/postgresql/<version>/bin",
    );
    if !incomplete.is_empty() {
        message.push_str(&format!(" ({})", incomplete.join("; ")));
    }
    bail!("{message}; {INSTALL_HINT}")
}

/// `<root>/<prefix><version>/bin` directories, newest version first (`15` beats `9.6`).
fn versioned_bin_dirs(root: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name.strip_prefix(prefix)?.trim_start_matches('@');
            let version: Vec<u32> = if version.is_empty() {
                Vec::new()
            } else {
                version
                    .split('.')
                    .map(|part| part.parse().ok())
                    .collect::<Option<_>>()?
            };
            Some((version, entry.path().join("bin")))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, dir)| dir).collect()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.mode() & 0o111 != 0)
}

/// A port on 127.0.0.1 that was free a moment ago (bound, then released).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// How to start a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Created and initialised with `initdb` when missing or empty; an initialised directory is
    /// reused, so its data survives restarts.
    pub data_dir: PathBuf,
    /// Port on 127.0.0.1 to listen on; 0 picks a free one.
    pub port: u16,
    /// The server gets SIGINT (fast shutdown) when the thread that started it exits, including
    /// when the whole process dies. Linux only. The kernel ties this to the starting *thread*,
    /// so start from a thread that lives as long as the server should.
    pub stop_with_parent: bool,
    /// Where the server writes its log (appended); default `<data_dir>.log` beside the data
    /// directory.
    pub log_file: Option<PathBuf>,
    /// For throwaway clusters: fsync, synchronous_commit and full_page_writes off. Much faster,
    /// but a crash of the machine can corrupt the data.
    pub ephemeral: bool,
}

impl ClusterOptions {
    /// Durable cluster in `data_dir` on a free port, outliving its starter, default log file.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            port: 0,
            stop_with_parent: false,
            log_file: None,
            ephemeral: false,
        }
    }
}

/// A running PostgreSQL server, child of this process. Dropping it stops the server.
#[derive(Debug)]
pub struct Cluster {
    /// `None` only once stopped.
    child: Option<Child>,
    pid: u32,
    port: u16,
    data_dir: PathBuf,
    log_file: PathBuf,
    socket_dir: tempfile::TempDir,
}

impl Cluster {
    /// Initialises `opts.data_dir` if needed, starts `postgres` on it and waits until it accepts
    /// connections. The superuser is `postgres` with trust authentication, reachable over TCP on
    /// 127.0.0.1 only.
    pub fn start(bins: &PgBinaries, opts: ClusterOptions) -> Result<Cluster> {
        let user = ServerUser::for_current_process()?;
        let data_dir = prepare_data_dir(bins, &opts.data_dir, opts.ephemeral, user)?;
        let log_file = match &opts.log_file {
            Some(path) => std::path::absolute(path)
                .with_context(|| format!("resolving log file path {}", path.display()))?,
            None => default_log_path(&data_dir),
        };
        wait_until_unused(&data_dir)?;
        let socket_dir = make_socket_dir(user)?;

        let deadline = Instant::now() + START_TIMEOUT;
        let mut may_retry_port = opts.port == 0;
        loop {
            let port = match opts.port {
                0 => free_port()?,
                port => port,
            };
            let launch = Launch {
                bins,
                data_dir: &data_dir,
                port,
                socket_dir: socket_dir.path(),
                log_file: &log_file,
                user,
                stop_with_parent: opts.stop_with_parent,
                ephemeral: opts.ephemeral,
                deadline,
            };
            match launch.run() {
                Ok(child) => {
                    let pid = child.id();
                    info!(pid, port, data_dir = %data_dir.display(), "PostgreSQL is ready");
                    return Ok(Cluster {
                        child: Some(child),
                        pid,
                        port,
                        data_dir,
                        log_file,
                        socket_dir,
                    });
                }
                // The free port can be taken between probing and postgres binding it.
                Err(LaunchError::PortTaken(err)) if may_retry_port => {
                    warn!(
                        port,
                        "port taken before PostgreSQL could bind it; retrying: {err:#}"
                    );
                    may_retry_port = false;
                }
                // A previous server's processes can linger briefly after it was killed.
                Err(LaunchError::DataDirBusy(err)) if Instant::now() < deadline => {
                    debug!("data directory still locked; retrying: {err:#}");
                    thread::sleep(Duration::from_millis(200));
                }
                Err(
                    LaunchError::PortTaken(err)
                    | LaunchError::DataDirBusy(err)
                    | LaunchError::Other(err),
                ) => return Err(err),
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL for `database` as the superuser, e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{DB_SUPERUSER}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// Process id of the postmaster.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The (canonical) data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Private directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.socket_dir.path()
    }

    /// The server's exit status if it has exited on its own, `None` while it runs.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(child) => child
                .try_wait()
                .context("checking whether PostgreSQL is still running"),
            None => bail!("the cluster was already stopped"),
        }
    }

    /// Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit); escalates to
    /// SIGQUIT and then SIGKILL if the server does not exit in time.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(status) = child.try_wait()? {
            warn!(pid = self.pid, %status, "PostgreSQL had already exited");
            return Ok(());
        }
        let pid = Pid::from_raw(i32::try_from(self.pid).context("postmaster pid out of range")?);
        for (sig, grace) in [
            (Signal::SIGINT, STOP_TIMEOUT),
            (Signal::SIGQUIT, QUIT_TIMEOUT),
        ] {
            match signal::kill(pid, sig) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(err) => {
                    return Err(err).with_context(|| format!("sending {sig} to PostgreSQL"));
                }
            }
            if let Some(status) = wait_timeout(&mut child, grace)? {
                debug!(pid = self.pid, %status, "PostgreSQL stopped");
                return Ok(());
            }
            warn!(
                pid = self.pid,
                "PostgreSQL did not exit within {grace:?} of {sig}; escalating"
            );
        }
        child.kill().context("killing PostgreSQL")?;
        child.wait().context("waiting for PostgreSQL to exit")?;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(err) = self.shutdown() {
            warn!(pid = self.pid, "stopping PostgreSQL: {err:#}");
        }
    }
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for PostgreSQL")? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// The unprivileged account the server runs as when this process is root.
#[derive(Debug, Clone, Copy)]
struct ServerUser {
    uid: u32,
    gid: u32,
}

impl ServerUser {
    fn for_current_process() -> Result<Option<Self>> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        let user = User::from_name(OS_USER)
            .with_context(|| format!("looking up the `{OS_USER}` OS user"))?
            .ok_or_else(|| {
                anyhow!(
                    "running as root, and PostgreSQL refuses to run as root: it has to run as \
                     the `{OS_USER}` OS user, which does not exist on this machine; \
                     {INSTALL_HINT} (which creates it), or run as a non-root user"
                )
            })?;
        Ok(Some(Self {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }))
    }

    fn chown(&self, path: &Path) -> Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
            .with_context(|| format!("handing {} to the `{OS_USER}` user", path.display()))
    }

    /// Runs the command as this user. std also drops the supplementary groups, so only the
    /// primary group counts for file access.
    fn apply(&self, cmd: &mut Command) {
        cmd.uid(self.uid).gid(self.gid);
    }

    fn check_can_reach(&self, data_dir: &Path) -> Result<()> {
        for dir in data_dir.ancestors().skip(1) {
            let meta =
                fs::metadata(dir).with_context(|| format!("inspecting {}", dir.display()))?;
            let mode = meta.mode();
            let bit = if meta.uid() == self.uid {
                0o100
            } else if meta.gid() == self.gid {
                0o010
            } else {
                0o001
            };
            if mode & bit == 0 {
                bail!(
                    "PostgreSQL runs as the `{OS_USER}` OS user (it refuses to run as root), \
                     which cannot enter {} (owner uid {}, mode {:o}) on the way to the data \
                     directory {}; put the data directory where that user can reach it \
                     (e.g. under /tmp or /var/lib) or grant access with `chmod o+x {}`",
                    dir.display(),
                    meta.uid(),
                    mode & 0o7777,
                    data_dir.display(),
                    dir.display()
                );
            }
        }
        Ok(())
    }
}

/// Creates `data_dir` and runs `initdb` on it unless it already holds a cluster, exactly as
/// [`Cluster::start`] does first; returns the canonical path. `no_sync` skips flushing the new
/// files to disk (as `ClusterOptions::ephemeral` does).
pub fn init_data_dir(bins: &PgBinaries, data_dir: &Path, no_sync: bool) -> Result<PathBuf> {
    prepare_data_dir(bins, data_dir, no_sync, ServerUser::for_current_process()?)
}

fn prepare_data_dir(
    bins: &PgBinaries,
    data_dir: &Path,
    no_sync: bool,
    user: Option<ServerUser>,
) -> Result<PathBuf> {
    let requested = std::path::absolute(data_dir)
        .with_context(|| format!("resolving data directory {}", data_dir.display()))?;
    fs::create_dir_all(&requested)
        .with_context(|| format!("creating data directory {}", requested.display()))?;
    let data_dir = fs::canonicalize(&requested)
        .with_context(|| format!("resolving data directory {}", requested.display()))?;
    if let Some(user) = user {
        user.check_can_reach(&data_dir)?;
    }
    if data_dir.join("PG_VERSION").is_file() {
        debug!(data_dir = %data_dir.display(), "reusing initialised data directory");
        return Ok(data_dir);
    }
    let mut entries = fs::read_dir(&data_dir)
        .with_context(|| format!("reading data directory {}", data_dir.display()))?;
    if entries.next().is_some() {
        bail!(
            "{} is neither empty nor a PostgreSQL data directory (it has no PG_VERSION); \
             refusing to initialise a cluster over its contents",
            data_dir.display()
        );
    }
    // PostgreSQL insists that nobody but its owner can read the data directory.
    fs::set_permissions(&data_dir, Permissions::from_mode(0o700))
        .with_context(|| format!("restricting permissions of {}", data_dir.display()))?;
    if let Some(user) = user {
        user.chown(&data_dir)?;
    }
    initdb(bins, &data_dir, user, no_sync)?;
    Ok(data_dir)
}

fn initdb(
    bins: &PgBinaries,
    data_dir: &Path,
    user: Option<ServerUser>,
    no_sync: bool,
) -> Result<()> {
    info!(data_dir = %data_dir.display(), "initialising a new PostgreSQL cluster");
    let initdb = bins.tool("initdb");
    let mut cmd = Command::new(&initdb);
    cmd.arg("-D")
        .arg(data_dir)
        .args([
            "--username",
            DB_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ])
        .stdin(Stdio::null())
        .current_dir("/");
    if no_sync {
        cmd.arg("--no-sync");
    }
    if let Some(user) = user {
        user.apply(&mut cmd);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", initdb.display()))?;
    if !out.status.success() {
        bail!(
            "initdb failed ({}) for {}:\n{}{}",
            out.status,
            data_dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn default_log_path(data_dir: &Path) -> PathBuf {
    match (data_dir.parent(), data_dir.file_name()) {
        (Some(parent), Some(name)) => {
            let mut file = name.to_os_string();
            file.push(".log");
            parent.join(file)
        }
        _ => std::env::temp_dir().join("autonoma-postgres.log"),
    }
}

fn open_log(path: &Path, user: Option<ServerUser>) -> Result<File> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("creating log directory {}", parent.display()))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening PostgreSQL log file {}", path.display()))?;
    if let Some(user) = user {
        user.chown(path)?;
    }
    Ok(file)
}

fn make_socket_dir(user: Option<ServerUser>) -> Result<tempfile::TempDir> {
    // Socket paths are limited to about 100 bytes, and macOS's $TMPDIR alone is half of that.
    let parent = if Path::new("/tmp").is_dir() {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    remove_stale_socket_dirs(&parent);
    let dir = tempfile::Builder::new()
        .prefix(SOCKET_DIR_PREFIX)
        .permissions(Permissions::from_mode(0o700))
        .tempdir_in(&parent)
        .with_context(|| format!("creating a socket directory in {}", parent.display()))?;
    if let Some(user) = user {
        user.chown(dir.path())?;
    }
    Ok(dir)
}

const SOCKET_DIR_PREFIX: &str = "autonoma-pg-";

/// A server whose starter was killed leaves its socket directory behind; removes those in
/// `parent` without a live server. Fresh ones are spared: their server may still be starting.
fn remove_stale_socket_dirs(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.filter_map(|entry| entry.ok()) {
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(SOCKET_DIR_PREFIX)
        {
            continue;
        }
        let path = entry.path();
        let settled = fs::symlink_metadata(&path).is_ok_and(|meta| {
            meta.is_dir()
                && meta
                    .modified()
                    .ok()
                    .and_then(|modified| modified.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(60))
        });
        if settled && !socket_dir_in_use(&path) && fs::remove_dir_all(&path).is_ok() {
            debug!(dir = %path.display(), "removed stale socket directory");
        }
    }
}

/// Whether a server may still use the socket directory: its `.s.PGSQL.<port>.lock` names the
/// postmaster's pid. Directories this user cannot read count as in use.
fn socket_dir_in_use(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return true;
    };
    entries.filter_map(|entry| entry.ok()).any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(".s.PGSQL.") && name.ends_with(".lock")) {
            return false;
        }
        let pid = fs::read_to_string(entry.path())
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok());
        match pid {
            Some(pid) => signal::kill(Pid::from_raw(pid), None) != Err(Errno::ESRCH),
            None => true,
        }
    })
}

/// The fields of `postmaster.pid` this crate reads.
struct LockFile {
    pid: u32,
    /// `starting`, `ready` or `stopping` (written by the postmaster since PostgreSQL 10).
    status: String,
}

fn read_lock_file(data_dir: &Path) -> Option<LockFile> {
    let text = fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    Some(LockFile {
        pid: lines.first()?.trim().parse().ok()?,
        status: lines
            .get(7)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
    })
}

/// Waits for processes of an earlier server on `data_dir` to exit, e.g. one shutting down
/// because the process that started it was killed. Fails at once for a server that keeps
/// running.
fn wait_until_unused(data_dir: &Path) -> Result<()> {
    let started = Instant::now();
    let mut announced = false;
    loop {
        let users = processes_in(data_dir);
        if users.is_empty() {
            break;
        }
        let lock = read_lock_file(data_dir);
        // A server that got its shutdown signal says so in its lock file within milliseconds.
        if let Some(lock) = &lock
            && users.contains(&lock.pid)
            && lock.status == "ready"
            && started.elapsed() > Duration::from_secs(3)
        {
            bail!(
                "a PostgreSQL server (pid {}) is already running on {}; stop it first",
                lock.pid,
                data_dir.display()
            );
        }
        if started.elapsed() > STOP_TIMEOUT {
            bail!(
                "{} is still in use by process(es) {users:?} after {STOP_TIMEOUT:?}; \
                 is another PostgreSQL server running on it?",
                data_dir.display()
            );
        }
        if !announced {
            info!(data_dir = %data_dir.display(), ?users, "waiting for the previous server to exit");
            announced = true;
        }
        thread::sleep(Duration::from_millis(100));
    }
    remove_stale_lock_file(data_dir)
}

/// PostgreSQL ignores a `postmaster.pid` whose pid is dead, but not one whose pid was reused
/// by an unrelated live process, which is common when many servers run under one user.
#[cfg(target_os = "linux")]
fn remove_stale_lock_file(data_dir: &Path) -> Result<()> {
    let Some(lock) = read_lock_file(data_dir) else {
        return Ok(());
    };
    let alive = signal::kill(Pid::from_raw(lock.pid.cast_signed()), None).is_ok();
    // The caller saw no process working in the data directory, and every server process does.
    if alive {
        let path = data_dir.join("postmaster.pid");
        info!(pid = lock.pid, "removing stale {}", path.display());
        fs::remove_file(&path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn remove_stale_lock_file(_data_dir: &Path) -> Result<()> {
    Ok(())
}

/// Processes whose working directory is `dir`: every PostgreSQL server process works in its
/// data directory. Only processes this user may inspect are seen, which covers a server run as
/// this user or, as root, any.
#[cfg(target_os = "linux")]
fn processes_in(dir: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cwd = fs::read_link(entry.path().join("cwd")).ok()?;
            (cwd == dir).then_some(pid)
        })
        .collect()
}

#[cfg(not(target_os = "linux"))]
fn processes_in(_dir: &Path) -> Vec<u32> {
    Vec::new()
}

/// One attempt to start the server on one port.
struct Launch<'a> {
    bins: &'a PgBinaries,
    data_dir: &'a Path,
    port: u16,
    socket_dir: &'a Path,
    log_file: &'a Path,
    user: Option<ServerUser>,
    stop_with_parent: bool,
    ephemeral: bool,
    deadline: Instant,
}

enum LaunchError {
    PortTaken(anyhow::Error),
    DataDirBusy(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for LaunchError {
    fn from(err: anyhow::Error) -> Self {
        LaunchError::Other(err)
    }
}

impl Launch<'_> {
    fn run(&self) -> Result<Child, LaunchError> {
        let log_start = fs::metadata(self.log_file).map_or(0, |meta| meta.len());
        let log = open_log(self.log_file, self.user)?;
        let log_err = log.try_clone().context("duplicating the log file handle")?;

        let postgres = self.bins.tool("postgres");
        let mut socket_setting = OsString::from("unix_socket_directories=");
        socket_setting.push(self.socket_dir);
        let mut cmd = Command::new(&postgres);
        cmd.arg("-D")
            .arg(self.data_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1", "-c"])
            .arg(socket_setting);
        if self.ephemeral {
            cmd.args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]);
        }
        // Its own process group keeps a terminal's Ctrl-C away from the server: shutting it
        // down is the owner's job (or the parent-death signal's).
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .current_dir("/")
            .process_group(0);
        if let Some(user) = self.user {
            user.apply(&mut cmd);
        }
        if self.stop_with_parent {
            signal_on_parent_death(&mut cmd);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", postgres.display()))?;

        match self.wait_ready(&mut child, log_start) {
            Ok(()) => Ok(child),
            Err(err) => {
                // Already exited when startup failed; only a hung start needs the kill.
                let _ = child.kill();
                let _ = child.wait();
                Err(err)
            }
        }
    }

    fn wait_ready(&self, child: &mut Child, log_start: u64) -> Result<(), LaunchError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(status) = child.try_wait().context("watching PostgreSQL start")? {
                let tail = log_tail(self.log_file, log_start);
                let err = anyhow!(
                    "PostgreSQL exited during startup ({status}) on port {}; server log {}:\n{tail}",
                    self.port,
                    self.log_file.display()
                );
                return Err(
                    if tail.contains("could not bind") || tail.contains("Address already in use") {
                        LaunchError::PortTaken(err)
                    } else if tail.contains("lock file \"postmaster.pid\" already exists")
                        || tail.contains("pre-existing shared memory block")
                    {
                        LaunchError::DataDirBusy(err)
                    } else {
                        LaunchError::Other(err)
                    },
                );
            }
            // The postmaster marks itself ready in its lock file once it accepts connections,
            // which is what pg_ctl waits for too.
            let ready = read_lock_file(self.data_dir)
                .is_some_and(|lock| lock.pid == child.id() && lock.status == "ready");
            if ready && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= self.deadline {
                return Err(LaunchError::Other(anyhow!(
                    "PostgreSQL did not accept connections on port {} within {START_TIMEOUT:?}; \
                     server log {}:\n{}",
                    self.port,
                    self.log_file.display(),
                    log_tail(self.log_file, log_start)
                )));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

/// The last lines of the log written since byte `from`.
fn log_tail(path: &Path, from: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(from))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(err) => format!("(log unreadable: {err})"),
    }
}

fn signal_on_parent_death(cmd: &mut Command) {
    signal_when_parent_dies(cmd, Signal::SIGINT);
}

/// Makes the kernel send `signal` to the process `cmd` starts when the thread that starts it
/// exits (so when this process dies, even by SIGKILL). Linux only; elsewhere a no-op with a
/// warning. Start from a thread that lives as long as the child should.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn signal_when_parent_dies(cmd: &mut Command, signal: Signal) {
    let parent = libc::pid_t::try_from(std::process::id()).unwrap_or(0);
    let signal = signal as libc::c_int;
    // SAFETY: the closure runs in the forked child between fork and exec, after std has switched
    // to the target uid/gid (which would clear the setting). It only calls prctl and getppid,
    // both async-signal-safe, and neither allocates nor touches locks; `last_os_error` and
    // `from_raw_os_error` only read errno / wrap an integer.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
pub fn signal_when_parent_dies(_cmd: &mut Command, _signal: Signal) {
    warn!("stopping children with their parent is only supported on Linux");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_error_names_tools_and_install_command() {
        let empty = tempfile::tempdir().expect("temp dir");
        let err = locate_in(&[empty.path().to_path_buf()])
            .expect_err("an empty directory holds no PostgreSQL");
        let message = format!("{err:#}");
        assert!(message.contains("initdb, pg_ctl, postgres"), "{message}");
        assert!(
            message.contains("apt-get install -y postgresql"),
            "{message}"
        );
        assert!(message.contains("brew install postgresql"), "{message}");
    }

    #[test]
    fn versioned_dirs_sort_newest_first() {
        let root = tempfile::tempdir().expect("temp dir");
        for version in ["9.6", "15", "10", "notes"] {
            fs::create_dir(root.path().join(version)).expect("create version dir");
        }
        let found = versioned_bin_dirs(root.path(), "");
        let names: Vec<PathBuf> = ["15", "10", "9.6"]
            .iter()
            .map(|v| root.path().join(v).join("bin"))
            .collect();
        assert_eq!(found, names);
    }

    #[test]
    fn lock_file_fields() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(
            dir.path().join("postmaster.pid"),
            "4242\n/data\n1700000000\n5432\n/tmp\n127.0.0.1\n  1234   5678\nready   \n",
        )
        .expect("write lock file");
        let lock = read_lock_file(dir.path()).expect("parsed lock file");
        assert_eq!(lock.pid, 4242);
        assert_eq!(lock.status, "ready");
    }
}

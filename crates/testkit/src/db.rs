//! A fresh database per test. The server is the one named by `TEST_DATABASE_URL` (or
//! `DATABASE_URL`), else a throwaway local cluster started once per test process.
//!
//! Every `#[tokio::test]` has its own runtime, and a pool outliving its runtime breaks, so only
//! the server's address is process-wide; each [`TestDb`] has its own pool.

use std::fs::{self, Permissions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use autonoma_localpg::{Cluster, ClusterOptions, PgBinaries};
use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgPool};
use url::Url;
use uuid::Uuid;

const DROP_TIMEOUT: Duration = Duration::from_secs(10);

/// A database of its own for one test. Dropping it drops the database (best effort).
#[derive(Debug)]
pub struct TestDb {
    pub pool: PgPool,
    /// Connection URL of this database, e.g. to hand to a spawned service.
    pub url: String,
    /// The database's name, `test_<uuid>`.
    pub name: String,
    admin_url: String,
}

/// A fresh database with every migration applied. Panics if there is no usable server.
pub async fn test_db() -> TestDb {
    try_test_db()
        .await
        .unwrap_or_else(|err| panic!("creating a migrated test database: {err:#}"))
}

/// A fresh database without migrations, for testing the migrations themselves.
pub async fn empty_db() -> TestDb {
    try_empty_db()
        .await
        .unwrap_or_else(|err| panic!("creating an empty test database: {err:#}"))
}

pub async fn try_test_db() -> Result<TestDb> {
    let db = try_empty_db().await?;
    autonoma_migrations::MIGRATOR
        .run(&db.pool)
        .await
        .with_context(|| format!("migrating test database {}", db.name))?;
    Ok(db)
}

pub async fn try_empty_db() -> Result<TestDb> {
    let server = tokio::task::spawn_blocking(server)
        .await
        .context("locating the test database server")??;
    let name = format!("test_{}", Uuid::new_v4().simple());
    let admin_url = server.admin_url.to_string();

    let mut admin = PgConnection::connect(&admin_url).await.with_context(|| {
        format!(
            "connecting to {} ({})",
            redacted(&server.admin_url),
            server.origin
        )
    })?;
    sqlx::raw_sql(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .execute(&mut admin)
        .await
        .with_context(|| {
            format!(
                "creating database {name} on {}",
                redacted(&server.admin_url)
            )
        })?;
    let _ = admin.close().await;

    let mut db_url = server.admin_url.clone();
    db_url.set_path(&format!("/{name}"));
    let pool = match PgPoolOptions::new()
        .max_connections(5)
        .connect(db_url.as_str())
        .await
    {
        Ok(pool) => pool,
        Err(err) => {
            drop_database(&admin_url, &name);
            return Err(err).with_context(|| format!("connecting to {}", redacted(&db_url)));
        }
    };
    Ok(TestDb {
        pool,
        url: db_url.to_string(),
        name,
        admin_url,
    })
}

impl Drop for TestDb {
    fn drop(&mut self) {
        drop_database(&self.admin_url, &self.name);
    }
}

/// Drops the database, forcibly disconnecting its sessions (PostgreSQL 13+). Runs on a thread of
/// its own because this may be called from inside the test's runtime, which must not block on
/// itself; errors are reported on stderr and otherwise ignored.
fn drop_database(admin_url: &str, name: &str) {
    let admin_url = admin_url.to_owned();
    let name = name.to_owned();
    let worker = thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                eprintln!("testkit: not dropping database {name}: {err}");
                return;
            }
        };
        let sql = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
        let drop = async {
            let mut conn = PgConnection::connect(&admin_url).await?;
            sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
            conn.close().await
        };
        // The timer has to be created inside the runtime.
        let dropped = runtime.block_on(async { tokio::time::timeout(DROP_TIMEOUT, drop).await });
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("testkit: could not drop database {name}: {err}"),
            Err(_) => eprintln!("testkit: dropping database {name} timed out"),
        }
    });
    let _ = worker.join();
}

fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url.to_string()
}

/// The server all test databases of this process live on.
struct Server {
    /// URL of its maintenance database, `postgres`.
    admin_url: Url,
    /// Where it came from, for error messages.
    origin: &'static str,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();

/// Blocks on first use while a local cluster starts.
fn server() -> Result<&'static Server> {
    SERVER
        .get_or_init(|| configured_or_local().map_err(|err| format!("{err:#}")))
        .as_ref()
        .map_err(|err| anyhow!("no PostgreSQL server for tests: {err}"))
}

fn configured_or_local() -> Result<Server> {
    for var in ["TEST_DATABASE_URL", "DATABASE_URL"] {
        let Ok(value) = std::env::var(var) else {
            continue;
        };
        if value.trim().is_empty() {
            continue;
        }
        let mut admin_url =
            Url::parse(value.trim()).with_context(|| format!("{var} is not a valid URL"))?;
        admin_url.set_path("/postgres");
        return Ok(Server {
            admin_url,
            origin: var,
        });
    }
    start_local_cluster()
}

/// What the cluster thread keeps alive until the process exits.
struct LocalCluster {
    cluster: Cluster,
    _cleanup: Option<ChildStdin>,
}

fn start_local_cluster() -> Result<Server> {
    let (sender, receiver) = mpsc::channel();
    // The server's parent-death signal fires when the thread that spawned it exits, and test
    // threads are short-lived, so a dedicated thread spawns it and then lives as long as the
    // process.
    thread::Builder::new()
        .name("testkit-postgres".to_owned())
        .spawn(move || match start_cluster() {
            Ok(local) => {
                let _ = sender.send(Ok(local.cluster.url("postgres")));
                let _local = local;
                loop {
                    thread::park();
                }
            }
            Err(err) => {
                let _ = sender.send(Err(err));
            }
        })
        .context("spawning the test PostgreSQL thread")?;
    let url = receiver
        .recv()
        .context("the test PostgreSQL thread ended without reporting")??;
    Ok(Server {
        admin_url: Url::parse(&url).context("parsing the local cluster URL")?,
        origin: "the local test cluster",
    })
}

fn start_cluster() -> Result<LocalCluster> {
    let bins = PgBinaries::locate()?;
    let dir = tempfile::Builder::new()
        .prefix("autonoma-testkit-pg-")
        .tempdir()
        .context("creating a directory for the test PostgreSQL cluster")?;
    // As root the server runs as `postgres`, which must be able to enter this directory.
    fs::set_permissions(dir.path(), Permissions::from_mode(0o755))
        .with_context(|| format!("opening up {}", dir.path().display()))?;
    let data_dir = dir.path().join("data");

    let template = template_path(&bins);
    let seeded = match template
        .as_deref()
        .map_err(|err| anyhow!("{err:#}"))
        .and_then(|template| seed_from_template(&bins, template, &data_dir))
    {
        Ok(()) => true,
        Err(err) => {
            eprintln!("testkit: initialising the test cluster from scratch: {err:#}");
            let _ = fs::remove_dir_all(&data_dir);
            false
        }
    };
    let options = || ClusterOptions {
        ephemeral: true,
        stop_with_parent: true,
        ..ClusterOptions::new(&data_dir)
    };
    let cluster = match Cluster::start(&bins, options()) {
        Ok(cluster) => Ok(cluster),
        Err(err) if seeded => {
            eprintln!(
                "testkit: the test cluster copied from the cached template failed to start; \
                 rebuilding: {err:#}"
            );
            if let Ok(template) = &template {
                discard(template);
            }
            let _ = fs::remove_dir_all(&data_dir);
            Cluster::start(&bins, options())
        }
        Err(err) => Err(err),
    }
    .context("starting a throwaway PostgreSQL cluster for tests (or set TEST_DATABASE_URL)")?;
    let cleanup = match spawn_cleanup(cluster.pid(), &[dir.path(), cluster.socket_dir()]) {
        Ok(stdin) => Some(stdin),
        Err(err) => {
            eprintln!(
                "testkit: {} will be left behind: {err:#}",
                dir.path().display()
            );
            None
        }
    };
    let _ = dir.keep();
    Ok(LocalCluster {
        cluster,
        _cleanup: cleanup,
    })
}

/// Bumped whenever the way templates are made changes.
const TEMPLATE_FORMAT: u32 = 1;

/// `initdb` takes most of a test process's start-up, so the first process initialises a template
/// data directory in the temp dir and later ones copy it. One per installation, version and user.
fn template_path(bins: &PgBinaries) -> Result<PathBuf> {
    let mut hasher = DefaultHasher::new();
    (
        TEMPLATE_FORMAT,
        bins.bin_dir(),
        bins.version()?,
        nix::unistd::geteuid().as_raw(),
    )
        .hash(&mut hasher);
    Ok(std::env::temp_dir().join(format!(
        "autonoma-testkit-pg-template-{:016x}",
        hasher.finish()
    )))
}

/// Copies the template (made first if missing) to `data_dir`, which must not exist yet.
fn seed_from_template(bins: &PgBinaries, template: &Path, data_dir: &Path) -> Result<()> {
    let complete = |dir: &Path| dir.join("global").join("pg_control").is_file();
    if !complete(template) {
        if template.exists() {
            // Half deleted, e.g. by a temp-dir cleaner.
            discard(template);
        }
        let parent = template.parent().context("template path has no parent")?;
        let staging = tempfile::Builder::new()
            .prefix("autonoma-testkit-pg-staging-")
            .tempdir_in(parent)
            .context("creating a staging directory for the template")?;
        fs::set_permissions(staging.path(), Permissions::from_mode(0o755))
            .with_context(|| format!("opening up {}", staging.path().display()))?;
        let staged = autonoma_localpg::init_data_dir(bins, &staging.path().join("data"), true)?;
        // Renaming publishes it atomically. Losing the race to another process is fine: its
        // template is as good as this one.
        if let Err(err) = fs::rename(&staged, template)
            && !complete(template)
        {
            return Err(err).with_context(|| format!("publishing {}", template.display()));
        }
    }
    let status = Command::new("cp")
        .arg("-a")
        .arg(template)
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .context("running cp")?;
    if !status.success() {
        bail!(
            "copying {} to {} failed ({status})",
            template.display(),
            data_dir.display()
        );
    }
    Ok(())
}

/// Removes a broken template without disturbing a process that is copying it right now more
/// than necessary: it disappears from its path at once, and is deleted afterwards.
fn discard(template: &Path) {
    let mut trash = template.as_os_str().to_owned();
    trash.push(format!(".discarded-{}", Uuid::new_v4().simple()));
    if fs::rename(template, &trash).is_ok() {
        let _ = fs::remove_dir_all(&trash);
    }
}

/// Statics are never dropped, so the cluster's files outlive the process unless someone else
/// removes them: a small shell waits for its stdin to close (this process has exited), then for
/// the server to finish shutting down, and deletes `paths`. The wait is bounded, and an
/// unreaped (zombie) server counts as gone: its new parent may be slow to reap it. Its own
/// process group keeps the watcher out of signals aimed at the test's group.
fn spawn_cleanup(server_pid: u32, paths: &[&Path]) -> Result<ChildStdin> {
    const SCRIPT: &str = r#"cat >/dev/null
pid=$1; shift
running() {
    kill -0 "$pid" 2>/dev/null || return 1
    [ -r "/proc/$pid/stat" ] || return 0
    [ "$(sed 's/.*) //' "/proc/$pid/stat" | cut -c1)" != Z ]
}
i=0
while running && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
rm -rf -- "$@""#;
    let mut child = Command::new("/bin/sh")
        .args(["-c", SCRIPT, "autonoma-testkit-cleanup"])
        .arg(server_pid.to_string())
        .args(paths)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("spawning the cleanup watcher")?;
    child.stdin.take().context("cleanup watcher has no stdin")
}

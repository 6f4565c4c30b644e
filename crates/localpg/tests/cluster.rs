use std::fs::{self, Permissions};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use autonoma_localpg::{Cluster, ClusterOptions, PgBinaries};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const HOLD_ENV: &str = "AUTONOMA_LOCALPG_TEST_HOLD_DATA_DIR";

fn bins() -> PgBinaries {
    PgBinaries::locate().expect("PostgreSQL server binaries installed")
}

/// A temp dir the `postgres` OS user can traverse (tempfile makes them 0700, and as root the
/// server runs as `postgres`).
fn temp_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("create temp dir");
    fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).expect("chmod temp dir");
    dir
}

fn options(data_dir: &Path, ephemeral: bool) -> ClusterOptions {
    ClusterOptions {
        ephemeral,
        ..ClusterOptions::new(data_dir)
    }
}

fn psql(bins: &PgBinaries, url: &str, sql: &str) -> String {
    let bundled = bins.tool("psql");
    let program = if bundled.exists() {
        bundled
    } else {
        PathBuf::from("psql")
    };
    let out = Command::new(program)
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Live (non-zombie) processes working in or started on `data_dir`.
fn server_processes(data_dir: &Path) -> Vec<u32> {
    let needle = data_dir.to_string_lossy().into_owned();
    fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            let state = stat.rsplit(") ").next()?.chars().next()?;
            if state == 'Z' {
                return None;
            }
            let cwd_matches =
                fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd == data_dir);
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline_matches = String::from_utf8_lossy(&cmdline).contains(&needle);
            (cwd_matches || cmdline_matches).then_some(pid)
        })
        .filter(|pid| *pid != std::process::id())
        .collect()
}

fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    condition()
}

#[test]
fn start_query_stop_leaves_no_server_process() {
    let bins = bins();
    let root = temp_root();
    let cluster =
        Cluster::start(&bins, options(&root.path().join("data"), true)).expect("start cluster");
    let data_dir = cluster.data_dir().to_path_buf();

    assert_ne!(cluster.port(), 0);
    assert_eq!(
        cluster.url("postgres"),
        format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port())
    );
    assert_eq!(psql(&bins, &cluster.url("postgres"), "select 1"), "1");
    assert_eq!(
        psql(&bins, &cluster.url("postgres"), "show server_encoding"),
        "UTF8"
    );
    assert_eq!(psql(&bins, &cluster.url("postgres"), "show fsync"), "off");
    assert!(!server_processes(&data_dir).is_empty());
    assert!(cluster.log_file().exists());
    let socket_dir = cluster.socket_dir().to_path_buf();

    cluster.stop().expect("stop cluster");

    assert_eq!(server_processes(&data_dir), Vec::<u32>::new());
    assert!(!data_dir.join("postmaster.pid").exists());
    assert!(!socket_dir.exists());
}

#[test]
fn data_survives_restart() {
    let bins = bins();
    let root = temp_root();
    let data_dir = root.path().join("data");

    let cluster = Cluster::start(&bins, options(&data_dir, false)).expect("start cluster");
    assert_eq!(psql(&bins, &cluster.url("postgres"), "show fsync"), "on");
    psql(
        &bins,
        &cluster.url("postgres"),
        "create table kept (v text); insert into kept values ('still here')",
    );
    cluster.stop().expect("stop cluster");

    let cluster = Cluster::start(&bins, options(&data_dir, false)).expect("restart cluster");
    assert_eq!(
        psql(&bins, &cluster.url("postgres"), "select v from kept"),
        "still here"
    );
    drop(cluster);
    assert_eq!(server_processes(&data_dir), Vec::<u32>::new());
}

#[test]
fn restarts_after_the_server_was_killed() {
    let bins = bins();
    let root = temp_root();
    let data_dir = root.path().join("data");

    let mut cluster = Cluster::start(&bins, options(&data_dir, false)).expect("start cluster");
    psql(
        &bins,
        &cluster.url("postgres"),
        "create table kept (v int); insert into kept values (7)",
    );
    let pid = Pid::from_raw(i32::try_from(cluster.pid()).expect("pid fits"));
    kill(pid, Signal::SIGKILL).expect("kill postmaster");
    assert!(wait_until(Duration::from_secs(10), || {
        cluster.try_wait().expect("try_wait").is_some()
    }));
    assert!(
        data_dir.join("postmaster.pid").exists(),
        "a killed server leaves its lock file behind"
    );
    drop(cluster);

    let cluster = Cluster::start(&bins, options(&data_dir, false)).expect("restart cluster");
    assert_eq!(
        psql(&bins, &cluster.url("postgres"), "select v from kept"),
        "7"
    );
}

#[test]
fn stop_with_parent_stops_the_server_when_the_starting_thread_exits() {
    let bins = bins();
    let root = temp_root();
    let opts = ClusterOptions {
        stop_with_parent: true,
        ..options(&root.path().join("data"), true)
    };
    let starter_bins = bins.clone();
    let mut cluster = thread::spawn(move || Cluster::start(&starter_bins, opts))
        .join()
        .expect("starter thread")
        .expect("start cluster");
    let data_dir = cluster.data_dir().to_path_buf();

    assert!(
        wait_until(Duration::from_secs(30), || {
            cluster.try_wait().expect("try_wait").is_some()
        }),
        "server still running after its starting thread exited"
    );
    assert!(wait_until(Duration::from_secs(10), || server_processes(
        &data_dir
    )
    .is_empty()));
}

/// Not a test on its own: the body of the process that `restarts_after_its_launcher_was_killed`
/// starts and kills.
#[test]
fn hold_cluster_until_killed() {
    let Some(data_dir) = std::env::var_os(HOLD_ENV) else {
        return;
    };
    let bins = bins();
    let opts = ClusterOptions {
        stop_with_parent: true,
        ..options(Path::new(&data_dir), false)
    };
    let cluster = Cluster::start(&bins, opts).expect("start cluster");
    psql(
        &bins,
        &cluster.url("postgres"),
        "create table kept (v text); insert into kept values ('committed')",
    );
    println!("READY {}", cluster.pid());
    loop {
        thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn restarts_after_its_launcher_was_killed() {
    let bins = bins();
    let root = temp_root();
    let data_dir = root.path().join("data");

    let mut launcher = Command::new(std::env::current_exe().expect("test binary path"))
        .args(["--exact", "hold_cluster_until_killed", "--nocapture"])
        .env(HOLD_ENV, &data_dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn launcher process");
    let stdout = launcher.stdout.take().expect("launcher stdout");
    let old_pid: u32 = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("READY ").map(str::to_owned))
        .expect("launcher reports its server")
        .parse()
        .expect("pid");
    launcher.kill().expect("kill launcher");
    launcher.wait().expect("reap launcher");

    // Starts while the old server may still be shutting down.
    let cluster = Cluster::start(&bins, options(&data_dir, false)).expect("restart cluster");
    assert_ne!(cluster.pid(), old_pid);
    assert_eq!(
        psql(&bins, &cluster.url("postgres"), "select v from kept"),
        "committed"
    );
    let data_dir = cluster.data_dir().to_path_buf();
    cluster.stop().expect("stop cluster");
    assert_eq!(server_processes(&data_dir), Vec::<u32>::new());
}

#[test]
fn explicit_port_in_use_is_reported() {
    let bins = bins();
    let root = temp_root();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let opts = ClusterOptions {
        port,
        ..options(&root.path().join("data"), true)
    };
    let err = Cluster::start(&bins, opts).expect_err("port is taken");
    let message = format!("{err:#}");
    assert!(message.contains(&port.to_string()), "{message}");
    assert!(message.contains("could not bind"), "{message}");
}

#[test]
fn refuses_a_non_empty_foreign_directory() {
    let bins = bins();
    let root = temp_root();
    let data_dir = root.path().join("data");
    fs::create_dir(&data_dir).expect("create dir");
    fs::write(data_dir.join("notes.txt"), "mine").expect("write file");
    let err = Cluster::start(&bins, options(&data_dir, true)).expect_err("not a data dir");
    assert!(format!("{err:#}").contains("neither empty nor"), "{err:#}");
    assert!(data_dir.join("notes.txt").exists());
}

#[test]
fn root_needs_a_data_dir_the_postgres_user_can_reach() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let bins = bins();
    let private = tempfile::tempdir().expect("temp dir");
    fs::set_permissions(private.path(), Permissions::from_mode(0o700)).expect("chmod");
    let err = Cluster::start(&bins, options(&private.path().join("data"), true))
        .expect_err("postgres cannot enter a root-only directory");
    let message = format!("{err:#}");
    assert!(message.contains("cannot enter"), "{message}");
    assert!(
        message.contains(&private.path().display().to_string()),
        "{message}"
    );
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused() {
    let bins = bins();
    let root = temp_root();
    let data_dir = root.path().join("data");
    let first = Cluster::start(&bins, options(&data_dir, true)).expect("start cluster");

    let err = Cluster::start(&bins, options(&data_dir, true)).expect_err("data dir in use");
    let message = format!("{err:#}");
    assert!(message.contains("already running"), "{message}");
    assert!(message.contains(&first.pid().to_string()), "{message}");
    assert_eq!(psql(&bins, &first.url("postgres"), "select 1"), "1");
}

#[test]
fn locate_finds_a_complete_installation() {
    let bins = bins();
    for tool in ["initdb", "pg_ctl", "postgres"] {
        assert!(
            bins.tool(tool).is_file(),
            "{} lacks {tool}",
            bins.bin_dir().display()
        );
    }
    assert_eq!(
        PgBinaries::from_dir(bins.bin_dir()).expect("from_dir"),
        bins
    );
    let version = bins.version().expect("version");
    assert!(version.starts_with("postgres (PostgreSQL) "), "{version}");

    let err = PgBinaries::from_dir("/nonexistent").expect_err("no tools there");
    assert!(
        format!("{err:#}").contains("initdb, pg_ctl, postgres"),
        "{err:#}"
    );
}

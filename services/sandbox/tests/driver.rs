//! The Docker driver against the engine of the test run (`TEST_DOCKER_HOST`).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use sandbox::driver::{
    Chunk, ContainerSpec, DockerDriver, Driver, DriverError, ExecOutcome, ExecSpec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const IMAGE: &str = autonoma_testkit::SANDBOX_TEST_IMAGE;
const SANDBOX_UID: u32 = 1000;
const MIB: i64 = 1024 * 1024;

fn host() -> String {
    autonoma_testkit::docker_host()
}

fn driver() -> DockerDriver {
    DockerDriver::connect(&host()).expect("connecting to the engine")
}

/// A container of one test: removed when dropped, even when the test fails.
struct Sandbox {
    driver: DockerDriver,
    id: String,
    label: String,
    workspace: tempfile::TempDir,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let id = self.id.clone();
        let removed = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to remove the container");
            runtime.block_on(async { driver().remove(&id).await })
        })
        .join();
        if !matches!(removed, Ok(Ok(()))) {
            eprintln!("could not remove container {}: {removed:?}", self.id);
        }
    }
}

fn spec(workspace: &Path, label: &str) -> ContainerSpec {
    ContainerSpec {
        name: format!("autonoma-driver-test-{}", uuid::Uuid::new_v4()),
        image: IMAGE.to_owned(),
        workspace: workspace.to_owned(),
        user: format!("{SANDBOX_UID}:{SANDBOX_UID}"),
        memory_bytes: 256 * MIB,
        nano_cpus: 1_000_000_000,
        pids_limit: 128,
        network: None,
        read_only_root: true,
        tmpfs_bytes: 16 * 1024 * 1024,
        env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".to_owned()],
        labels: HashMap::from([("autonoma.driver-test".to_owned(), label.to_owned())]),
    }
}

async fn sandbox_with(adjust: impl FnOnce(&mut ContainerSpec)) -> Sandbox {
    let workspace = tempfile::tempdir().expect("creating the workspace");
    std::os::unix::fs::chown(workspace.path(), Some(SANDBOX_UID), Some(SANDBOX_UID))
        .expect("giving the workspace to the sandbox user");
    let label = uuid::Uuid::new_v4().to_string();
    let mut spec = spec(workspace.path(), &label);
    adjust(&mut spec);
    let driver = driver();
    let id = driver.create(&spec).await.expect("creating the container");
    Sandbox {
        driver,
        id,
        label,
        workspace,
    }
}

async fn sandbox() -> Sandbox {
    sandbox_with(|_| {}).await
}

struct Ran {
    stdout: String,
    stderr: String,
    chunks: Vec<Chunk>,
    outcome: ExecOutcome,
}

fn exec_spec(cmd: &str, timeout: Option<Duration>) -> ExecSpec {
    ExecSpec {
        cmd: cmd.to_owned(),
        cwd: "/workspace".to_owned(),
        env: Vec::new(),
        timeout,
    }
}

async fn run_with(
    sandbox: &Sandbox,
    spec: ExecSpec,
    cancel: CancellationToken,
) -> Result<Ran, DriverError> {
    let (tx, mut rx) = mpsc::channel(16);
    let collect = tokio::spawn(async move {
        let mut chunks = Vec::new();
        while let Some(chunk) = rx.recv().await {
            chunks.push(chunk);
        }
        chunks
    });
    let outcome = sandbox.driver.exec(&sandbox.id, spec, tx, cancel).await?;
    let chunks = collect.await.expect("collecting the output");
    let (mut stdout, mut stderr) = (String::new(), String::new());
    for chunk in &chunks {
        match chunk {
            Chunk::Stdout(bytes) => stdout.push_str(&String::from_utf8_lossy(bytes)),
            Chunk::Stderr(bytes) => stderr.push_str(&String::from_utf8_lossy(bytes)),
        }
    }
    Ok(Ran {
        stdout,
        stderr,
        chunks,
        outcome,
    })
}

async fn run(sandbox: &Sandbox, cmd: &str) -> Ran {
    run_with(
        sandbox,
        exec_spec(cmd, Some(Duration::from_secs(30))),
        CancellationToken::new(),
    )
    .await
    .unwrap_or_else(|err| panic!("running {cmd:?}: {err}"))
}

/// The `sleep 1000` processes left in the container.
async fn sleepers(sandbox: &Sandbox) -> String {
    let ps = run(sandbox, "ps -o pid,pgid,args").await;
    assert_eq!(ps.outcome.exit_code, Some(0), "ps: {}", ps.stderr);
    ps.stdout
        .lines()
        .filter(|line| line.contains("sleep 1000"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_hardened_container_runs_commands_with_separate_streams_and_exit_codes() {
    let sandbox = sandbox().await;

    let ran = run(&sandbox, "echo out; echo err >&2; exit 3").await;
    assert_eq!(ran.outcome.exit_code, Some(3));
    assert!(!ran.outcome.timed_out && !ran.outcome.killed && !ran.outcome.oom_killed);
    assert_eq!(ran.stdout, "out\n");
    assert_eq!(ran.stderr, "err\n", "only the command's stderr");
    assert!(ran.chunks.contains(&Chunk::Stdout("out\n".into())));

    let ran = run(
        &sandbox,
        "id; pwd; grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; echo $PATH",
    )
    .await;
    assert_eq!(
        ran.stdout,
        "uid=1000(sandbox) gid=1000(sandbox)\n/workspace\nCapEff:\t0000000000000000\n\
         NoNewPrivs:\t1\n/usr/local/bin:/usr/bin:/bin\n",
        "stderr: {}",
        ran.stderr
    );

    let ran = run_with(
        &sandbox,
        ExecSpec {
            cmd: "echo \"$GREETING from $(pwd)\"; echo hi > /workspace/x".to_owned(),
            cwd: "/tmp".to_owned(),
            env: vec!["GREETING=hello".to_owned()],
            timeout: None,
        },
        CancellationToken::new(),
    )
    .await
    .expect("running with env and cwd");
    assert_eq!(ran.stdout, "hello from /tmp\n", "stderr: {}", ran.stderr);
    let written = std::fs::read_to_string(sandbox.workspace.path().join("x")).expect("reading x");
    assert_eq!(written, "hi\n");

    let stats = sandbox.driver.stats(&sandbox.id).await.expect("stats");
    assert_eq!(stats.memory_limit, 256 * 1024 * 1024);
    assert!(stats.pids >= 1, "{stats:?}");
    assert!(stats.memory_bytes > 0, "{stats:?}");
    assert!(stats.cpu_total_ns > 0, "{stats:?}");

    let state = sandbox
        .driver
        .inspect(&sandbox.id)
        .await
        .expect("inspecting")
        .expect("the container exists");
    assert!(state.running);
    assert_eq!(state.id, sandbox.id);
    assert_eq!(state.exit_code, None);
    assert_eq!(
        state.labels.get("autonoma.driver-test"),
        Some(&sandbox.label)
    );

    sandbox.driver.remove(&sandbox.id).await.expect("removing");
    assert!(
        sandbox
            .driver
            .inspect(&sandbox.id)
            .await
            .expect("inspecting a removed container")
            .is_none()
    );
    sandbox
        .driver
        .remove(&sandbox.id)
        .await
        .expect("removing twice is fine");
    let err = run_with(&sandbox, exec_spec("true", None), CancellationToken::new())
        .await
        .err();
    assert!(matches!(err, Some(DriverError::NotFound { .. })), "{err:?}");
}

#[tokio::test]
async fn output_is_complete_in_order_and_a_dropped_receiver_does_not_stop_the_command() {
    let sandbox = sandbox().await;

    let ran = run(&sandbox, "seq 1 20000; echo done >&2").await;
    assert_eq!(ran.outcome.exit_code, Some(0));
    let expected: String = (1..=20000).map(|n| format!("{n}\n")).collect();
    assert!(ran.stdout == expected, "stdout differs");
    assert_eq!(ran.stderr, "done\n");

    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let outcome = sandbox
        .driver
        .exec(
            &sandbox.id,
            exec_spec("seq 1 10000; echo finished > /workspace/f; exit 4", None),
            tx,
            CancellationToken::new(),
        )
        .await
        .expect("running without a receiver");
    assert_eq!(outcome.exit_code, Some(4));
    assert_eq!(
        std::fs::read_to_string(sandbox.workspace.path().join("f")).expect("reading f"),
        "finished\n"
    );

    // A receiver that never reads does not keep the timeout from working.
    let (tx, _rx) = mpsc::channel(1);
    let started = Instant::now();
    let outcome = sandbox
        .driver
        .exec(
            &sandbox.id,
            exec_spec("while :; do echo spam; done", Some(Duration::from_secs(1))),
            tx,
            CancellationToken::new(),
        )
        .await
        .expect("running with a stuck receiver");
    assert!(outcome.timed_out && outcome.killed, "{outcome:?}");
    assert_eq!(
        outcome.exit_code,
        Some(137),
        "the output is read to the end"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_timeout_or_a_cancellation_kills_the_command_and_all_its_children() {
    let sandbox = sandbox().await;

    let started = Instant::now();
    let ran = run_with(
        &sandbox,
        exec_spec(
            "sleep 1000 & sleep 1000 & echo started; wait",
            Some(Duration::from_secs(1)),
        ),
        CancellationToken::new(),
    )
    .await
    .expect("running into the timeout");
    assert!(ran.outcome.timed_out, "{:?}", ran.outcome);
    assert!(ran.outcome.killed);
    assert!(!ran.outcome.oom_killed);
    assert_eq!(ran.outcome.exit_code, Some(137));
    assert_eq!(ran.stdout, "started\n");
    assert!(ran.outcome.duration >= Duration::from_secs(1));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sleepers(&sandbox).await, "", "no sleep is left");

    let cancel = CancellationToken::new();
    let canceller = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(700)).await;
            cancel.cancel();
        })
    };
    let ran = run_with(
        &sandbox,
        // One child leaves the process group: it is found by its environment.
        exec_spec("sleep 1000 & setsid sleep 1000 & echo started; wait", None),
        cancel,
    )
    .await
    .expect("running until cancelled");
    canceller.await.expect("cancelling");
    assert!(!ran.outcome.timed_out, "{:?}", ran.outcome);
    assert!(ran.outcome.killed);
    assert_eq!(ran.stdout, "started\n");
    assert_eq!(sleepers(&sandbox).await, "", "no sleep is left");

    // Cancelled before it could start.
    let cancel = CancellationToken::new();
    cancel.cancel();
    let ran = run_with(&sandbox, exec_spec("sleep 1000", None), cancel)
        .await
        .expect("running cancelled");
    assert!(ran.outcome.killed);
    assert_eq!(sleepers(&sandbox).await, "", "no sleep is left");

    // Dropping the call stops the command too.
    let dropped = tokio::time::timeout(
        Duration::from_secs(1),
        run_with(
            &sandbox,
            exec_spec("sleep 1000", None),
            CancellationToken::new(),
        ),
    )
    .await;
    assert!(dropped.is_err(), "still running");
    let mut left = String::new();
    for _ in 0..40 {
        left = sleepers(&sandbox).await;
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(left, "", "no sleep is left");

    // Background processes of a command that exits normally keep running (dev servers).
    let ran = run(&sandbox, "sleep 1000 > /dev/null 2>&1 & echo $!").await;
    assert_eq!(ran.outcome.exit_code, Some(0));
    assert!(!ran.outcome.killed);
    assert_ne!(sleepers(&sandbox).await, "");
}

#[tokio::test]
async fn a_memory_hog_is_reported_as_oom_killed() {
    let sandbox = sandbox_with(|spec| spec.memory_bytes = 64 * MIB).await;

    // Repeated: the kernel sometimes OOM-kills a second process right after the hog, which
    // must not be PID 1 (Podman does not report the container as OOM-killed then).
    for _ in 0..4 {
        let ran = run(
            &sandbox,
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        )
        .await;
        assert_eq!(
            ran.outcome.exit_code,
            Some(137),
            "stdout: {} stderr: {}",
            ran.stdout,
            ran.stderr
        );
        assert!(ran.outcome.oom_killed, "{:?}", ran.outcome);
        assert!(!ran.outcome.killed);

        let state = sandbox
            .driver
            .inspect(&sandbox.id)
            .await
            .expect("inspecting")
            .expect("the container exists");
        assert!(state.running, "the container survives: {state:?}");
        let after = run(&sandbox, "echo still here").await;
        assert_eq!(after.stdout, "still here\n");
    }

    let scores = run(
        &sandbox,
        "cat /proc/1/oom_score_adj /proc/self/oom_score_adj",
    )
    .await;
    assert_eq!(scores.stdout, "0\n500\n", "commands go before PID 1");

    // A SIGKILL that is not the OOM killer's is not reported as one.
    let ran = run(&sandbox, "kill -KILL $$").await;
    assert_eq!(ran.outcome.exit_code, Some(137));
    assert!(!ran.outcome.oom_killed, "{:?}", ran.outcome);
}

/// Processes other than PID 1 (and its sleep) and the `ps` itself.
async fn strays(sandbox: &Sandbox) -> String {
    let ps = run(sandbox, "ps -o pid,pgid,args").await;
    ps.stdout
        .lines()
        .skip(1)
        .filter(|line| {
            !line.contains("sleep 2147483647")
                && !line.contains("trap 'exit 0'")
                && !line.contains("autonoma-runner")
                && !line.contains("ps -o pid,pgid,args")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_fork_bomb_is_contained_and_cleaned_up() {
    let sandbox = sandbox_with(|spec| spec.pids_limit = 64).await;

    // A shell dies when it cannot fork, so the classic bomb burns out on its own, the second
    // churns at the limit, and the third fills every pid but one and stays. All keep a shell
    // alive without forking so that the timeout is what ends them.
    for (bomb, min_pids) in [
        ("b() { b | b & }; b; while :; do wait; done", 0),
        (
            "w() { while :; do w & done; }; w & while :; do wait; done",
            0,
        ),
        (
            "(while :; do sleep 1000 & done) 2> /dev/null; while :; do wait; done",
            60,
        ),
    ] {
        let started = Instant::now();
        let running = {
            let driver = driver();
            let id = sandbox.id.clone();
            tokio::spawn(async move {
                let (tx, mut rx) = mpsc::channel(16);
                let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
                let outcome = driver
                    .exec(
                        &id,
                        exec_spec(bomb, Some(Duration::from_secs(5))),
                        tx,
                        CancellationToken::new(),
                    )
                    .await;
                drain.await.expect("draining");
                outcome
            })
        };
        let mut most_pids = 0;
        while !running.is_finished() {
            if let Ok(stats) = sandbox.driver.stats(&sandbox.id).await {
                most_pids = most_pids.max(stats.pids);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let result = running.await.expect("the bomb's task");
        eprintln!(
            "fork bomb {bomb:?}: {result:?} after {:?}, at most {most_pids} pids",
            started.elapsed(),
        );
        assert!(most_pids >= min_pids, "the bomb took the pids: {most_pids}");
        assert!(started.elapsed() < Duration::from_secs(60));
        if let Ok(outcome) = &result {
            assert!(outcome.timed_out && outcome.killed, "{outcome:?}");
        }

        let ran = run(&sandbox, "echo ok").await;
        assert_eq!(ran.stdout, "ok\n");
        assert_eq!(strays(&sandbox).await, "", "the bomb is gone");
        sandbox
            .driver
            .ping()
            .await
            .expect("the engine still answers");
    }
}

#[tokio::test]
async fn connect_reaches_servers_listening_inside_the_container() {
    let sandbox = sandbox().await;
    let page = "<h1>hello from the sandbox</h1>\n".repeat(2000);
    std::fs::write(sandbox.workspace.path().join("index.html"), &page).expect("writing");

    // A web server, an echo server, and one that never closes a connection.
    let cancel = CancellationToken::new();
    let servers = {
        let driver = driver();
        let id = sandbox.id.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let (tx, _rx) = mpsc::channel(16);
            let cmd = "httpd -f -p 8080 -h /workspace & nc -ll -p 9000 -e cat & \
                       nc -ll -p 9001 -e sleep 1000 & wait";
            driver.exec(&id, exec_spec(cmd, None), tx, cancel).await
        })
    };
    let ready = run(
        &sandbox,
        "for port in 8080 9000 9001; do \
           until netstat -ltn | grep -q \":$port \"; do sleep 0.1; done; \
         done",
    )
    .await;
    assert_eq!(
        ready.outcome.exit_code,
        Some(0),
        "the servers did not start"
    );

    for _ in 0..2 {
        let mut conn = sandbox
            .driver
            .connect(&sandbox.id, 8080)
            .await
            .expect("connecting");
        conn.write_all(b"GET /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("writing the request");
        conn.flush().await.expect("flushing");
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response))
            .await
            .expect("the response ends")
            .expect("reading the response");
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 200 OK\r\n"),
            "{response:.200}"
        );
        assert!(response.ends_with(&page), "the whole page arrives");
    }

    // Both directions stay open, as a WebSocket needs.
    let mut conn = sandbox
        .driver
        .connect(&sandbox.id, 9000)
        .await
        .expect("connecting to the echo server");
    let started = Instant::now();
    for round in 0..10 {
        let message = format!("message {round}\n");
        conn.write_all(message.as_bytes()).await.expect("writing");
        conn.flush().await.expect("flushing");
        let mut echoed = vec![0; message.len()];
        tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut echoed))
            .await
            .expect("the echo arrives")
            .expect("reading the echo");
        assert_eq!(echoed, message.as_bytes());
    }
    eprintln!("10 echo round trips: {:?}", started.elapsed());
    drop(conn);

    // A forwarder whose server never closes is killed once the connection is dropped.
    let mut conn = sandbox
        .driver
        .connect(&sandbox.id, 9001)
        .await
        .expect("connecting to the silent server");
    conn.write_all(b"hello\n").await.expect("writing");
    conn.flush().await.expect("flushing");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let forwarders = run(&sandbox, "ps -o args | grep '^nc 127.0.0.1 9001' || true").await;
    assert_ne!(forwarders.stdout, "", "the forwarder runs while connected");
    drop(conn);
    let mut left = String::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        left = run(&sandbox, "ps -o args | grep '^nc 127.0.0.1' || true")
            .await
            .stdout;
        if left.is_empty() {
            break;
        }
    }
    assert_eq!(left, "", "forwarders left behind");

    let started = Instant::now();
    let mut conn = sandbox
        .driver
        .connect(&sandbox.id, 8081)
        .await
        .expect("connecting to a closed port");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut buf))
        .await
        .expect("nothing listening ends the stream at once");
    assert_eq!(read.expect("reading"), 0);
    eprintln!("closed port: EOF after {:?}", started.elapsed());

    cancel.cancel();
    let outcome = servers
        .await
        .expect("the server task")
        .expect("running the servers");
    assert!(outcome.killed, "{outcome:?}");
    let left = run(
        &sandbox,
        "ps -o args | grep -E '^(httpd|nc|sleep 1000)' || true",
    )
    .await;
    assert_eq!(left.stdout, "", "the servers are gone");
}

#[tokio::test]
async fn without_a_network_only_loopback_exists() {
    let sandbox = sandbox().await;
    let ran = run(&sandbox, "ls /sys/class/net").await;
    assert_eq!(ran.stdout, "lo\n");
    let ran = run(&sandbox, "nc -w 2 192.0.2.2 22 < /dev/null").await;
    assert_ne!(ran.outcome.exit_code, Some(0), "{}", ran.stderr);
    let ran = run(&sandbox, "nc -w 2 1.1.1.1 53 < /dev/null").await;
    assert_ne!(ran.outcome.exit_code, Some(0), "{}", ran.stderr);
}

#[tokio::test]
async fn list_ping_and_an_unreachable_engine() {
    let sandbox = sandbox().await;
    let found = sandbox
        .driver
        .list(&format!("autonoma.driver-test={}", sandbox.label))
        .await
        .expect("listing");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].id, sandbox.id);
    assert!(found[0].running);

    sandbox.driver.stop(&sandbox.id).await.expect("stopping");
    sandbox
        .driver
        .stop(&sandbox.id)
        .await
        .expect("stopping twice");
    let found = sandbox
        .driver
        .list(&format!("autonoma.driver-test={}", sandbox.label))
        .await
        .expect("listing");
    assert_eq!(found.len(), 1, "stopped containers are listed: {found:?}");
    assert!(!found[0].running);
    assert_eq!(found[0].exit_code, Some(0), "PID 1 exits on SIGTERM");
    let err = run_with(&sandbox, exec_spec("true", None), CancellationToken::new())
        .await
        .err();
    assert!(
        matches!(err, Some(DriverError::NotRunning { .. })),
        "{err:?}"
    );
    let stats = sandbox.driver.stats(&sandbox.id).await;
    assert!(
        matches!(stats, Err(DriverError::NotRunning { .. })),
        "{stats:?}"
    );
    assert!(
        sandbox
            .driver
            .list("autonoma.driver-test=nothing-has-this")
            .await
            .expect("listing")
            .is_empty()
    );

    let version = sandbox.driver.ping().await.expect("ping");
    eprintln!("engine: {version}");
    assert!(version.chars().any(|c| c.is_ascii_digit()), "{version}");
    assert_eq!(sandbox.driver.name(), "docker");

    let started = Instant::now();
    let gone =
        DockerDriver::connect("unix:///tmp/autonoma-driver-test-no-such.sock").expect("lazy");
    let err = gone.ping().await.expect_err("nothing listens there");
    assert!(started.elapsed() < Duration::from_secs(2));
    let DriverError::Unreachable(reason) = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("No such file or directory"), "{reason}");
    eprintln!("unreachable: {reason}");

    let refused = tempfile::tempdir().expect("tempdir");
    let path = refused.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).expect("binding"));
    let dead = DockerDriver::connect(&format!("unix://{}", path.display())).expect("lazy");
    let err = dead.ping().await.expect_err("nothing listens there");
    assert!(matches!(err, DriverError::Unreachable(_)), "{err:?}");
    eprintln!("refused: {err}");

    let tcp = DockerDriver::connect("tcp://127.0.0.1:9").expect("lazy");
    let err = tcp.ping().await.expect_err("nothing listens there");
    assert!(matches!(err, DriverError::Unreachable(_)), "{err:?}");
    eprintln!("tcp: {err}");

    assert!(matches!(
        DockerDriver::connect("ftp://x"),
        Err(DriverError::Unreachable(_))
    ));
}

#[tokio::test]
async fn a_missing_image_is_reported_as_such() {
    let workspace = tempfile::tempdir().expect("workspace");
    let mut spec = spec(workspace.path(), "missing-image");
    spec.image = "localhost/autonoma-driver-test-no-such-image:latest".to_owned();
    let result = driver().create(&spec).await;
    if let Ok(id) = &result {
        driver().remove(id).await.expect("removing");
    }
    assert!(
        matches!(result, Err(DriverError::ImageMissing { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_read_only_root_leaves_tmp_and_the_workspace_writable() {
    let sandbox = sandbox().await;
    let ran = run(&sandbox, "touch /x").await;
    assert_ne!(ran.outcome.exit_code, Some(0));
    assert!(
        ran.stderr.contains("Read-only file system"),
        "{}",
        ran.stderr
    );
    let ran = run(
        &sandbox,
        "touch /tmp/x && touch /workspace/x && ls -ld /tmp",
    )
    .await;
    assert_eq!(ran.outcome.exit_code, Some(0), "{}", ran.stderr);
    assert!(sandbox.workspace.path().join("x").exists());
}

#[tokio::test]
async fn exec_round_trip() {
    let sandbox = sandbox().await;
    let mut times = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let ran = run(&sandbox, "true").await;
        times.push(started.elapsed());
        assert_eq!(ran.outcome.exit_code, Some(0));
    }
    times.sort();
    eprintln!(
        "20 `true` execs: p50 {:?}, min {:?}, max {:?}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}

//! The launcher as people run it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use autonoma_testkit::{ServiceProcess, empty_db, free_ports, run_to_exit_with_args};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_autonoma"))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The environment a launched launcher needs: cargo and the toolchain on PATH, and the
/// target directory the tests were built in.
fn passthrough_env() -> Vec<(&'static str, String)> {
    [
        "CARGO",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
        "HOME",
    ]
    .into_iter()
    .filter_map(|name| std::env::var(name).ok().map(|value| (name, value)))
    .collect()
}

#[tokio::test]
async fn env_example_is_generated_from_the_schema() {
    let output = run_to_exit_with_args(bin(), &["env-example"], &[], Duration::from_secs(30))
        .await
        .expect("runs");
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).expect("utf-8");
    let committed =
        std::fs::read_to_string(workspace_root().join(".env.example")).expect(".env.example");
    assert_eq!(
        committed, generated,
        ".env.example is stale: run `cargo autonoma env-example > .env.example`"
    );
    for service in autonoma_common::config::service_names().expect("schema") {
        let spec = autonoma_common::config::Spec::for_service(&service).expect("section");
        for var in spec.vars() {
            assert!(
                generated.contains(&format!("{}=", var.name)),
                "{} missing",
                var.name
            );
        }
    }
}

#[tokio::test]
async fn two_processes_migrating_at_once_both_succeed() {
    let db = empty_db().await;
    let args = ["migrate", "--database-url", db.url.as_str()];
    let (a, b) = tokio::join!(
        run_to_exit_with_args(bin(), &args, &[], Duration::from_secs(60)),
        run_to_exit_with_args(bin(), &args, &[], Duration::from_secs(60)),
    );
    for output in [a.expect("first runs"), b.expect("second runs")] {
        assert!(
            output.status.success(),
            "migrate failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&db.pool)
        .await
        .expect("query");
    assert_eq!(
        applied as usize,
        autonoma_migrations::MIGRATOR.iter().count()
    );
    let tasks: bool = sqlx::query_scalar("SELECT to_regclass('public.tasks') IS NOT NULL")
        .fetch_one(&db.pool)
        .await
        .expect("query");
    assert!(tasks);
}

/// One process as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone)]
struct Proc {
    pid: i32,
    ppid: i32,
    pgrp: i32,
    state: char,
    /// When it started (clock ticks after boot): with the pid, names the process uniquely.
    start: u64,
    cmdline: String,
}

impl Proc {
    /// Running, or stopped, or anything but a zombie waiting to be reaped.
    fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Every process on the machine (as far as this process can see).
fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(proc) = process(pid) {
            out.push(proc);
        }
    }
    out
}

/// The process `pid`, if it exists (a zombie included).
fn process(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    // Fields 6 to 21 of stat, then starttime.
    let start = fields.nth(16)?.parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default();
    Some(Proc {
        pid,
        ppid,
        pgrp,
        state,
        start,
        cmdline,
    })
}

fn pid_alive(pid: i32) -> bool {
    process(pid).is_some_and(|p| p.is_live())
}

/// `root` and every live process descending from it.
fn descendants(root: i32) -> Vec<Proc> {
    let all = processes();
    let mut found: Vec<Proc> = all.iter().filter(|p| p.pid == root).cloned().collect();
    let mut index = 0;
    while index < found.len() {
        let parent = found[index].pid;
        found.extend(all.iter().filter(|p| p.ppid == parent).cloned());
        index += 1;
    }
    found.retain(Proc::is_live);
    found
}

/// The number after `needle` in `text`, e.g. the pid in "(pid 123,".
fn number_after(text: &str, needle: &str) -> Option<i32> {
    let start = text.find(needle)? + needle.len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The services `autonoma up` starts, as stack.json names them.
const SERVICES: [&str; 6] = [
    "logging",
    "orchestrator",
    "echo-agent",
    "renderctl",
    "sandbox",
    "queue-gateway",
];

/// `autonoma up` on `state`, run until it says the stack is up.
async fn start_stack(state: &Path, base_port: u16, pg_port: u16, extra: &[&str]) -> ServiceProcess {
    let state_dir = state.to_str().expect("utf-8").to_owned();
    let base_port = base_port.to_string();
    let pg_port = pg_port.to_string();
    let mut args = vec![
        "up",
        "--state-dir",
        &state_dir,
        "--base-port",
        &base_port,
        "--pg-port",
        &pg_port,
    ];
    args.extend_from_slice(extra);
    let mut env = passthrough_env();
    env.push(("PATH", std::env::var("PATH").unwrap_or_default()));
    // No container engine: the sandbox runs anyway and says why it is not ready.
    env.push(("DOCKER_HOST", "unix:///nonexistent/docker.sock".to_owned()));
    // The launcher's own /health is each service's; wait for its summary instead.
    let mut launcher = ServiceProcess::spawn_with_args(bin(), &args, &env).expect("spawn");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    while !launcher.output().contains("Ctrl-C stops everything") {
        if let Some(status) = launcher.try_wait().expect("poll") {
            panic!("launcher exited ({status}):\n{}", launcher.output());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stack not up:\n{}",
            launcher.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    launcher
}

/// What a stopped stack must not leave behind.
struct StackProcesses {
    /// Each service's pid (each leads its own process group) and the postmaster's, by name.
    leaders: Vec<(String, i32)>,
    /// Every process of the running stack: the launcher's descendants (Postgres' backends and
    /// helpers among them) and the members of the leaders' process groups.
    all: Vec<Proc>,
}

/// Reads stack.json (it is removed when the stack stops) and the process table of the running
/// stack, checking that every service and Postgres is alive and answers.
async fn running_stack(state: &Path, launcher: &ServiceProcess) -> StackProcesses {
    let stack: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state.join("stack.json")).expect("stack.json written"),
    )
    .expect("stack.json is JSON");
    let services = stack["services"].as_object().expect("services");
    let names: Vec<&str> = services.keys().map(String::as_str).collect();
    for name in SERVICES {
        assert!(names.contains(&name), "{name} not in stack.json: {stack}");
    }
    let mut leaders = Vec::new();
    for (name, service) in services {
        let pid = service["pid"].as_i64().expect("a pid") as i32;
        assert!(pid_alive(pid), "{name} (pid {pid}) is not running");
        let url = service["url"].as_str().expect("a url");
        let health = reqwest::get(format!("{url}/health")).await.expect("health");
        assert_eq!(health.status(), 200, "{name} at {url}");
        leaders.push((name.clone(), pid));
    }
    let postgres_pid = number_after(&launcher.output(), "(pid ").expect("postgres pid printed");
    assert!(pid_alive(postgres_pid), "postgres (pid {postgres_pid})");
    leaders.push(("postgres".to_owned(), postgres_pid));

    let groups: Vec<i32> = leaders.iter().map(|(_, pid)| *pid).collect();
    let mut all = descendants(launcher.pid() as i32);
    for proc in processes() {
        if groups.contains(&proc.pgrp) && proc.is_live() && !all.iter().any(|p| p.pid == proc.pid) {
            all.push(proc);
        }
    }
    for (name, pid) in &leaders {
        assert!(
            all.iter().any(|p| p.pid == *pid),
            "{name} (pid {pid}) was not found among the stack's processes"
        );
    }
    assert!(
        all.iter().filter(|p| p.ppid == postgres_pid).count() > 1,
        "Postgres' own processes (checkpointer, ...) were not found: {all:?}"
    );
    StackProcesses { leaders, all }
}

/// Sends `signal` to the launcher and checks that it exits successfully having stopped every
/// process of `stack` (and nothing of the state directory still runs).
async fn stop_and_check(
    mut launcher: ServiceProcess,
    signal: nix::sys::signal::Signal,
    state: &Path,
    stack: &StackProcesses,
) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(launcher.pid() as i32), signal)
        .expect("signal the launcher");
    let status = launcher
        .wait(Duration::from_secs(90))
        .await
        .expect("launcher exits");
    assert!(
        status.success(),
        "{signal}: {status}:\n{}",
        launcher.output()
    );
    let output = launcher.output();
    // The services drain and exit 0, and only then is Postgres stopped.
    let postgres_stop = output
        .find("stopping postgres")
        .unwrap_or_else(|| panic!("Postgres not stopped on {signal}:\n{output}"));
    for name in SERVICES {
        let stopped = output
            .find(&format!("{name} stopped (exit status: 0)"))
            .unwrap_or_else(|| panic!("{name} did not stop cleanly on {signal}:\n{output}"));
        assert!(
            stopped < postgres_stop,
            "{name} stopped after Postgres:\n{output}"
        );
    }
    for (name, pid) in &stack.leaders {
        assert!(
            !pid_alive(*pid),
            "{name} (pid {pid}) still running after {signal}"
        );
    }
    let groups: Vec<i32> = stack.leaders.iter().map(|(_, pid)| *pid).collect();
    let state_dir = state.to_str().expect("utf-8");
    let leftovers: Vec<Proc> = processes()
        .into_iter()
        .filter(Proc::is_live)
        .filter(|p| {
            groups.contains(&p.pgrp)
                || p.cmdline.contains(state_dir)
                || stack
                    .all
                    .iter()
                    .any(|q| q.pid == p.pid && q.start == p.start)
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "still running after {signal}: {leftovers:#?}"
    );
    assert!(
        state.join("pg/PG_VERSION").is_file(),
        "data directory kept for next time"
    );
    assert!(
        !state.join("stack.json").exists(),
        "stack.json removed when the stack stops"
    );
}

/// The README's example: a task created with curl (reqwest when curl is absent) against the
/// stack, with the printed credentials, succeeds.
async fn create_echo_task(orchestrator_url: &str, user: &str, pass: &str) -> String {
    let body = r#"{"kind": "echo", "payload": {"message": "hello"}}"#;
    let curl = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let created: serde_json::Value = if curl {
        let output = std::process::Command::new("curl")
            .args(["--silent", "--show-error", "--user"])
            .arg(format!("{user}:{pass}"))
            .args(["--header", "Content-Type: application/json", "--data", body])
            .args(["--write-out", "\n%{http_code}"])
            .arg(format!("{orchestrator_url}/task"))
            .output()
            .expect("curl runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "curl failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let (body, code) = stdout.rsplit_once('\n').expect("status line");
        assert!(code.starts_with('2'), "POST /task answered {code}: {body}");
        serde_json::from_str(body).expect("a task")
    } else {
        eprintln!("note: curl is not on PATH; creating the task with reqwest instead");
        let response = reqwest::Client::new()
            .post(format!("{orchestrator_url}/task"))
            .basic_auth(user, Some(pass))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("create");
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.expect("task")
    };
    created["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn up_starts_every_service_and_interrupt_or_terminate_leaves_nothing_running() {
    let state = tempfile::tempdir().expect("tempdir");
    // The services and the dashboard listen on base_port + 0..=6; Postgres on the next one.
    let base_port = free_ports(8);
    let pg_port = base_port + 7;
    let launcher = start_stack(state.path(), base_port, pg_port, &[]).await;
    let output = launcher.output();

    let orchestrator_url = format!("http://127.0.0.1:{base_port}");
    let logging_url = format!("http://127.0.0.1:{}", base_port + 1);
    let echo_url = format!("http://127.0.0.1:{}", base_port + 2);
    let gateway_url = format!("http://127.0.0.1:{}", base_port + 5);
    let sandbox_url = format!("http://127.0.0.1:{}", base_port + 4);
    for url in [
        &orchestrator_url,
        &logging_url,
        &echo_url,
        &gateway_url,
        &sandbox_url,
    ] {
        assert!(output.contains(url.as_str()), "{url} not listed:\n{output}");
        let health = reqwest::get(format!("{url}/health")).await.expect("health");
        assert_eq!(health.status(), 200, "{url}");
    }
    let sandbox_line = output
        .lines()
        .find(|l| l.contains(sandbox_url.as_str()))
        .expect("sandbox listed");
    assert!(
        sandbox_line.contains("not ready: The container engine is unavailable")
            && sandbox_line.contains("/nonexistent/docker.sock"),
        "{sandbox_line}"
    );
    let ready = reqwest::get(format!("{sandbox_url}/health/ready"))
        .await
        .expect("ready");
    assert_eq!(ready.status(), 503);
    let gateway_ready = reqwest::get(format!("{gateway_url}/health/ready"))
        .await
        .expect("ready");
    assert_eq!(gateway_ready.status(), 200);
    assert!(
        !output
            .lines()
            .any(|l| l.contains(gateway_url.as_str()) && l.contains("not ready")),
        "{output}"
    );

    // A task created against the stack with the printed credentials succeeds.
    let line = output
        .lines()
        .find(|l| l.contains("operator sign-in:"))
        .expect("credentials printed");
    let pass = line.rsplit(' ').next().expect("password").trim().to_owned();
    let id = create_echo_task(&orchestrator_url, "operator", &pass).await;
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let task: serde_json::Value = client
            .get(format!("{orchestrator_url}/task/{id}"))
            .basic_auth("operator", Some(&pass))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("task");
        if task["status"] == "succeeded" {
            assert_eq!(task["result"]["echo"]["message"], "hello");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task not done: {task}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The dashboard is served with the services' addresses, when it is built (npm present);
    // stack.json says where everything answers.
    let stack: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state.path().join("stack.json")).expect("stack.json written"),
    )
    .expect("stack.json is JSON");
    assert_eq!(stack["services"]["orchestrator"]["url"], orchestrator_url);
    let dashboard_url = format!("http://127.0.0.1:{}", base_port + 6);
    if workspace_root().join("dashboard/dist/index.html").is_file() {
        assert_eq!(stack["dashboard"], dashboard_url.as_str(), "{output}");
        let config: serde_json::Value = reqwest::get(format!("{dashboard_url}/config.json"))
            .await
            .expect("config.json")
            .json()
            .await
            .expect("config JSON");
        assert_eq!(config["services"]["logging"], logging_url.as_str());
        // The app's own routes load the app.
        let page = reqwest::get(format!("{dashboard_url}/tasks/some-id"))
            .await
            .expect("a route");
        assert_eq!(page.status(), 200);
        let html = page.text().await.expect("html");
        assert!(html.contains("<div id=\"app\">"), "{html}");
    } else {
        assert!(stack["dashboard"].is_null());
        assert!(output.contains("the dashboard is not built"), "{output}");
    }

    // What Ctrl-C sends: every service and Postgres stop, with all their processes.
    let processes = running_stack(state.path(), &launcher).await;
    stop_and_check(
        launcher,
        nix::sys::signal::Signal::SIGINT,
        state.path(),
        &processes,
    )
    .await;
    assert!(
        reqwest::get(format!("{echo_url}/health")).await.is_err(),
        "echo-agent still serving"
    );

    // What a process manager sends. The binaries are built now, and Postgres' data directory
    // is kept, so this second start is the quick one people get the next time.
    let base_port = free_ports(8);
    let launcher = start_stack(state.path(), base_port, base_port + 7, &["--no-build"]).await;
    let processes = running_stack(state.path(), &launcher).await;
    stop_and_check(
        launcher,
        nix::sys::signal::Signal::SIGTERM,
        state.path(),
        &processes,
    )
    .await;
}

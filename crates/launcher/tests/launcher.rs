//! The launcher as people run it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use autonoma_testkit::{ServiceProcess, empty_db, free_port, run_to_exit_with_args};

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

fn pid_alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
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

#[tokio::test]
async fn up_starts_every_service_and_interrupt_leaves_nothing_running() {
    let state = tempfile::tempdir().expect("tempdir");
    let base_port = free_port();
    let pg_port = free_port();
    let state_dir = state.path().to_str().expect("utf-8").to_owned();
    let args = [
        "up",
        "--state-dir",
        &state_dir,
        "--base-port",
        &base_port.to_string(),
        "--pg-port",
        &pg_port.to_string(),
    ];
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
    let output = launcher.output();
    let postgres_pid = number_after(&output, "(pid ").expect("postgres pid printed");
    assert!(pid_alive(postgres_pid));

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
    let client = reqwest::Client::new();
    let created: serde_json::Value = client
        .post(format!("{orchestrator_url}/task"))
        .basic_auth("operator", Some(&pass))
        .json(&serde_json::json!({"kind": "echo", "payload": {"message": "hello"}}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("task");
    let id = created["id"].as_str().expect("an id").to_owned();
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
    let orchestrator_pid = stack["services"]["orchestrator"]["pid"]
        .as_i64()
        .expect("a pid");
    assert!(pid_alive(orchestrator_pid as i32));
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

    // What Ctrl-C sends.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(launcher.pid() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let status = launcher
        .wait(Duration::from_secs(60))
        .await
        .expect("launcher exits");
    assert!(status.success(), "{status}:\n{}", launcher.output());
    assert!(!pid_alive(postgres_pid), "postgres still running");
    assert!(
        reqwest::get(format!("{echo_url}/health")).await.is_err(),
        "echo-agent still serving"
    );
    assert!(
        state.path().join("pg/PG_VERSION").is_file(),
        "data directory kept for next time"
    );
    assert!(
        !state.path().join("stack.json").exists(),
        "stack.json removed when the stack stops"
    );
}

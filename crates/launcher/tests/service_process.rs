//! What every service binary does the same way, seen on a real one (echo-agent) run as a
//! process: it reads a `.env` in its working directory (and no other), with the process
//! environment taking precedence, and `LOG_FORMAT=json` makes every line of its output a JSON
//! object while the default text is for people.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use autonoma_testkit::{ServiceProcess, free_port, workspace_binary};
use serde_json::Value;

const KEY: &str = "process-test-key-0123456789";
const USER: &str = "operator";
const PASS: &str = "correct-horse-battery";

/// A child started in a directory of the test's choosing (`ServiceProcess` always uses a fresh
/// one), with only `PATH` and `env` in its environment, its output in files under `logs`.
/// Dropping it kills it.
struct InDir {
    child: Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl InDir {
    fn spawn(
        bin: &Path,
        args: &[&str],
        cwd: &Path,
        env: &[(&str, String)],
        logs: &Path,
        name: &str,
    ) -> Self {
        let stdout = logs.join(format!("{name}.stdout"));
        let stderr = logs.join(format!("{name}.stderr"));
        let mut command = Command::new(bin);
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        let child = command.spawn().expect("spawn");
        InDir {
            child,
            stdout,
            stderr,
        }
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still running after {timeout:?}:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_healthy(&mut self, url: &str) {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("exited ({status}) before answering:\n{}", self.output());
            }
            if let Ok(response) = client.get(format!("{url}/health")).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{url}/health never answered:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for InDir {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn key<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["key"] == name)
        .unwrap_or_else(|| panic!("{name} not in {report}"))
}

#[tokio::test]
async fn a_dotenv_in_the_working_directory_configures_the_service_under_the_environment() {
    let bin = workspace_binary("echo-agent");
    let root = tempfile::tempdir().expect("tempdir");
    let work = root.path().join("work");
    let below = work.join("below");
    let logs = root.path().join("logs");
    for dir in [&below, &logs] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let dotenv_pass = "dotenv pass 0123";
    let env_pass = "environment-pass-4567";
    std::fs::write(
        work.join(".env"),
        format!(
            "# the service's configuration, as people keep it beside it\n\
             INTERNAL_API_KEYS={KEY}\n\
             BASIC_AUTH_USER={USER}\n\
             BASIC_AUTH_PASS=\"{dotenv_pass}\"\n\
             HOST=127.0.0.1\n\
             PORT={port}\n\
             ORCHESTRATOR_URL=http://127.0.0.1:{}\n\
             REQUEST_TIMEOUT=17s\n\
             LOG_LEVEL=debug\n",
            free_port()
        ),
    )
    .expect("write .env");

    // Set in both places: the process environment wins.
    let env = [
        ("BASIC_AUTH_PASS", env_pass.to_owned()),
        ("LOG_LEVEL", "warn".to_owned()),
    ];
    let mut service = InDir::spawn(&bin, &[], &work, &env, &logs, "service");
    // PORT is only in .env: the service answers there.
    service.wait_healthy(&url).await;

    let client = reqwest::Client::new();
    let report: Value = client
        .get(format!("{url}/config/validate"))
        .basic_auth(USER, Some(env_pass))
        .send()
        .await
        .expect("request")
        .error_for_status()
        .expect("the environment's password is the one in force")
        .json()
        .await
        .expect("report");
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(key(&report, "REQUEST_TIMEOUT")["status"], "ok", "{report}");
    assert_eq!(key(&report, "REQUEST_TIMEOUT")["value"], "17s", "{report}");
    assert_eq!(key(&report, "PORT")["value"], port, "{report}");
    assert_eq!(
        key(&report, "LOG_LEVEL")["value"],
        "warn",
        "the environment's LOG_LEVEL wins over .env's: {report}"
    );
    assert_eq!(key(&report, "INTERNAL_API_KEYS")["status"], "ok");
    let refused = client
        .get(format!("{url}/config/validate"))
        .basic_auth(USER, Some(dotenv_pass))
        .send()
        .await
        .expect("request");
    assert_eq!(
        refused.status(),
        401,
        "the .env password must not be in force when the environment sets one"
    );
    // The internal key comes from .env only.
    let echoed = client
        .post(format!("{url}/echo"))
        .header("x-internal-key", KEY)
        .json(&serde_json::json!({"from": "dotenv"}))
        .send()
        .await
        .expect("request");
    assert_eq!(echoed.status(), 200);

    // `<binary> healthcheck` reads the same .env to find the port.
    let mut probe = InDir::spawn(&bin, &["healthcheck"], &work, &[], &logs, "probe");
    let status = probe.wait(Duration::from_secs(30)).await;
    assert!(status.success(), "healthcheck failed:\n{}", probe.output());

    // Only the working directory's .env counts, not one in a parent directory: started one
    // level below, the service has no configuration.
    let mut below_service = InDir::spawn(&bin, &[], &below, &[], &logs, "below");
    let status = below_service.wait(Duration::from_secs(30)).await;
    assert_eq!(
        status.code(),
        Some(78),
        "a parent directory's .env was read:\n{}",
        below_service.output()
    );
    let stderr = below_service.stderr();
    for variable in ["INTERNAL_API_KEYS", "BASIC_AUTH_USER", "BASIC_AUTH_PASS"] {
        assert!(stderr.contains(variable), "{variable} not named:\n{stderr}");
    }

    // A .env that cannot be parsed stops the service like a bad variable does.
    let broken = root.path().join("broken");
    std::fs::create_dir_all(&broken).expect("mkdir");
    std::fs::write(broken.join(".env"), "INTERNAL_API_KEYS='never closed\n").expect("write");
    let mut broken_service = InDir::spawn(&bin, &[], &broken, &[], &logs, "broken");
    let status = broken_service.wait(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(78), "{}", broken_service.output());
    assert!(
        broken_service.stderr().contains(".env"),
        "{}",
        broken_service.output()
    );
}

/// echo-agent's environment for the logging tests: valid, its orchestrator not listening (it
/// serves anyway, and logs that it cannot register).
fn log_env(format: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("INTERNAL_API_KEYS", KEY.to_owned()),
        ("BASIC_AUTH_USER", USER.to_owned()),
        ("BASIC_AUTH_PASS", PASS.to_owned()),
        ("LOG_LEVEL", "debug".to_owned()),
        (
            "ORCHESTRATOR_URL",
            format!("http://127.0.0.1:{}", free_port()),
        ),
    ];
    if let Some(format) = format {
        env.push(("LOG_FORMAT", format.to_owned()));
    }
    env
}

/// Runs echo-agent, sends it a refused and an accepted request, stops it with SIGTERM, and
/// returns it with all of its output captured.
async fn run_and_stop(env: &[(&str, String)]) -> ServiceProcess {
    let mut service =
        ServiceProcess::spawn(&workspace_binary("echo-agent"), env).expect("the service starts");
    service
        .wait_healthy(Duration::from_secs(60))
        .await
        .expect("healthy");
    let client = reqwest::Client::new();
    let refused = client
        .post(service.url("/echo"))
        .json(&serde_json::json!({"hello": "world"}))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 401);
    let accepted = client
        .post(service.url("/echo"))
        .header("x-internal-key", KEY)
        .json(&serde_json::json!({"hello": "world"}))
        .send()
        .await
        .expect("request");
    assert_eq!(accepted.status(), 200);
    service.terminate().expect("SIGTERM");
    let status = service
        .wait(Duration::from_secs(30))
        .await
        .expect("it stops");
    assert!(status.success(), "{status}:\n{}", service.output());
    service
}

#[tokio::test]
async fn log_format_json_makes_every_output_line_a_json_event() {
    let service = run_and_stop(&log_env(Some("json"))).await;
    let stdout = service.stdout();
    let stderr = service.stderr();
    let mut events = Vec::new();
    for (stream, text) in [("stdout", stdout.as_str()), ("stderr", stderr.as_str())] {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let event: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{stream} line is not JSON ({e}): {line}"));
            let timestamp = event["timestamp"].as_str().unwrap_or_default();
            assert!(
                timestamp.len() >= 20
                    && timestamp.as_bytes()[4] == b'-'
                    && timestamp.as_bytes()[10] == b'T'
                    && timestamp.ends_with('Z'),
                "no RFC 3339 timestamp: {line}"
            );
            assert!(
                ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                    .contains(&event["level"].as_str().unwrap_or_default()),
                "no level: {line}"
            );
            assert!(
                !event["target"].as_str().unwrap_or_default().is_empty(),
                "no target: {line}"
            );
            assert!(
                event["fields"]["message"].is_string(),
                "no fields.message: {line}"
            );
            events.push(event);
        }
    }
    let find = |message: &str| {
        events
            .iter()
            .find(|e| e["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} event in:\n{stdout}"))
    };
    let listening = find("listening");
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["target"], "autonoma_common::server");
    assert_eq!(listening["fields"]["service"], "echo-agent");
    assert_eq!(
        listening["fields"]["address"],
        format!("127.0.0.1:{}", service.port())
    );
    // An event inside a request carries the request's span and typed fields.
    let refused = find("request refused");
    assert_eq!(refused["fields"]["status"], 401, "{refused}");
    assert!(refused["fields"]["latency_ms"].is_u64(), "{refused}");
    assert_eq!(refused["span"]["name"], "request", "{refused}");
    assert_eq!(refused["span"]["method"], "POST", "{refused}");
    assert_eq!(refused["span"]["route"], "/echo", "{refused}");
    assert_eq!(
        refused["span"]["trace_id"].as_str().map(str::len),
        Some(32),
        "{refused}"
    );
    let completed = find("request completed");
    assert_eq!(completed["level"], "DEBUG");
    assert_eq!(completed["fields"]["status"], 200, "{completed}");
    assert_eq!(find("stopped")["fields"]["service"], "echo-agent");
    assert!(!stdout.contains(PASS), "a secret was logged:\n{stdout}");
}

#[tokio::test]
async fn without_log_format_the_output_is_text_for_people() {
    let service = run_and_stop(&log_env(None)).await;
    let output = service.output();
    assert!(
        !output.contains('\u{1b}'),
        "colour codes in a pipe:\n{output}"
    );
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Map<String, Value>>(line).is_err(),
            "a JSON line in text mode: {line}"
        );
    }
    let address = format!("127.0.0.1:{}", service.port());
    let listening = output
        .lines()
        .find(|l| l.contains("listening"))
        .unwrap_or_else(|| panic!("no listening line:\n{output}"));
    for part in [
        "INFO",
        "autonoma_common::server",
        "service=\"echo-agent\"",
        address.as_str(),
    ] {
        assert!(listening.contains(part), "{part:?} not in {listening:?}");
    }
    let refused = output
        .lines()
        .find(|l| l.contains("request refused"))
        .unwrap_or_else(|| panic!("no request refused line:\n{output}"));
    assert!(
        refused.contains("status=401") && refused.contains("route=/echo"),
        "{refused}"
    );
}

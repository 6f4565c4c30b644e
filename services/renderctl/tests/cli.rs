//! The command line CI runs (`renderctl apply`, `renderctl deploy --wait`), as a real process
//! against the Render contract fake.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use autonoma_render_fake::RenderFake;
use autonoma_testkit::run_to_exit_with_args;
use serde_json::{Value, json};

const REPO: &str = "https://github.com/acme/autonoma";

fn render_yaml() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../render.yaml")
        .display()
        .to_string()
}

async fn renderctl(fake: &RenderFake, args: &[&str], token: bool) -> Output {
    let mut env = vec![
        ("RENDER_API_BASE_URL", fake.base_url()),
        ("RENDER_REPO", REPO.to_owned()),
        ("RENDER_BLUEPRINT_PATH", render_yaml()),
    ];
    if token {
        env.push(("RENDER_API_TOKEN", fake.token().to_owned()));
    }
    run_to_exit_with_args(
        Path::new(env!("CARGO_BIN_EXE_renderctl")),
        args,
        &env,
        Duration::from_secs(60),
    )
    .await
    .expect("renderctl ran")
}

fn stdout_json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test]
async fn apply_dry_run_then_apply_then_nothing_left() {
    let fake = RenderFake::start().await.expect("fake");
    let dry = renderctl(&fake, &["apply", "--dry-run"], true).await;
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let plan = stdout_json(&dry);
    assert!(
        plan["plan"]["steps"].as_array().expect("steps").len() >= 9,
        "{plan}"
    );
    assert!(fake.mutations().is_empty());

    let applied = renderctl(&fake, &["apply"], true).await;
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert_eq!(stdout_json(&applied)["remaining"]["steps"], json!([]));
    let again = renderctl(&fake, &["apply", "--dry-run"], true).await;
    assert_eq!(stdout_json(&again)["plan"]["steps"], json!([]));
    let violations = fake.violations();
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[tokio::test]
async fn deploy_wait_follows_the_deploy_and_fails_when_it_fails() {
    let fake = RenderFake::start().await.expect("fake");
    let id = fake.seed_service(json!({
        "type": "web_service", "name": "autonoma-orchestrator", "ownerId": fake.owner_id(), "repo": REPO,
        "serviceDetails": { "runtime": "docker", "healthCheckPath": "/health" },
    }));
    let live = renderctl(
        &fake,
        &[
            "deploy",
            "autonoma-orchestrator",
            "--wait",
            "--poll",
            "50ms",
        ],
        true,
    )
    .await;
    assert!(
        live.status.success(),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    assert_eq!(stdout_json(&live)["status"], "live");

    fake.fail_next_deploy(&id, vec!["error: linking with `cc` failed".into()]);
    let failed = renderctl(&fake, &["deploy", &id, "--wait", "--poll", "50ms"], true).await;
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(stdout_json(&failed)["status"], "build_failed");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("linking with `cc` failed"),
        "the build log is shown: {stderr}"
    );

    let unknown = renderctl(&fake, &["deploy", "no-such-service"], true).await;
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no-such-service"));
    let violations = fake.violations();
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[tokio::test]
async fn a_missing_token_or_a_broken_blueprint_stops_before_any_change() {
    let fake = RenderFake::start().await.expect("fake");
    let output = renderctl(&fake, &["apply"], false).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("RENDER_API_TOKEN"));
    let output = renderctl(&fake, &["deploy", "x", "--wait"], false).await;
    assert!(!output.status.success());

    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("render.yaml");
    std::fs::write(&broken, "services:\n  - type: web\n    plan: gigantic\n").expect("write");
    let path = broken.display().to_string();
    let output = renderctl(&fake, &["apply", "--file", &path], true).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not a valid Render Blueprint") && stderr.contains("services[0]"),
        "{stderr}"
    );
    assert!(fake.requests().is_empty(), "Render was not called");
}

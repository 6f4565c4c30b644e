//! The deploy monitor against the Render contract fake: each recognised static-site build
//! failure is fixed once and redeployed, an unrecognised one is only reported, and a fix that
//! does not help is not repeated.

mod common;

use std::time::Duration;

use common::{Options, REPO, Stack, start_with};
use renderctl::changes::Recorder;
use renderctl::monitor::Monitor;
use renderctl::{RenderConfig, Renderctl};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The dashboard as render.yaml declares it.
const ROOT: &str = "dashboard";
const BUILD: &str = "npm ci && npm run build";
const PUBLISH: &str = "dist";

fn app(stack: &Stack) -> Renderctl {
    let config = RenderConfig {
        render_api_token: Some(stack.fake.token().to_owned().into()),
        render_api_base_url: stack.fake.base_url().parse().expect("url"),
        render_owner_id: None,
        render_repo: Some(REPO.into()),
        render_api_timeout: Duration::from_secs(10),
        render_api_max_retries: 3,
        render_rate_limit_max_wait: Duration::from_secs(5),
        render_blueprint_path: common::product_blueprint(),
    };
    Renderctl::new(&config, Recorder::new(Some(stack.db.pool.clone()))).expect("app")
}

/// A dashboard site with the given settings and a first (failing or not) deploy finished.
async fn site(stack: &Stack, root: &str, build: &str, publish: &str) -> String {
    stack
        .fake
        .expect_static_site("autonoma-dashboard", ROOT, BUILD, PUBLISH);
    let id = stack.fake.seed_service(json!({
        "type": "static_site", "name": "autonoma-dashboard", "ownerId": stack.fake.owner_id(),
        "repo": REPO, "rootDir": root,
        "serviceDetails": { "buildCommand": build, "publishPath": publish },
    }));
    let deploy = deploy(stack, &id).await;
    stack.settle(&id, &deploy).await;
    id
}

async fn deploy(stack: &Stack, id: &str) -> String {
    let (status, body) = stack.post(&format!("/render/deploy/{id}"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["deploy"]["id"].as_str().expect("deploy id").to_owned()
}

async fn findings(stack: &Stack) -> Vec<Value> {
    let (status, body) = stack.get("/render/monitor").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().expect("findings").clone()
}

async fn latest_status(stack: &Stack, id: &str) -> String {
    let newest = stack.fake.deploys(id)[0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    stack.settle(id, &newest).await
}

#[tokio::test]
async fn a_missing_publish_directory_is_fixed_once_and_redeployed() {
    let stack = start_with(Options::default()).await;
    let id = site(&stack, ROOT, BUILD, "public").await;
    assert_eq!(stack.fake.deploys(&id)[0]["status"], "build_failed");
    let mut monitor = Monitor::new(
        app(&stack),
        vec!["autonoma-dashboard".into()],
        Duration::from_millis(50),
    );
    monitor.check("autonoma-dashboard").await.expect("check");

    let found = findings(&stack).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0]["failure"].as_str(), found[0]["action"].as_str()),
        (Some("missing_publish_directory"), Some("fixed"))
    );
    let service = stack.fake.service(&id).expect("site");
    assert_eq!(service["serviceDetails"]["publishPath"], PUBLISH);
    assert_eq!(stack.fake.deploys(&id).len(), 2, "redeployed");
    assert_eq!(latest_status(&stack, &id).await, "live", "the fix worked");

    let mutations = stack.fake.mutations().len();
    monitor.check("autonoma-dashboard").await.expect("check");
    monitor.check("autonoma-dashboard").await.expect("check");
    assert_eq!(
        stack.fake.mutations().len(),
        mutations,
        "a live deploy needs nothing"
    );
    assert_eq!(findings(&stack).await.len(), 1);
    let recorded = stack.recorded().await;
    let monitor_changes: Vec<&str> = recorded
        .iter()
        .filter(|(actor, ..)| actor == "monitor")
        .map(|(_, _, action, _)| action.as_str())
        .collect();
    assert_eq!(monitor_changes, ["update_service", "deploy"]);
    stack.assert_contract_kept();
}

#[tokio::test]
async fn an_empty_build_command_is_fixed_with_the_declared_one() {
    let stack = start_with(Options::default()).await;
    let id = site(&stack, "", "", PUBLISH).await;
    let mut monitor = Monitor::new(app(&stack), vec![id.clone()], Duration::from_millis(50));
    monitor.check(&id).await.expect("check");
    let found = findings(&stack).await;
    assert_eq!(
        (found[0]["failure"].as_str(), found[0]["action"].as_str()),
        (Some("empty_build_command"), Some("fixed")),
        "{found:?}"
    );
    let service = stack.fake.service(&id).expect("site");
    assert_eq!(
        (
            service["rootDir"].as_str(),
            service["serviceDetails"]["buildCommand"].as_str()
        ),
        (Some(ROOT), Some(BUILD))
    );
    assert_eq!(latest_status(&stack, &id).await, "live");
    stack.assert_contract_kept();
}

#[tokio::test]
async fn an_unrecognised_failure_is_only_reported() {
    let stack = start_with(Options::default()).await;
    let id = site(&stack, ROOT, BUILD, PUBLISH).await;
    stack.fake.fail_next_deploy(
        &id,
        vec![
            "npm ERR! code E404".into(),
            "npm ERR! 404 Not Found - left-pad".into(),
        ],
    );
    let failed = deploy(&stack, &id).await;
    assert_eq!(stack.settle(&id, &failed).await, "build_failed");
    let mutations = stack.fake.mutations().len();
    let mut monitor = Monitor::new(
        app(&stack),
        vec!["autonoma-dashboard".into()],
        Duration::from_millis(50),
    );
    monitor.check("autonoma-dashboard").await.expect("check");
    let found = findings(&stack).await;
    assert_eq!(
        (found[0]["failure"].as_str(), found[0]["action"].as_str()),
        (Some("unrecognised"), Some("reported")),
        "{found:?}"
    );
    assert!(
        found[0]["detail"]
            .as_str()
            .expect("detail")
            .contains("left-pad")
    );
    assert_eq!(
        stack.fake.mutations().len(),
        mutations,
        "nothing changed on Render"
    );
    stack.assert_contract_kept();
}

#[tokio::test]
async fn a_fix_that_does_not_help_is_not_repeated() {
    let stack = start_with(Options::default()).await;
    // A site whose working build is not what render.yaml declares: the standard fix fails.
    stack
        .fake
        .expect_static_site("autonoma-dashboard", ROOT, BUILD, "build");
    let id = stack.fake.seed_service(json!({
        "type": "static_site", "name": "autonoma-dashboard", "ownerId": stack.fake.owner_id(),
        "repo": REPO, "rootDir": ROOT, "serviceDetails": { "buildCommand": BUILD, "publishPath": "public" },
    }));
    let first = deploy(&stack, &id).await;
    assert_eq!(stack.settle(&id, &first).await, "build_failed");
    let mut monitor = Monitor::new(
        app(&stack),
        vec!["autonoma-dashboard".into()],
        Duration::from_millis(10),
    );
    monitor.check("autonoma-dashboard").await.expect("check");
    assert_eq!(
        latest_status(&stack, &id).await,
        "build_failed",
        "the fix did not help"
    );
    let mutations = stack.fake.mutations().len();
    for _ in 0..3 {
        monitor.check("autonoma-dashboard").await.expect("check");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        stack.fake.mutations().len(),
        mutations,
        "no second fix, no loop"
    );
    let found = findings(&stack).await;
    let actions: Vec<&str> = found.iter().filter_map(|f| f["action"].as_str()).collect();
    assert_eq!(actions, ["reported", "fixed"], "newest first: {found:?}");
    assert!(
        found[0]["detail"]
            .as_str()
            .expect("detail")
            .contains("failed again")
    );
    stack.assert_contract_kept();
}

#[tokio::test]
async fn the_service_runs_the_monitor_for_the_named_services() {
    let stack = start_with(Options {
        extra: &[
            ("RENDER_MONITOR_SERVICES", "autonoma-dashboard"),
            ("RENDER_MONITOR_INTERVAL", "100ms"),
        ],
        ..Options::default()
    })
    .await;
    let id = site(&stack, ROOT, BUILD, "public").await;
    for _ in 0..100 {
        if findings(&stack)
            .await
            .iter()
            .any(|f| f["action"] == "fixed")
        {
            assert_eq!(latest_status(&stack, &id).await, "live");
            stack.assert_contract_kept();
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the monitor did not fix the failed deploy: {:?}",
        findings(&stack).await
    );
}

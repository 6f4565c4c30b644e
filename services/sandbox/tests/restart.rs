//! A restarted sandbox finds its sessions again (dev server and preview included), ends the
//! ones whose containers vanished, and removes containers no session owns: nothing leaks.

mod common;

use std::collections::HashMap;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use common::{Env, container_exists, docker};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn sessions_survive_a_restart_and_nothing_leaks() {
    let env = Env::new(&[]).await;
    let service = env.start().await;
    let kept = service.create("static").await;
    let (status, dev) = service
        .post(
            &format!("/api/sessions/{kept}/dev/start"),
            json!({"cmd": "httpd -f -p 8080 -h /workspace", "port": 8080}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{dev}");
    service.preview_when_up(&kept, "/index.html").await;
    let lost = service.create("empty").await;
    let lost_container = service.state(&lost).await["container"]["id"]
        .as_str()
        .expect("container")
        .to_owned();
    let owner = service.state(&kept).await["container"]["id"]
        .as_str()
        .map(str::to_owned)
        .expect("container");
    service.stop().await;

    // While the service is down: one session's container disappears, and a container with
    // this store's label but no session appears (a create that crashed half-way).
    let docker = docker().await;
    docker
        .remove_container(
            &lost_container,
            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
        )
        .await
        .expect("removing a session's container");
    let labels = docker
        .inspect_container(
            &owner,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .expect("inspect")
        .config
        .and_then(|c| c.labels)
        .expect("labels");
    let owner_label = labels
        .get(sandbox::sandbox::OWNER_LABEL)
        .expect("owner label")
        .clone();
    let orphan = docker
        .create_container(
            Some(
                CreateContainerOptionsBuilder::new()
                    .name(&format!("autonoma-orphan-{}", uuid::Uuid::new_v4()))
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(autonoma_testkit::SANDBOX_TEST_IMAGE.to_owned()),
                cmd: Some(vec!["sleep".into(), "300".into()]),
                labels: Some(HashMap::from([(
                    sandbox::sandbox::OWNER_LABEL.to_owned(),
                    owner_label,
                )])),
                ..Default::default()
            },
        )
        .await
        .expect("creating an orphan")
        .id;

    let service = env.start().await;
    let state = service.state(&kept).await;
    assert_eq!(state["status"], "ready", "{state}");
    let page = service.preview_when_up(&kept, "/index.html").await;
    assert!(page.contains("Hello from the sandbox"), "{page}");
    let out = service.exec(&kept, "cat index.html | head -c 15").await;
    assert_eq!(out["stdout"], "<!doctype html>", "{out}");

    let state = service.state(&lost).await;
    assert_eq!(state["status"], "failed", "{state}");
    assert!(
        state["statusReason"]
            .as_str()
            .is_some_and(|r| r.contains("container was gone")),
        "{state}"
    );
    assert!(
        !env.workspaces().join(&lost).exists(),
        "the lost session's workspace was left behind"
    );
    let (status, body) = service.get(&format!("/api/sessions/{lost}/fs/list")).await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert!(
        !container_exists(&orphan).await,
        "the orphan container was left running"
    );

    assert_eq!(
        service.delete(&format!("/api/sessions/{kept}")).await,
        StatusCode::NO_CONTENT
    );
    assert!(!container_exists(&owner).await);
    assert!(!env.workspaces().join(&kept).exists());
}

#[tokio::test]
async fn without_an_engine_the_service_runs_unready_and_says_why() {
    let env = Env::new(&[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]).await;
    let service = env.start().await;
    let ready = service
        .http
        .get(service.url("/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = ready.json().await.expect("problem");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("container engine") && detail.contains("/nonexistent/docker.sock"),
        "{body}"
    );
    let (status, problem) = service.post("/api/sessions", json!({})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("engine-unreachable")),
        "{problem}"
    );
    // Nothing is left half-made: the failed session holds no slot and no directory.
    let state = service.get("/health").await;
    assert_eq!(state.0, StatusCode::OK);
}

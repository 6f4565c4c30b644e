//! renderctl's endpoints against the Render contract fake: each happy path, pagination,
//! rate limits, env merge/replace/clear, and clear errors that change nothing.

mod common;

use std::time::{Duration, Instant};

use autonoma_render_fake::DeployResponse;
use common::{Options, REPO, Stack, start, start_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn seed_site(stack: &Stack, name: &str) -> String {
    stack.fake.seed_service(json!({
        "type": "static_site", "name": name, "ownerId": stack.fake.owner_id(),
        "repo": REPO, "serviceDetails": { "buildCommand": "npm run build", "publishPath": "dist" },
    }))
}

fn seed_web(stack: &Stack, name: &str, env: &[(&str, &str)]) -> String {
    let env: Vec<Value> = env
        .iter()
        .map(|(key, value)| json!({ "key": key, "value": value }))
        .collect();
    stack.fake.seed_service(json!({
        "type": "web_service", "name": name, "ownerId": stack.fake.owner_id(), "repo": REPO,
        "envVars": env,
        "serviceDetails": { "runtime": "docker", "plan": "starter", "healthCheckPath": "/health" },
    }))
}

#[tokio::test]
async fn create_list_get_and_deploy_a_service() {
    let stack = start().await;
    let (status, created) = stack
        .post(
            "/render/services",
            json!({
                "name": "autonoma-echo", "healthCheckPath": "/health",
                "dockerfilePath": "./services/echo-agent/Dockerfile", "dockerContext": ".",
                "envVars": { "LOG_FORMAT": "json" },
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["service"]["id"].as_str().expect("id").to_owned();
    assert_eq!(created["service"]["type"], "web_service");
    assert!(created["deployId"].is_string(), "{created}");
    let on_render = stack.fake.service(&id).expect("created on Render");
    assert_eq!(on_render["repo"], REPO);
    assert_eq!(
        on_render["serviceDetails"]["envSpecificDetails"]["dockerfilePath"],
        "./services/echo-agent/Dockerfile"
    );
    assert_eq!(
        stack
            .fake
            .env_vars(&id)
            .get("LOG_FORMAT")
            .map(String::as_str),
        Some("json")
    );

    seed_site(&stack, "autonoma-dashboard");
    let (status, listed) = stack.get("/render/services?type=web_service").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let names: Vec<&str> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["autonoma-echo"]);
    let (status, listed) = stack.get("/render/services?name=autonoma-dashboard").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["items"][0]["type"], "static_site", "{listed}");
    let (status, one) = stack.get(&format!("/render/services/{id}")).await;
    assert_eq!(
        (status, one["name"].as_str()),
        (StatusCode::OK, Some("autonoma-echo"))
    );

    let (status, deployed) = stack.post(&format!("/render/deploy/{id}"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{deployed}");
    let deploy_id = deployed["deploy"]["id"]
        .as_str()
        .expect("deploy id")
        .to_owned();
    assert_eq!(stack.settle(&id, &deploy_id).await, "live");
    let (status, deploys) = stack.get(&format!("/render/services/{id}/deploys")).await;
    assert_eq!(status, StatusCode::OK);
    let items = deploys["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "the first deploy and ours: {deploys}");
    assert_eq!(items[0]["id"], deploy_id.as_str(), "newest first");
    let (status, one) = stack
        .get(&format!("/render/services/{id}/deploys/{deploy_id}"))
        .await;
    assert_eq!(
        (status, one["status"].as_str()),
        (StatusCode::OK, Some("live"))
    );

    let recorded = stack.recorded().await;
    let actions: Vec<(&str, &str, &str)> = recorded
        .iter()
        .map(|(a, o, act, _)| (a.as_str(), o.as_str(), act.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("operator", "api", "create_service"),
            ("operator", "api", "deploy")
        ]
    );
    let (status, changes) = stack.get("/render/changes").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(changes["items"][0]["action"], "deploy");
    assert_eq!(
        changes["items"][1]["after"]["envKeys"],
        json!(["LOG_FORMAT"])
    );
    assert!(
        !changes.to_string().contains("\"json\""),
        "env values are never recorded: {changes}"
    );
    stack.assert_contract_kept();
}

#[tokio::test]
async fn a_queued_deploy_answers_202() {
    let stack = start().await;
    let id = seed_web(&stack, "queued", &[]);
    stack.fake.set_deploy_response(DeployResponse::Accepted);
    let (status, body) = stack
        .send(Method::POST, &format!("/render/deploy/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["serviceId"], id.as_str());
    assert_eq!(stack.fake.deploys(&id).len(), 1, "Render made the deploy");
    assert_eq!(body["deploy"]["id"], stack.fake.deploys(&id)[0]["id"]);
    stack.assert_contract_kept();
}

#[tokio::test]
async fn pages_follow_renders_cursors_without_gaps_or_repeats() {
    let stack = start().await;
    let mut expected: Vec<String> = (0..7).map(|i| format!("site-{i}")).collect();
    for name in &expected {
        seed_site(&stack, name);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/render/services?limit=3&cursor={c}"),
            None => "/render/services?limit=3".to_owned(),
        };
        let (status, page) = stack.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        seen.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|s| s["name"].as_str().expect("name").to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert!(pages >= 3, "{pages} pages");
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);

    // Env vars are read across Render's pages too (100 a page).
    let vars: Vec<(String, String)> = (0..150)
        .map(|i| (format!("KEY_{i:03}"), format!("v{i}")))
        .collect();
    let refs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let id = seed_web(&stack, "many-vars", &refs);
    let (status, out) = stack
        .patch(
            &format!("/render/services/{id}/env"),
            json!({ "envVars": { "KEY_149": "v149", "NEW": "x" } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["unchanged"], 1, "KEY_149 was on the second page: {out}");
    assert_eq!(out["added"], json!(["NEW"]));
    assert_eq!(stack.fake.env_vars(&id).len(), 151);
    let (status, problem) = stack.get("/render/services?limit=500").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "limit");
    stack.assert_contract_kept();
}

#[tokio::test]
async fn a_429_is_waited_out_and_a_long_one_is_not() {
    let stack = start().await;
    seed_site(&stack, "limited");
    stack.fake.rate_limit_next(1, Duration::from_secs(1));
    let started = Instant::now();
    let (status, body) = stack.get("/render/services").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    let statuses: Vec<u16> = stack.fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200], "one retry, no storm");

    // Longer than RENDER_RATE_LIMIT_MAX_WAIT (5s): renderctl gives up at once with 503.
    stack.fake.rate_limit_next(1, Duration::from_secs(60));
    let response = stack
        .http
        .get(stack.url("/render/services"))
        .basic_auth(common::USER, Some(common::PASS))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("retry-after").is_some());
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(
        problem["type"], "urn:autonoma:problem:render-rate-limited",
        "{problem}"
    );
    assert_eq!(stack.fake.requests().len(), 3);
    stack.assert_contract_kept();
}

#[tokio::test]
async fn env_merge_keeps_other_keys_replace_removes_them_clear_empties() {
    let stack = start().await;
    let id = seed_web(
        &stack,
        "env",
        &[("A", "1"), ("B", "2"), ("SECRET", "s3cr3t-value")],
    );
    let path = format!("/render/services/{id}/env");
    let (status, out) = stack
        .patch(
            &path,
            json!({ "envVars": { "A": "10", "C": "3" }, "remove": ["SECRET"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(
        (
            out["added"].clone(),
            out["changed"].clone(),
            out["removed"].clone()
        ),
        (json!(["C"]), json!(["A"]), json!(["SECRET"]))
    );
    let env = stack.fake.env_vars(&id);
    assert_eq!(
        env.iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [("A", "10"), ("B", "2"), ("C", "3")]
    );
    assert!(
        out["deploy"].is_null() && stack.fake.deploys(&id).is_empty(),
        "no deploy unless asked"
    );

    let (status, out) = stack
        .patch(
            &path,
            json!({ "mode": "replace", "envVars": { "D": "4" }, "deploy": true }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["removed"], json!(["A", "B", "C"]));
    assert_eq!(
        stack.fake.env_vars(&id).into_iter().collect::<Vec<_>>(),
        [("D".to_owned(), "4".to_owned())]
    );
    assert!(
        out["deploy"]["id"].is_string(),
        "env changes apply on deploy: {out}"
    );
    assert_eq!(stack.fake.deploys(&id).len(), 1);

    let (status, out) = stack.patch(&path, json!({ "mode": "clear" })).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(stack.fake.env_vars(&id).is_empty());
    assert!(
        !stack
            .get("/render/changes")
            .await
            .1
            .to_string()
            .contains("s3cr3t-value")
    );

    let (status, problem) = stack
        .patch(
            &path,
            json!({ "mode": "clear", "envVars": { "X": "1" }, "remove": ["Y"] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"/envVars") && fields.contains(&"/remove/0"),
        "{problem}"
    );
    let (status, problem) = stack
        .patch(&path, json!({ "envVars": { "1BAD": "x" } }))
        .await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("/envVars/1BAD"))
    );
    stack.assert_contract_kept();
}

#[tokio::test]
async fn unknown_ids_and_bad_input_are_clear_errors_that_change_nothing() {
    let stack = start().await;
    let (status, problem) = stack
        .patch(
            "/render/services/srv-doesnotexist0000000/env",
            json!({ "envVars": { "A": "1" } }),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert_eq!(problem["type"], "urn:autonoma:problem:render-not-found");
    assert_eq!(problem["render"]["status"], 404);
    assert!(
        problem["render"]["message"].is_string(),
        "Render's message is carried: {problem}"
    );
    let (status, _) = stack
        .post("/render/deploy/srv-doesnotexist0000000", json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = stack
        .get("/render/services/srv-doesnotexist0000000/deploys")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, problem) = stack
        .post(
            "/render/services",
            json!({ "name": "", "type": "static_site", "plan": "starter" }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, ["/name", "/plan"], "{problem}");
    let (status, problem) = stack
        .post("/render/services", json!({ "name": "x", "colour": "red" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");

    // A name Render already has: Render's 409 comes back as ours.
    seed_site(&stack, "taken");
    let (status, problem) = stack
        .post(
            "/render/services",
            json!({ "name": "taken", "type": "static_site" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(problem["render"]["message"].is_string());

    let wrong = stack
        .http
        .get(stack.url("/render/services"))
        .basic_auth(common::USER, Some("wrong-password"))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let none = stack
        .http
        .post(stack.url("/render/deploy/srv-x"))
        .send()
        .await
        .expect("request");
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);

    assert!(
        stack.fake.mutations().is_empty(),
        "nothing changed on Render: {:?}",
        stack.fake.mutations()
    );
    let recorded = stack.recorded().await;
    assert!(
        recorded.iter().all(|(_, _, _, ok)| !ok),
        "failed attempts are recorded as failed: {recorded:?}"
    );
    stack.assert_contract_kept();
}

#[tokio::test]
async fn without_a_token_every_render_endpoint_says_so_and_calls_nothing() {
    let stack = start_with(Options {
        token: false,
        ..Options::default()
    })
    .await;
    let calls: [(Method, &str, Option<Value>); 6] = [
        (Method::GET, "/render/services", None),
        (
            Method::POST,
            "/render/services",
            Some(json!({ "name": "x" })),
        ),
        (
            Method::PATCH,
            "/render/services/srv-x/env",
            Some(json!({ "envVars": { "A": "1" } })),
        ),
        (Method::POST, "/render/deploy/srv-x", None),
        (Method::GET, "/render/services/srv-x/deploys", None),
        (
            Method::POST,
            "/render/blueprint/apply",
            Some(json!({ "dryRun": true })),
        ),
    ];
    for (method, path, body) in calls {
        let (status, problem) = stack.send(method.clone(), path, body).await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {path}: {problem}"
        );
        assert_eq!(problem["type"], "urn:autonoma:problem:render-token-missing");
        assert!(
            problem["detail"]
                .as_str()
                .expect("detail")
                .contains("RENDER_API_TOKEN")
        );
    }
    let (status, ready) = stack.get("/health/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert!(ready.to_string().contains("RENDER_API_TOKEN"), "{ready}");
    assert!(
        stack.fake.requests().is_empty(),
        "no request reached Render"
    );
}

#[tokio::test]
async fn an_exhausted_rate_limit_holds_requests_back_until_it_resets() {
    let stack = start().await;
    stack.fake.set_rate_limit(2);
    for _ in 0..2 {
        let (status, body) = stack.get("/render/services").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // `Ratelimit-Remaining: 0` came back: the next call waits for `Ratelimit-Reset` (at least
    // a second, at most RENDER_RATE_LIMIT_MAX_WAIT) instead of spending a request on a 429.
    let started = Instant::now();
    let (status, _) = stack.get("/render/services").await;
    assert!(started.elapsed() >= Duration::from_secs(1), "held back");
    assert!(
        status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
        "{status}"
    );
    let statuses: Vec<u16> = stack.fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses.len(), 3, "no request storm: {statuses:?}");
    assert_eq!(&statuses[..2], [200, 200]);
    stack.assert_contract_kept();
}

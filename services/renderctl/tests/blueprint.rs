//! `POST /render/blueprint/apply` against the Render contract fake: the dry run lists exactly
//! the differences, apply carries them out, and a second dry run is empty.

mod common;

use common::{Options, start_with};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SMALL: &str = r#"
envVarGroups:
  - name: shared
    envVars:
      - key: INTERNAL_API_KEYS
        generateValue: true
      - key: LOG_FORMAT
        value: json
databases:
  - name: db
    plan: basic-256mb
    postgresMajorVersion: "16"
services:
  - type: web
    name: api
    runtime: docker
    plan: starter
    dockerfilePath: ./Dockerfile
    healthCheckPath: /health
    envVars:
      - fromGroup: shared
      - key: DATABASE_URL
        fromDatabase: { name: db, property: connectionString }
      - key: WORKER_URL
        fromService: { type: web, name: worker, property: hostport }
      - key: MODE
        value: production
      - key: TOKEN
        generateValue: true
      - key: BY_HAND
        sync: false
  - type: web
    name: worker
    runtime: docker
    healthCheckPath: /health
  - type: web
    name: site
    runtime: static
    rootDir: dashboard
    buildCommand: npm ci && npm run build
    staticPublishPath: dist
"#;

fn actions(plan: &Value) -> Vec<(String, String)> {
    plan["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|step| {
            let target = step["name"].as_str().map(str::to_owned).unwrap_or_else(|| {
                format!(
                    "{} → {}",
                    step["group"].as_str().unwrap_or_default(),
                    step["service"].as_str().unwrap_or_default()
                )
            });
            (step["action"].as_str().expect("action").to_owned(), target)
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[tokio::test]
async fn dry_run_lists_exactly_the_differences_and_apply_converges() {
    let stack = start_with(Options {
        blueprint: Some(SMALL),
        ..Options::default()
    })
    .await;
    let (status, dry) = stack
        .post("/render/blueprint/apply", json!({ "dryRun": true }))
        .await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(
        actions(&dry["plan"]),
        pairs(&[
            ("createDatabase", "db"),
            ("createEnvGroup", "shared"),
            ("createService", "api"),
            ("createService", "worker"),
            ("createService", "site"),
            ("linkEnvGroup", "shared → api"),
        ])
    );
    let api = &dry["plan"]["steps"][2];
    let env: Vec<(&str, &str, &str)> = api["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap_or_default(),
                e["change"].as_str().unwrap_or_default(),
                e["source"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        env,
        [
            ("DATABASE_URL", "add", "fromDatabase db.connectionString"),
            ("MODE", "add", "value"),
            ("TOKEN", "add", "generateValue"),
            ("WORKER_URL", "add", "fromService worker.hostport"),
        ]
    );
    assert_eq!(api["settings"]["plan"], "starter");
    assert_eq!(dry["plan"]["steps"][4]["settings"]["publishPath"], "dist");
    assert!(
        stack.fake.mutations().is_empty(),
        "a dry run changes nothing"
    );

    let (status, applied) = stack
        .post("/render/blueprint/apply", json!({ "dryRun": false }))
        .await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(applied["remaining"]["steps"], json!([]), "{applied}");
    let api_id = stack.fake.service_by_name("api").expect("api")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let worker = stack.fake.service_by_name("worker").expect("worker");
    let env = stack.fake.env_vars(&api_id);
    assert_eq!(env["MODE"], "production");
    assert_eq!(
        env["WORKER_URL"],
        format!("{}:10000", worker["slug"].as_str().expect("slug"))
    );
    assert!(env["DATABASE_URL"].starts_with("postgres"), "{env:?}");
    assert!(env["TOKEN"].len() >= 16, "generated");
    assert!(
        !env.contains_key("BY_HAND"),
        "sync: false is left to people"
    );
    let group = stack.fake.env_group_by_name("shared").expect("group");
    assert!(
        group["serviceLinks"].to_string().contains(&api_id),
        "{group}"
    );
    let site = stack.fake.service_by_name("site").expect("site");
    assert_eq!(site["rootDir"], "dashboard");
    assert_eq!(
        site["serviceDetails"]["buildCommand"],
        "npm ci && npm run build"
    );

    let (status, again) = stack
        .post("/render/blueprint/apply", json!({ "dryRun": true }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        again["plan"]["steps"],
        json!([]),
        "applying twice changes nothing: {again}"
    );

    // Drift on Render: a changed value, a stray key, a hand-set secret, a changed setting.
    stack.fake.set_env_var(&api_id, "MODE", "debug");
    stack.fake.set_env_var(&api_id, "STRAY", "left-over");
    stack
        .fake
        .set_env_var(&api_id, "BY_HAND", "typed-in-the-dashboard");
    stack
        .fake
        .patch_service(&api_id, json!({ "serviceDetails": { "plan": "standard" } }));
    let mutations_before = stack.fake.mutations().len();
    let (_, drift) = stack
        .post("/render/blueprint/apply", json!({ "dryRun": true }))
        .await;
    assert_eq!(
        actions(&drift["plan"]),
        pairs(&[
            ("updateService", "api"),
            ("updateEnv", "api"),
            ("deploy", "api")
        ]),
        "{drift}"
    );
    assert_eq!(
        drift["plan"]["steps"][0]["fields"],
        json!([{ "field": "serviceDetails.plan", "from": "standard", "to": "starter" }])
    );
    let env_changes: Vec<(&str, &str)> = drift["plan"]["steps"][1]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap_or_default(),
                e["change"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(env_changes, [("MODE", "change"), ("STRAY", "remove")]);
    let shown = drift.to_string();
    for secret in [
        "debug",
        "left-over",
        "typed-in-the-dashboard",
        env["TOKEN"].as_str(),
        env["DATABASE_URL"].as_str(),
    ] {
        assert!(
            !shown.contains(secret),
            "the plan shows no value ({secret}): {shown}"
        );
    }
    assert_eq!(stack.fake.mutations().len(), mutations_before);

    let (status, applied) = stack
        .post("/render/blueprint/apply", json!({ "dryRun": false }))
        .await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    let env = stack.fake.env_vars(&api_id);
    assert_eq!(
        (
            env["MODE"].as_str(),
            env.get("STRAY"),
            env["BY_HAND"].as_str()
        ),
        ("production", None, "typed-in-the-dashboard")
    );
    let (_, again) = stack
        .post("/render/blueprint/apply", json!({ "dryRun": true }))
        .await;
    assert_eq!(again["plan"]["steps"], json!([]), "{again}");

    let recorded = stack.recorded().await;
    assert!(
        recorded
            .iter()
            .all(|(actor, origin, _, ok)| actor == "operator" && origin == "blueprint" && *ok),
        "{recorded:?}"
    );
    assert!(
        recorded
            .iter()
            .any(|(_, _, action, _)| action == "create_service")
    );
    let (_, changes) = stack.get("/render/changes?limit=200").await;
    for secret in [env["TOKEN"].as_str(), env["DATABASE_URL"].as_str()] {
        assert!(
            !changes.to_string().contains(secret),
            "records show no value"
        );
    }
    stack.assert_contract_kept();
}

#[tokio::test]
async fn the_products_render_yaml_applies_and_converges() {
    let stack = start_with(Options::default()).await;
    let (status, applied) = stack
        .post("/render/blueprint/apply", json!({ "dryRun": false }))
        .await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    assert_eq!(applied["remaining"]["steps"], json!([]), "{applied}");
    let orchestrator = stack
        .fake
        .service_by_name("autonoma-orchestrator")
        .expect("orchestrator");
    let logging = stack
        .fake
        .service_by_name("autonoma-logging")
        .expect("logging");
    let env = stack
        .fake
        .env_vars(orchestrator["id"].as_str().expect("id"));
    assert_eq!(
        env["LOGGING_URL"],
        format!("{}:10000", logging["slug"].as_str().expect("slug"))
    );
    assert!(stack.fake.postgres_by_name("autonoma-db").is_some());
    let group = stack
        .fake
        .env_group_by_name("autonoma-shared")
        .expect("group");
    assert_eq!(
        group["serviceLinks"].as_array().expect("links").len(),
        6,
        "{group}"
    );
    let dashboard = stack
        .fake
        .service_by_name("autonoma-dashboard")
        .expect("dashboard");
    assert_eq!(dashboard["type"], "static_site");
    let (_, again) = stack
        .post("/render/blueprint/apply", json!({ "dryRun": true }))
        .await;
    assert_eq!(again["plan"]["steps"], json!([]), "{again}");
    stack.assert_contract_kept();
}

#[tokio::test]
async fn a_malformed_render_yaml_is_refused_with_every_problem_and_nothing_changes() {
    let broken = "services:\n  - type: web\n    name: api\n    runtime: docker\n    plan: gigantic\n    envVars:\n      - key: DATABASE_URL\n        fromDatabase: { name: nowhere, property: connectionString }\n";
    let stack = start_with(Options {
        blueprint: Some(broken),
        ..Options::default()
    })
    .await;
    for dry_run in [true, false] {
        let (status, problem) = stack
            .post("/render/blueprint/apply", json!({ "dryRun": dry_run }))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["type"], "urn:autonoma:problem:invalid-blueprint");
        assert!(
            problem["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .any(|e| e["field"]
                    .as_str()
                    .is_some_and(|f| f.starts_with("services[0]"))),
            "{problem}"
        );
    }
    let (status, problem) = stack.post("/render/blueprint/apply", json!({})).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "dryRun is required: {problem}"
    );
    assert!(stack.fake.requests().is_empty(), "Render was not called");

    let yaml_error = start_with(Options {
        blueprint: Some("services: [\n  - name: a\n"),
        ..Options::default()
    })
    .await;
    let (status, problem) = yaml_error
        .post("/render/blueprint/apply", json!({ "dryRun": true }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        problem["errors"][0]["field"]
            .as_str()
            .expect("field")
            .starts_with("line "),
        "{problem}"
    );
    assert!(yaml_error.fake.requests().is_empty());
}

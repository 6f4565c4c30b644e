//! The fake served over HTTP, exercised with a real client.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use autonoma_render_fake::{DeployResponse, RenderFake};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    raw: String,
    body: Value,
}

impl Api {
    fn new(fake: &RenderFake) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: fake.base_url(),
            token: fake.token().to_owned(),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the fake answers");
        let status = response.status();
        let headers = response.headers().clone();
        let raw = response.text().await.expect("a readable body");
        let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            raw,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(Method::PUT, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, None).await
    }

    /// Polls a deploy until it reaches a final status; returns it and every status seen.
    async fn settle(&self, service: &str, deploy: &str) -> (Value, Vec<String>) {
        let mut seen: Vec<String> = Vec::new();
        let started = Instant::now();
        loop {
            let answer = self
                .get(&format!("/services/{service}/deploys/{deploy}"))
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.raw);
            let status = answer.body["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            if ["live", "build_failed", "deactivated"].contains(&status.as_str()) {
                return (answer.body, seen);
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "deploy never settled: {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn start() -> (RenderFake, Api) {
    let fake = RenderFake::start().await.expect("the fake starts");
    fake.set_step(Duration::from_millis(25));
    let api = Api::new(&fake);
    (fake, api)
}

fn assert_clean(fake: &RenderFake) {
    let violations = fake.violations();
    assert!(
        violations.is_empty(),
        "contract violations: {violations:#?}"
    );
}

fn static_site(fake: &RenderFake, name: &str, root: &str, command: &str, publish: &str) -> Value {
    json!({
        "type": "static_site", "name": name, "ownerId": fake.owner_id(),
        "repo": "https://github.com/acme/site", "branch": "main", "rootDir": root,
        "serviceDetails": { "buildCommand": command, "publishPath": publish },
    })
}

fn web_service(fake: &RenderFake, name: &str) -> Value {
    json!({
        "type": "web_service", "name": name, "ownerId": fake.owner_id(),
        "repo": "https://github.com/acme/api",
        "serviceDetails": {
            "runtime": "docker", "plan": "starter", "region": "frankfurt", "healthCheckPath": "/healthz",
            "envSpecificDetails": { "dockerfilePath": "./Dockerfile", "dockerContext": "." },
        },
    })
}

/// The build log lines of a deploy, oldest first, read through `/logs`.
async fn build_log(fake: &RenderFake, api: &Api, service: &str, deploy: &str) -> Vec<String> {
    let path = format!(
        "/logs?ownerId={}&resource={service}&type=build&instance={deploy}&direction=forward&limit=100",
        fake.owner_id()
    );
    let answer = api.get(&path).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.raw);
    let logs = answer.body["logs"].as_array().expect("logs");
    for log in logs {
        let labels = log["labels"].as_array().expect("labels");
        let label = |name: &str| {
            labels
                .iter()
                .find(|l| l["name"] == name)
                .and_then(|l| l["value"].as_str())
                .map(str::to_owned)
        };
        assert_eq!(label("resource").as_deref(), Some(service));
        assert_eq!(label("instance").as_deref(), Some(deploy));
        assert_eq!(label("type").as_deref(), Some("build"));
    }
    logs.iter()
        .map(|l| l["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn requests_without_the_token_are_unauthorized() {
    let (fake, api) = start().await;
    let url = format!("{}/services", fake.base_url());
    let anonymous = api.http.get(&url).send().await.expect("answers");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body: Value = anonymous.json().await.expect("json");
    assert_eq!(body["id"], "unauthorized");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let wrong = api
        .http
        .get(&url)
        .bearer_auth("rnd_wrong")
        .send()
        .await
        .expect("answers");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.get("/services").await.status, StatusCode::OK);
    assert_clean(&fake);
}

#[tokio::test]
async fn owners_list_the_one_workspace() {
    let (fake, api) = start().await;
    let answer = api.get("/owners?limit=10").await;
    assert_eq!(answer.status, StatusCode::OK);
    let owners = answer.body.as_array().expect("a list");
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0]["owner"]["id"], fake.owner_id());
    assert!(fake.owner_id().starts_with("tea-"));
    let after = api
        .get(&format!(
            "/owners?cursor={}",
            owners[0]["cursor"].as_str().unwrap_or_default()
        ))
        .await;
    assert_eq!(after.body, json!([]));
    assert!(fake.mutations().is_empty());
    assert_clean(&fake);
}

#[tokio::test]
async fn a_service_is_created_read_and_patched() {
    let (fake, api) = start().await;
    let created = api
        .post(
            "/services",
            static_site(&fake, "docs", "site", "npm run build", "dist"),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let service = &created.body["service"];
    let id = service["id"].as_str().expect("an id").to_owned();
    assert!(id.starts_with("srv-") && id.len() == 24, "{id}");
    assert!(
        created.body["deployId"]
            .as_str()
            .is_some_and(|d| d.starts_with("dep-"))
    );
    assert_eq!(service["serviceDetails"]["publishPath"], "dist");
    assert_eq!(service["suspended"], "not_suspended");
    assert_eq!(fake.deploys(&id).len(), 1);

    let read = api.get(&format!("/services/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(&read.body, service);

    let patched = api
        .patch(
            &format!("/services/{id}"),
            json!({ "rootDir": "docs", "serviceDetails": { "publishPath": "build" } }),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.raw);
    assert_eq!(patched.body["rootDir"], "docs");
    assert_eq!(patched.body["serviceDetails"]["publishPath"], "build");
    assert_eq!(
        patched.body["serviceDetails"]["buildCommand"],
        "npm run build"
    );
    assert_eq!(fake.service(&id).expect("stored")["rootDir"], "docs");
    assert_eq!(
        fake.service_by_name("docs").expect("stored")["id"],
        id.as_str()
    );

    let web = api.post("/services", web_service(&fake, "api")).await;
    assert_eq!(web.status, StatusCode::CREATED, "{}", web.raw);
    assert_eq!(
        web.body["service"]["serviceDetails"]["envSpecificDetails"]["dockerfilePath"],
        "./Dockerfile"
    );

    let duplicate = api
        .post("/services", static_site(&fake, "docs", "", "make", "out"))
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    let mut elsewhere = static_site(&fake, "other", "", "make", "out");
    elsewhere["ownerId"] = json!("tea-someoneelse");
    assert_eq!(
        api.post("/services", elsewhere).await.status,
        StatusCode::BAD_REQUEST
    );

    let missing = api.get("/services/srv-doesnotexist").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["id"], "not_found");
    assert!(missing.body["message"].is_string());
    let missing = api
        .patch("/services/srv-doesnotexist", json!({ "name": "x" }))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let mutations: Vec<(String, u16)> = fake
        .mutations()
        .into_iter()
        .map(|r| (r.method, r.status))
        .collect();
    let expected = [("POST", 201), ("PATCH", 200), ("POST", 201)].map(|(m, s)| (m.to_owned(), s));
    assert_eq!(mutations, expected);
    assert_clean(&fake);
}

#[tokio::test]
async fn services_paginate_and_filter() {
    let (fake, api) = start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(fake.seed_service(static_site(&fake, &format!("site-{i}"), "", "make", "out")));
    }
    ids.push(fake.seed_service(web_service(&fake, "api")));

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/services?limit=2&cursor={c}"),
            None => "/services?limit=2".to_owned(),
        };
        let page = api.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.raw);
        let items = page.body.as_array().expect("a list").clone();
        if items.is_empty() {
            break;
        }
        assert!(items.len() <= 2);
        for item in &items {
            seen.push(item["service"]["id"].as_str().expect("id").to_owned());
        }
        cursor = items
            .last()
            .and_then(|i| i["cursor"].as_str())
            .map(str::to_owned);
    }
    assert_eq!(seen, ids, "every service exactly once, in order");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), ids.len());

    let names = api.get("/services?name=site-1,site-3").await;
    let found: Vec<&str> = names
        .body
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["service"]["name"].as_str())
        .collect();
    assert_eq!(found, ["site-1", "site-3"]);
    let web = api.get("/services?type=web_service").await;
    assert_eq!(web.body.as_array().expect("list").len(), 1);
    assert_eq!(web.body[0]["service"]["name"], "api");
    let both = api
        .get("/services?type=web_service,static_site&limit=100")
        .await;
    assert_eq!(both.body.as_array().expect("list").len(), 6);
    let none = api.get("/services?type=cron_job").await;
    assert_eq!(none.body, json!([]));
    assert!(fake.mutations().is_empty(), "seeding is not a mutation");
    assert_clean(&fake);
}

#[tokio::test]
async fn env_vars_are_replaced_upserted_and_deleted() {
    let (fake, api) = start().await;
    let mut body = web_service(&fake, "api");
    body["envVars"] =
        json!([{ "key": "A", "value": "1" }, { "key": "SECRET", "generateValue": true }]);
    let id = fake.seed_service(body);
    let vars = fake.env_vars(&id);
    assert_eq!(vars["A"], "1");
    assert_eq!(vars["SECRET"].len(), 32);

    let path = format!("/services/{id}/env-vars");
    let replaced = api
        .put(&path, json!([{ "key": "B", "value": "2" }, { "key": "C", "value": "3" }, { "key": "D", "value": "4" }]))
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.raw);
    assert_eq!(replaced.body.as_array().expect("list").len(), 3);
    assert_eq!(
        fake.env_vars(&id).keys().collect::<Vec<_>>(),
        ["B", "C", "D"]
    );

    let first = api.get(&format!("{path}?limit=2")).await;
    let keys: Vec<&str> = first
        .body
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["envVar"]["key"].as_str())
        .collect();
    assert_eq!(keys, ["B", "C"]);
    let rest = api.get(&format!("{path}?limit=2&cursor=C")).await;
    assert_eq!(rest.body[0]["envVar"], json!({ "key": "D", "value": "4" }));

    let upserted = api
        .put(&format!("{path}/C"), json!({ "value": "33" }))
        .await;
    assert_eq!(upserted.status, StatusCode::OK);
    assert_eq!(upserted.body, json!({ "key": "C", "value": "33" }));
    let generated = api
        .put(&format!("{path}/E"), json!({ "generateValue": true }))
        .await;
    assert_eq!(generated.body["value"].as_str().map(str::len), Some(32));
    assert_eq!(api.get(&format!("{path}/C")).await.body["value"], "33");

    let deleted = api.delete(&format!("{path}/B")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert!(deleted.raw.is_empty());
    assert_eq!(
        api.get(&format!("{path}/B")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.delete(&format!("{path}/B")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        fake.env_vars(&id).keys().collect::<Vec<_>>(),
        ["C", "D", "E"]
    );
    assert_eq!(
        api.get("/services/srv-nope/env-vars").await.status,
        StatusCode::NOT_FOUND
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn deploys_go_live_and_replace_the_previous_one() {
    let (fake, api) = start().await;
    let id = fake.seed_service(web_service(&fake, "api"));
    let first = api
        .post(
            &format!("/services/{id}/deploys"),
            json!({ "clearCache": "do_not_clear" }),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.raw);
    assert_eq!(first.body["status"], "created");
    assert_eq!(first.body["trigger"], "api");
    let first_id = first.body["id"].as_str().expect("id").to_owned();
    let (deploy, seen) = api.settle(&id, &first_id).await;
    assert_eq!(deploy["status"], "live");
    assert!(deploy["finishedAt"].is_string());
    assert_eq!(seen.last().map(String::as_str), Some("live"));
    assert!(
        seen.iter().all(
            |s| ["created", "build_in_progress", "update_in_progress", "live"]
                .contains(&s.as_str())
        ),
        "{seen:?}"
    );

    let second = api
        .post(&format!("/services/{id}/deploys"), json!({}))
        .await;
    let second_id = second.body["id"].as_str().expect("id").to_owned();
    let (deploy, _) = api.settle(&id, &second_id).await;
    assert_eq!(deploy["status"], "live");
    let old = api.get(&format!("/services/{id}/deploys/{first_id}")).await;
    assert_eq!(old.body["status"], "deactivated");

    let listed = api.get(&format!("/services/{id}/deploys")).await;
    let order: Vec<&str> = listed
        .body
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["deploy"]["id"].as_str())
        .collect();
    assert_eq!(
        order,
        [second_id.as_str(), first_id.as_str()],
        "newest first"
    );
    let live = api
        .get(&format!("/services/{id}/deploys?status=live"))
        .await;
    assert_eq!(live.body.as_array().expect("list").len(), 1);
    let page = api
        .get(&format!(
            "/services/{id}/deploys?limit=1&cursor={second_id}"
        ))
        .await;
    assert_eq!(page.body[0]["deploy"]["id"], first_id.as_str());

    let log = build_log(&fake, &api, &id, &second_id).await;
    assert_eq!(
        log.last().map(String::as_str),
        Some("==> Your service is live 🎉")
    );
    assert_eq!(
        api.get(&format!("/services/{id}/deploys/dep-nope"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn a_failing_deploy_keeps_its_build_log() {
    let (fake, api) = start().await;
    let id = fake.seed_service(web_service(&fake, "worker"));
    let lines = vec![
        "==> Cloning".to_owned(),
        "error: linker `cc` not found".to_owned(),
        "==> Build failed 😞".to_owned(),
    ];
    fake.fail_next_deploy(&id, lines.clone());
    let started = api
        .post(&format!("/services/{id}/deploys"), json!({}))
        .await;
    let deploy_id = started.body["id"].as_str().expect("id").to_owned();
    let (deploy, seen) = api.settle(&id, &deploy_id).await;
    assert_eq!(deploy["status"], "build_failed");
    assert!(!seen.contains(&"update_in_progress".to_owned()));
    assert_eq!(build_log(&fake, &api, &id, &deploy_id).await, lines);

    // Backward (the default) pages newest first and says where the next page ends.
    let path = format!("/logs?ownerId={}&resource={id}&limit=2", fake.owner_id());
    let newest = api.get(&path).await;
    assert_eq!(newest.body["hasMore"], true);
    let messages: Vec<&str> = newest.body["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert_eq!(messages, [lines[2].as_str(), lines[1].as_str()]);
    let next_end = newest.body["nextEndTime"].as_str().expect("time");
    let next_start = newest.body["nextStartTime"].as_str().expect("time");
    let older = api
        .get(&format!("{path}&startTime={next_start}&endTime={next_end}"))
        .await;
    assert_eq!(older.status, StatusCode::OK, "{}", older.raw);
    assert_eq!(older.body["hasMore"], false);
    assert_eq!(older.body["logs"][0]["message"], lines[0].as_str());

    // The next deploy is not affected.
    let again = api
        .post(&format!("/services/{id}/deploys"), json!({}))
        .await;
    let (deploy, _) = api
        .settle(&id, again.body["id"].as_str().expect("id"))
        .await;
    assert_eq!(deploy["status"], "live");
    assert_clean(&fake);
}

#[tokio::test]
async fn accepted_deploys_have_no_body_but_are_listed() {
    let (fake, api) = start().await;
    let id = fake.seed_service(web_service(&fake, "api"));
    fake.set_deploy_response(DeployResponse::Accepted);
    let answer = api
        .post(
            &format!("/services/{id}/deploys"),
            json!({ "clearCache": "clear" }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert!(answer.raw.is_empty());
    let listed = api.get(&format!("/services/{id}/deploys")).await;
    assert_eq!(listed.body.as_array().expect("list").len(), 1);
    assert_eq!(fake.deploys(&id).len(), 1);
    assert_eq!(
        api.post("/services/srv-nope/deploys", json!({}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let (fake, api) = start().await;
    let ok = api.get("/services").await;
    assert_eq!(ok.headers["ratelimit-limit"], "400");
    assert_eq!(ok.headers["ratelimit-remaining"], "399");
    assert!(ok.headers.contains_key("ratelimit-reset"));

    fake.rate_limit_next(2, Duration::from_millis(1500));
    for _ in 0..2 {
        let limited = api.get("/services").await;
        assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers["retry-after"], "2");
        assert_eq!(limited.body["id"], "rate_limited");
        assert!(limited.headers.contains_key("ratelimit-remaining"));
    }
    assert_eq!(api.get("/services").await.status, StatusCode::OK);

    // Four requests so far, the two limited ones included, used the budget.
    fake.set_rate_limit(5);
    let last = api.get("/services").await;
    assert_eq!(last.status, StatusCode::OK);
    assert_eq!(last.headers["ratelimit-remaining"], "0");
    let spent = api.get("/services").await;
    assert_eq!(spent.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(spent.headers["ratelimit-remaining"], "0");
    let retry: u64 = spent.headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_clean(&fake);
}

#[tokio::test]
async fn static_sites_build_only_when_configured_as_expected() {
    let (fake, api) = start().await;
    fake.expect_static_site("docs", "site", "npm run build", "dist");
    let id = fake.seed_service(static_site(&fake, "docs", "site", "", "public"));
    let deploys = format!("/services/{id}/deploys");

    let empty = api.post(&deploys, json!({})).await.body["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(api.settle(&id, &empty).await.0["status"], "build_failed");
    let log = build_log(&fake, &api, &id, &empty).await;
    assert_eq!(
        log,
        [
            "==> Empty build command; skipping build",
            "==> Publish directory public does not exist!",
            "==> Build failed 😞"
        ]
    );

    let patch = json!({ "serviceDetails": { "buildCommand": "npm run build" } });
    assert_eq!(
        api.patch(&format!("/services/{id}"), patch).await.status,
        StatusCode::OK
    );
    let wrong = api.post(&deploys, json!({})).await.body["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(api.settle(&id, &wrong).await.0["status"], "build_failed");
    let log = build_log(&fake, &api, &id, &wrong).await;
    assert_eq!(
        log,
        [
            "==> Running build command 'npm run build'...",
            "==> Publish directory public does not exist!",
            "==> Build failed 😞"
        ]
    );

    let patch = json!({ "serviceDetails": { "publishPath": "dist" } });
    assert_eq!(
        api.patch(&format!("/services/{id}"), patch).await.status,
        StatusCode::OK
    );
    let good = api.post(&deploys, json!({})).await.body["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (deploy, seen) = api.settle(&id, &good).await;
    assert_eq!(deploy["status"], "live");
    assert!(
        !seen.contains(&"update_in_progress".to_owned()),
        "static sites skip the update phase"
    );

    // A wrong root directory fails too; unregistered sites always build.
    assert_eq!(
        api.patch(&format!("/services/{id}"), json!({ "rootDir": "web" }))
            .await
            .status,
        StatusCode::OK
    );
    let rooted = api.post(&deploys, json!({})).await.body["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(api.settle(&id, &rooted).await.0["status"], "build_failed");
    let other = fake.seed_service(static_site(&fake, "blog", "", "", "public"));
    let free = api
        .post(&format!("/services/{other}/deploys"), json!({}))
        .await
        .body["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(api.settle(&other, &free).await.0["status"], "live");
    assert_clean(&fake);
}

#[tokio::test]
async fn postgres_is_created_and_reports_connection_info() {
    let (fake, api) = start().await;
    let body = json!({ "name": "main-db", "plan": "basic_256mb", "version": "16", "ownerId": fake.owner_id() });
    let created = api.post("/postgres", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("dpg-"));
    assert_eq!(created.body["status"], "creating");
    tokio::time::sleep(Duration::from_millis(40)).await;
    let read = api.get(&format!("/postgres/{id}")).await;
    assert_eq!(read.body["status"], "available");
    assert_eq!(
        fake.postgres_by_name("main-db").expect("stored")["id"],
        id.as_str()
    );

    let info = api.get(&format!("/postgres/{id}/connection-info")).await;
    assert_eq!(info.status, StatusCode::OK);
    let password = info.body["password"].as_str().expect("password");
    let external = info.body["externalConnectionString"]
        .as_str()
        .expect("string");
    assert!(external.starts_with("postgresql://") && external.contains(password));
    assert!(
        info.body["internalConnectionString"]
            .as_str()
            .is_some_and(|s| s.contains(&id))
    );
    assert!(
        info.body["psqlCommand"]
            .as_str()
            .is_some_and(|s| s.contains("psql"))
    );

    let listed = api.get("/postgres?name=main-db").await;
    assert_eq!(listed.body[0]["postgres"]["id"], id.as_str());
    assert_eq!(api.get("/postgres?name=other").await.body, json!([]));
    assert_eq!(
        api.get("/postgres/dpg-nope/connection-info").await.status,
        StatusCode::NOT_FOUND
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn env_groups_hold_vars_and_link_services() {
    let (fake, api) = start().await;
    let service = fake.seed_service(web_service(&fake, "api"));
    let body = json!({ "name": "shared", "ownerId": fake.owner_id(), "envVars": [{ "key": "LOG", "value": "info" }] });
    let created = api.post("/env-groups", body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("evg-"));

    let link = format!("/env-groups/{id}/services/{service}");
    let linked = api.send(Method::POST, &link, None).await;
    assert_eq!(linked.status, StatusCode::OK, "{}", linked.raw);
    assert_eq!(
        linked.body["serviceLinks"],
        json!([{ "id": service, "name": "api", "type": "web" }])
    );

    let put = api
        .put(
            &format!("/env-groups/{id}/env-vars/TOKEN"),
            json!({ "value": "t" }),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.raw);
    assert_eq!(put.body["envVars"].as_array().expect("vars").len(), 2);
    assert_eq!(
        api.get(&format!("/env-groups/{id}/env-vars/TOKEN"))
            .await
            .body["value"],
        "t"
    );
    assert_eq!(
        api.delete(&format!("/env-groups/{id}/env-vars/LOG"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.delete(&format!("/env-groups/{id}/env-vars/LOG"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let read = api.get(&format!("/env-groups/{id}")).await;
    assert_eq!(
        read.body["envVars"],
        json!([{ "key": "TOKEN", "value": "t" }])
    );
    let listed = api.get("/env-groups?name=shared").await;
    assert_eq!(listed.body[0]["id"], id.as_str());

    assert_eq!(
        api.delete(&format!("/env-groups/{id}/services/{service}"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let group = fake.env_group_by_name("shared").expect("stored");
    assert_eq!(group["serviceLinks"], json!([]));
    assert_eq!(
        api.get("/env-groups/evg-nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_clean(&fake);
}

#[tokio::test]
async fn contract_violations_are_answered_and_recorded() {
    let (fake, api) = start().await;
    let mut body = static_site(&fake, "docs", "", "make", "out");
    body.as_object_mut().expect("object").remove("ownerId");
    let invalid = api.post("/services", body).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid.body["id"], "invalid_request");
    assert!(
        invalid.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("ownerId"))
    );
    assert!(fake.service_by_name("docs").is_none());

    assert_eq!(
        api.get("/services?limit=500").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        api.get("/services?colour=blue").await.status,
        StatusCode::BAD_REQUEST
    );
    let id = fake.seed_service(web_service(&fake, "api"));
    assert_eq!(
        api.send(Method::POST, &format!("/services/{id}/deploys"), None)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(api.get("/no/such/path").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.get("/blueprints").await.status,
        StatusCode::NOT_IMPLEMENTED
    );

    let violations = fake.violations();
    let expect = [
        "POST /v1/services: create-service: body: \"ownerId\" is a required property",
        "GET /v1/services: list-services: query.limit: 500 is greater than the maximum of 100",
        "GET /v1/services: list-services: query.colour: unknown query parameter",
        "body: a request body is required",
        "GET /v1/no/such/path: no operation GET /no/such/path",
        "GET /v1/blueprints: list-blueprints: not implemented by the fake",
    ];
    assert_eq!(violations.len(), expect.len(), "{violations:#?}");
    for (found, wanted) in violations.iter().zip(expect) {
        assert!(
            found.contains(wanted),
            "{found:?} should contain {wanted:?}"
        );
    }
    assert!(fake.mutations().is_empty());
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [400, 400, 400, 400, 404, 501]);
}

#[tokio::test]
async fn every_service_type_round_trips_within_the_contract() {
    let (fake, api) = start().await;
    let owner = fake.owner_id();
    let native =
        json!({ "buildCommand": "cargo build --release", "startCommand": "./target/release/app" });
    let bodies = [
        json!({ "type": "private_service", "name": "internal", "ownerId": owner,
                "serviceDetails": { "runtime": "rust", "plan": "standard", "envSpecificDetails": native } }),
        json!({ "type": "background_worker", "name": "jobs", "ownerId": owner,
                "image": { "ownerId": owner, "imagePath": "docker.io/acme/jobs:1" },
                "serviceDetails": { "runtime": "image", "numInstances": 2 } }),
        json!({ "type": "cron_job", "name": "nightly", "ownerId": owner,
                "serviceDetails": { "runtime": "node", "schedule": "0 3 * * *", "envSpecificDetails": native } }),
        json!({ "type": "web_service", "name": "app", "ownerId": owner, "repo": "https://github.com/acme/app",
                "serviceDetails": { "runtime": "python", "preDeployCommand": "./migrate",
                    "envSpecificDetails": { "buildCommand": "pip install -r requirements.txt", "startCommand": "gunicorn app:app" } } }),
    ];
    for body in bodies {
        let created = api.post("/services", body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
        let id = created.body["service"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let deploy = created.body["deployId"]
            .as_str()
            .expect("deploy")
            .to_owned();
        assert_eq!(api.settle(&id, &deploy).await.0["status"], "live");
    }
    let app = fake.service_by_name("app").expect("stored");
    let id = app["id"].as_str().expect("id");
    let patch = json!({
        "name": "app2",
        "serviceDetails": { "plan": "pro", "preDeployCommand": "./migrate --all",
            "envSpecificDetails": { "startCommand": "gunicorn -w 4 app:app" } },
    });
    let patched = api.patch(&format!("/services/{id}"), patch).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.raw);
    let specific = &patched.body["serviceDetails"]["envSpecificDetails"];
    assert_eq!(specific["startCommand"], "gunicorn -w 4 app:app");
    assert_eq!(specific["preDeployCommand"], "./migrate --all");
    assert_eq!(specific["buildCommand"], "pip install -r requirements.txt");
    assert_eq!(patched.body["serviceDetails"]["plan"], "pro");
    let listed = api.get("/services?limit=100").await;
    assert_eq!(listed.body.as_array().expect("list").len(), 4);
    assert_eq!(
        api.delete(&format!("/services/{id}")).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.get(&format!("/services/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_clean(&fake);
}

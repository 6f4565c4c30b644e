//! The fake's resources and the handlers of the operations it implements.
//!
//! Everything time-dependent (deploy and database status, which build log lines exist yet) is
//! computed from the current time when asked, so no background task advances anything.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rand::RngExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::contract::OperationRef;
use crate::fake::DeployResponse;

/// Characters of Render object IDs after the prefix (`srv-d0abc…`).
const ID_CHARS: &[u8] = b"0123456789abcdefghijklmnopqrstuv";
/// Render's dashboard, which `dashboardUrl`s point into.
const DASHBOARD: &str = "https://dashboard.render.com";
/// Characters of generated secret values.
const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(crate) fn random_from(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// A Render-style object ID: `prefix-` and 20 lowercase base-32 characters.
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", random_from(ID_CHARS, 20))
}

/// A random base64-alphabet string, as Render generates for `generateValue`.
pub(crate) fn random_token(len: usize) -> String {
    random_from(TOKEN_CHARS, len)
}

/// The string at `value`, or an empty one.
fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn ts(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// A successful answer: a status and an optional JSON body.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    pub retry_after: Option<u64>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            retry_after: None,
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: None,
            retry_after: None,
        }
    }
}

/// An error answer with Render's `{id, message}` body.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: u16,
    pub id: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, id: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            id,
            message: message.into(),
        }
    }

    fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(404, "not_found", format!("{what} {id} not found"))
    }

    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request", message)
    }
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Reply {
        Reply::json(e.status, json!({ "id": e.id, "message": e.message }))
    }
}

type Handled = Result<Reply, ApiError>;

/// A parsed query string.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: &str) -> Query {
        Query(
            form_urlencoded::parse(raw.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// All values of an array parameter, whether repeated or comma-separated.
    fn list(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .collect()
    }

    /// Whether `value` passes the filter `name` (absent filters pass everything).
    fn allows(&self, name: &str, value: Option<&str>) -> bool {
        let wanted = self.list(name);
        wanted.is_empty() || value.is_some_and(|v| wanted.contains(&v))
    }

    /// The items after the `cursor` item, at most `limit` (default 20) of them.
    fn page<T>(&self, items: Vec<T>, cursor_of: impl Fn(&T) -> String) -> Vec<T> {
        let limit = self
            .first("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(20);
        let start = match self.first("cursor") {
            Some(cursor) => items
                .iter()
                .position(|item| cursor_of(item) == cursor)
                .map_or(items.len(), |i| i + 1),
            None => 0,
        };
        items.into_iter().skip(start).take(limit).collect()
    }
}

/// What a working build of a registered static site looks like.
pub(crate) struct SiteExpectation {
    pub root_dir: String,
    pub publish_path: String,
}

/// A per-minute request budget.
pub(crate) struct RateBucket {
    pub limit: u32,
    window_start: Instant,
    used: u32,
}

/// The `Ratelimit-*` values of one request, and the retry delay when the budget is spent.
pub(crate) struct RateStatus {
    pub limit: u32,
    pub remaining: u32,
    pub reset_secs: u64,
    pub exhausted: Option<u64>,
}

impl RateBucket {
    pub fn take(&mut self, now: Instant) -> RateStatus {
        if now.duration_since(self.window_start) >= Duration::from_secs(60) {
            self.window_start = now;
            self.used = 0;
        }
        let left = Duration::from_secs(60).saturating_sub(now.duration_since(self.window_start));
        let reset_secs = left.as_secs_f64().ceil().max(1.0) as u64;
        let exhausted = (self.used >= self.limit).then_some(reset_secs);
        if exhausted.is_none() {
            self.used += 1;
        }
        RateStatus {
            limit: self.limit,
            remaining: self.limit.saturating_sub(self.used),
            reset_secs,
            exhausted,
        }
    }
}

pub(crate) struct Service {
    pub id: String,
    json: Value,
    env: Vec<(String, String)>,
}

struct Deploy {
    id: String,
    service_id: String,
    created: OffsetDateTime,
    step: Duration,
    statuses: Vec<&'static str>,
    source: (&'static str, Value),
}

impl Deploy {
    fn index(&self, now: OffsetDateTime) -> usize {
        let elapsed = (now - self.created).whole_nanoseconds().max(0) as u128;
        let steps = elapsed / self.step.as_nanos().max(1);
        (steps as usize).min(self.statuses.len() - 1)
    }

    fn reached(&self, index: usize) -> OffsetDateTime {
        self.created + self.step * index as u32
    }

    fn live_since(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let last = self.statuses.len() - 1;
        (self.statuses[last] == "live" && self.index(now) == last).then(|| self.reached(last))
    }
}

struct LogLine {
    id: String,
    service_id: String,
    deploy_id: String,
    at: OffsetDateTime,
    message: String,
}

struct Postgres {
    json: Value,
    created: OffsetDateTime,
    step: Duration,
    password: String,
}

struct EnvGroup {
    id: String,
    name: String,
    created: OffsetDateTime,
    updated: OffsetDateTime,
    environment_id: Option<String>,
    env: Vec<(String, String)>,
    services: Vec<String>,
}

/// Everything the fake holds.
pub(crate) struct State {
    owner: Value,
    services: Vec<Service>,
    deploys: Vec<Deploy>,
    logs: Vec<LogLine>,
    postgres: Vec<Postgres>,
    env_groups: Vec<EnvGroup>,
    pub expectations: HashMap<String, SiteExpectation>,
    pub fail_next: HashMap<String, Vec<String>>,
    pub step: Duration,
    pub deploy_response: DeployResponse,
    pub rate: RateBucket,
    pub forced_limits: usize,
    pub forced_retry_after: Duration,
}

impl State {
    pub fn new(owner_id: &str) -> State {
        State {
            owner: json!({
                "id": owner_id, "name": "Autonoma", "email": "owner@autonoma.invalid", "type": "team",
            }),
            services: Vec::new(),
            deploys: Vec::new(),
            logs: Vec::new(),
            postgres: Vec::new(),
            env_groups: Vec::new(),
            expectations: HashMap::new(),
            fail_next: HashMap::new(),
            step: Duration::from_millis(40),
            deploy_response: DeployResponse::Created,
            rate: RateBucket {
                limit: 400,
                window_start: Instant::now(),
                used: 0,
            },
            forced_limits: 0,
            forced_retry_after: Duration::from_secs(1),
        }
    }

    fn owner_id(&self) -> &str {
        self.owner["id"].as_str().unwrap_or_default()
    }

    /// Runs the handler of an operation; `None` when the fake does not implement it.
    pub fn dispatch(
        &mut self,
        op: &OperationRef,
        q: &Query,
        body: Option<&Value>,
        now: OffsetDateTime,
    ) -> Option<Handled> {
        let p = |name: &str| op.path_param(name).unwrap_or_default().to_owned();
        let body = body.unwrap_or(&Value::Null);
        Some(match op.operation_id() {
            "list-owners" => Ok(self.list_owners(q)),
            "list-services" => Ok(self.list_services(q)),
            "create-service" => self.create_service_api(body, now),
            "retrieve-service" => self
                .service(&p("serviceId"))
                .map(|s| Reply::json(200, s.json.clone())),
            "update-service" => self.update_service(&p("serviceId"), body, now),
            "delete-service" => self.delete_service(&p("serviceId")),
            "get-env-vars-for-service" => self.list_env_vars(&p("serviceId"), q),
            "update-env-vars-for-service" => self.replace_env_vars(&p("serviceId"), body),
            "retrieve-env-var" => self.get_env_var(&p("serviceId"), &p("envVarKey")),
            "update-env-var" => self.put_env_var(&p("serviceId"), &p("envVarKey"), body),
            "delete-env-var" => self.delete_env_var(&p("serviceId"), &p("envVarKey")),
            "list-deploys" => self.list_deploys(&p("serviceId"), q, now),
            "create-deploy" => self.create_deploy_api(&p("serviceId"), now),
            "retrieve-deploy" => self.get_deploy(&p("serviceId"), &p("deployId"), now),
            "list-logs" => self.list_logs(q, now),
            "list-postgres" => Ok(self.list_postgres(q, now)),
            "create-postgres" => self.create_postgres(body, now),
            "retrieve-postgres" => self.get_postgres(&p("postgresId"), now),
            "retrieve-postgres-connection-info" => self.postgres_connection_info(&p("postgresId")),
            "list-env-groups" => Ok(self.list_env_groups(q)),
            "create-env-group" => self.create_env_group(body, now),
            "retrieve-env-group" => self
                .env_group(&p("envGroupId"))
                .map(|g| Reply::json(200, self.group_json(g))),
            "retrieve-env-group-env-var" => self.get_group_var(&p("envGroupId"), &p("envVarKey")),
            "update-env-group-env-var" => {
                self.put_group_var(&p("envGroupId"), &p("envVarKey"), body, now)
            }
            "delete-env-group-env-var" => {
                self.delete_group_var(&p("envGroupId"), &p("envVarKey"), now)
            }
            "link-service-to-env-group" => self.link(&p("envGroupId"), &p("serviceId"), true, now),
            "unlink-service-from-env-group" => {
                self.link(&p("envGroupId"), &p("serviceId"), false, now)
            }
            _ => return None,
        })
    }

    fn check_owner(&self, body: &Value) -> Result<(), ApiError> {
        let owner = body["ownerId"].as_str().unwrap_or_default();
        if owner == self.owner_id() {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!("owner {owner} not found")))
        }
    }

    // ---- owners -------------------------------------------------------------------------------

    fn list_owners(&self, q: &Query) -> Reply {
        let owner = &self.owner;
        let shown =
            q.allows("name", owner["name"].as_str()) && q.allows("email", owner["email"].as_str());
        let items: Vec<Value> = if shown {
            vec![json!({ "owner": owner, "cursor": owner["id"] })]
        } else {
            Vec::new()
        };
        Reply::json(200, Value::Array(q.page(items, |i| text(&i["cursor"]))))
    }

    // ---- services -----------------------------------------------------------------------------

    fn service(&self, id: &str) -> Result<&Service, ApiError> {
        self.services
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| ApiError::not_found("service", id))
    }

    fn service_mut(&mut self, id: &str) -> Result<&mut Service, ApiError> {
        self.services
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or_else(|| ApiError::not_found("service", id))
    }

    /// The stored JSON of a service, for tests that make the fake drift from the contract.
    #[cfg(test)]
    pub fn service_json_mut(&mut self, id: &str) -> Option<&mut Value> {
        self.service_mut(id).ok().map(|s| &mut s.json)
    }

    pub fn service_json(&self, id: &str) -> Option<Value> {
        self.service(id).ok().map(|s| s.json.clone())
    }

    pub fn service_by_name(&self, name: &str) -> Option<Value> {
        self.services
            .iter()
            .find(|s| s.json["name"] == name)
            .map(|s| s.json.clone())
    }

    pub fn env_vars(&self, service_id: &str) -> BTreeMap<String, String> {
        self.service(service_id)
            .map(|s| s.env.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn list_services(&self, q: &Query) -> Reply {
        let matching: Vec<&Service> = self
            .services
            .iter()
            .filter(|s| {
                let j = &s.json;
                let details = &j["serviceDetails"];
                q.allows("name", j["name"].as_str())
                    && q.allows("type", j["type"].as_str())
                    && q.allows("ownerId", j["ownerId"].as_str())
                    && q.allows("suspended", j["suspended"].as_str())
                    && q.allows("region", details["region"].as_str())
                    && q.allows("env", details["runtime"].as_str())
                    && q.allows("environmentId", j["environmentId"].as_str())
            })
            .collect();
        let page = q.page(matching, |s| s.id.clone());
        let items = page
            .iter()
            .map(|s| json!({ "service": s.json, "cursor": s.id }))
            .collect();
        Reply::json(200, Value::Array(items))
    }

    fn create_service_api(&mut self, body: &Value, now: OffsetDateTime) -> Handled {
        self.check_owner(body)?;
        let id = self.create_service(body, now)?.id.clone();
        let deploy_id = self.create_deploy(&id, now)?;
        let service = self.service(&id)?.json.clone();
        Ok(Reply::json(
            201,
            json!({ "service": service, "deployId": deploy_id }),
        ))
    }

    /// Creates a service from a valid `servicePOST` body, without a deploy.
    pub fn create_service(
        &mut self,
        body: &Value,
        now: OffsetDateTime,
    ) -> Result<&Service, ApiError> {
        let name = body["name"].as_str().unwrap_or_default();
        if self.services.iter().any(|s| s.json["name"] == name) {
            return Err(ApiError::new(
                409,
                "conflict",
                format!("a service named {name} already exists"),
            ));
        }
        let service_type = body["type"].as_str().unwrap_or("web_service");
        let id = new_id("srv");
        let mut slug: String = name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        if self
            .services
            .iter()
            .any(|s| s.json["slug"] == slug.as_str())
        {
            slug = format!("{slug}-{}", random_from(ID_CHARS, 4));
        }
        let short = short_type(service_type);
        let mut json = json!({
            "id": id, "name": name, "ownerId": body["ownerId"], "type": service_type,
            "autoDeploy": body.get("autoDeploy").unwrap_or(&json!("yes")),
            "notifyOnFail": "default", "slug": slug,
            "createdAt": ts(now), "updatedAt": ts(now),
            "suspended": "not_suspended", "suspenders": [],
            "rootDir": body.get("rootDir").unwrap_or(&json!("")),
            "dashboardUrl": format!("{DASHBOARD}/{short}/{id}"),
            "serviceDetails": service_details(service_type, &body["serviceDetails"], &slug),
        });
        for key in ["repo", "buildFilter", "environmentId"] {
            if let Some(value) = body.get(key) {
                json[key] = value.clone();
            }
        }
        if body.get("repo").is_some() {
            json["branch"] = body.get("branch").cloned().unwrap_or(json!("main"));
        }
        if let Some(path) = body.pointer("/image/imagePath") {
            json["imagePath"] = path.clone();
        }
        let env = env_inputs(&body["envVars"]);
        self.services.push(Service { id, json, env });
        self.services
            .last()
            .ok_or_else(|| ApiError::new(500, "internal", "service vanished"))
    }

    pub fn update_service(&mut self, id: &str, body: &Value, now: OffsetDateTime) -> Handled {
        if let Some(name) = body["name"].as_str()
            && self
                .services
                .iter()
                .any(|s| s.json["name"] == name && s.id != id)
        {
            return Err(ApiError::new(
                409,
                "conflict",
                format!("a service named {name} already exists"),
            ));
        }
        let service = self.service_mut(id)?;
        let json = &mut service.json;
        for key in [
            "name",
            "repo",
            "branch",
            "autoDeploy",
            "rootDir",
            "buildFilter",
        ] {
            if let Some(value) = body.get(key) {
                json[key] = value.clone();
            }
        }
        if let Some(path) = body.pointer("/image/imagePath") {
            json["imagePath"] = path.clone();
        }
        if let Some(patch) = body["serviceDetails"].as_object() {
            let details = &mut json["serviceDetails"];
            for (key, value) in patch {
                match key.as_str() {
                    "registryCredentialId" => {}
                    "envSpecificDetails" => {
                        for (k, v) in value.as_object().into_iter().flatten() {
                            if k != "registryCredentialId" {
                                details["envSpecificDetails"][k] = v.clone();
                            }
                        }
                    }
                    "preDeployCommand" => details["envSpecificDetails"][key] = value.clone(),
                    "runtime" => {
                        details["runtime"] = value.clone();
                        details["env"] = value.clone();
                    }
                    _ => details[key] = value.clone(),
                }
            }
        }
        json["updatedAt"] = json!(ts(now));
        Ok(Reply::json(200, json.clone()))
    }

    fn delete_service(&mut self, id: &str) -> Handled {
        self.service(id)?;
        self.services.retain(|s| s.id != id);
        for group in &mut self.env_groups {
            group.services.retain(|s| s != id);
        }
        Ok(Reply::empty(204))
    }

    // ---- environment variables ----------------------------------------------------------------

    fn list_env_vars(&self, id: &str, q: &Query) -> Handled {
        let service = self.service(id)?;
        let page = q.page(service.env.clone(), |(key, _)| key.clone());
        Ok(Reply::json(200, env_list(&page)))
    }

    fn replace_env_vars(&mut self, id: &str, body: &Value) -> Handled {
        let service = self.service_mut(id)?;
        service.env = env_inputs(body);
        Ok(Reply::json(200, env_list(&service.env)))
    }

    fn get_env_var(&self, id: &str, key: &str) -> Handled {
        find_var(&self.service(id)?.env, key)
    }

    pub fn put_env_var(&mut self, id: &str, key: &str, body: &Value) -> Handled {
        let value = update_value(body)?;
        let service = self.service_mut(id)?;
        upsert(&mut service.env, key, &value);
        Ok(Reply::json(200, json!({ "key": key, "value": value })))
    }

    fn delete_env_var(&mut self, id: &str, key: &str) -> Handled {
        let service = self.service_mut(id)?;
        let before = service.env.len();
        service.env.retain(|(k, _)| k != key);
        if service.env.len() == before {
            return Err(ApiError::not_found("environment variable", key));
        }
        Ok(Reply::empty(204))
    }

    // ---- deploys and build logs ---------------------------------------------------------------

    /// Creates a deploy whose course is fixed now: its statuses and its build log.
    pub fn create_deploy(
        &mut self,
        service_id: &str,
        now: OffsetDateTime,
    ) -> Result<String, ApiError> {
        let service = self.service(service_id)?.json.clone();
        let (succeeds, lines) = self.plan_build(&service);
        let mut statuses = vec!["created", "build_in_progress"];
        match (succeeds, service["type"].as_str()) {
            (false, _) => statuses.push("build_failed"),
            (true, Some("web_service" | "private_service" | "background_worker")) => {
                statuses.extend(["update_in_progress", "live"])
            }
            (true, _) => statuses.push("live"),
        }
        let source = match service["imagePath"].as_str() {
            Some(image) => (
                "image",
                json!({ "ref": image, "sha": format!("sha256:{}", random_from(b"0123456789abcdef", 64)) }),
            ),
            None => (
                "commit",
                json!({
                    "id": random_from(b"0123456789abcdef", 40),
                    "message": "Deploy from the Render fake",
                    "createdAt": ts(now),
                }),
            ),
        };
        let deploy = Deploy {
            id: new_id("dep"),
            service_id: service_id.to_owned(),
            created: now,
            step: self.step,
            statuses,
            source,
        };
        // The log runs from the start of the build to the final status.
        let first = deploy.reached(1);
        let span = deploy.reached(deploy.statuses.len() - 1) - first;
        let count = lines.len().max(1) as f64;
        for (i, message) in lines.into_iter().enumerate() {
            self.logs.push(LogLine {
                id: new_id("log"),
                service_id: service_id.to_owned(),
                deploy_id: deploy.id.clone(),
                at: first + span * (i as f64 / count) + time::Duration::microseconds(i as i64),
                message,
            });
        }
        let id = deploy.id.clone();
        self.deploys.push(deploy);
        Ok(id)
    }

    /// Whether the next build of this service succeeds, and its build log.
    fn plan_build(&mut self, service: &Value) -> (bool, Vec<String>) {
        let id = service["id"].as_str().unwrap_or_default();
        if let Some(lines) = self.fail_next.remove(id) {
            return (false, lines);
        }
        let details = &service["serviceDetails"];
        let str_at = |v: &Value| v.as_str().unwrap_or_default().trim().to_owned();
        let command = str_at(&details["buildCommand"]);
        let publish = str_at(&details["publishPath"]);
        let failed = |first: String| {
            let lines = [
                first,
                format!("==> Publish directory {publish} does not exist!"),
                "==> Build failed 😞".into(),
            ];
            (false, lines.to_vec())
        };
        let name = service["name"].as_str().unwrap_or_default();
        if service["type"] == "static_site"
            && let Some(expected) = self.expectations.get(name)
        {
            if command.is_empty() {
                return failed("==> Empty build command; skipping build".into());
            }
            let root = str_at(&service["rootDir"]);
            if normalise_dir(&root) != normalise_dir(&expected.root_dir)
                || normalise_dir(&publish) != normalise_dir(&expected.publish_path)
            {
                return failed(format!("==> Running build command '{command}'..."));
            }
        }
        let mut lines = Vec::new();
        if let Some(repo) = service["repo"].as_str() {
            lines.push(format!("==> Cloning from {repo}"));
        }
        let specific = &details["envSpecificDetails"];
        match (
            service["type"].as_str(),
            specific["dockerfilePath"].as_str(),
        ) {
            (Some("static_site"), _) => lines.extend([
                format!("==> Running build command '{command}'..."),
                "==> Uploading build...".to_owned(),
                "==> Your site is live 🎉".to_owned(),
            ]),
            (_, Some(dockerfile)) => lines.extend([
                format!("==> Building image from {dockerfile}"),
                "==> Build successful 🎉".to_owned(),
                "==> Deploying...".to_owned(),
                "==> Your service is live 🎉".to_owned(),
            ]),
            _ => lines.extend([
                format!(
                    "==> Running build command '{}'...",
                    str_at(&specific["buildCommand"])
                ),
                "==> Build successful 🎉".to_owned(),
                "==> Deploying...".to_owned(),
                "==> Your service is live 🎉".to_owned(),
            ]),
        }
        (true, lines)
    }

    fn deploy_json(&self, deploy: &Deploy, now: OffsetDateTime) -> Value {
        let index = deploy.index(now);
        let last = deploy.statuses.len() - 1;
        let mut status = deploy.statuses[index];
        let mut updated = deploy.reached(index);
        if status == "live" {
            let superseded = self
                .deploys
                .iter()
                .skip_while(|d| d.id != deploy.id)
                .skip(1)
                .filter(|d| d.service_id == deploy.service_id)
                .filter_map(|d| d.live_since(now))
                .min();
            if let Some(at) = superseded {
                status = "deactivated";
                updated = at;
            }
        }
        let mut json = json!({
            "id": deploy.id, "status": status, "trigger": "api",
            "createdAt": ts(deploy.created), "startedAt": ts(deploy.created), "updatedAt": ts(updated),
        });
        json[deploy.source.0] = deploy.source.1.clone();
        if index == last {
            json["finishedAt"] = json!(ts(deploy.reached(last)));
        }
        json
    }

    pub fn deploys_of(&self, service_id: &str, now: OffsetDateTime) -> Vec<Value> {
        self.deploys
            .iter()
            .rev()
            .filter(|d| d.service_id == service_id)
            .map(|d| self.deploy_json(d, now))
            .collect()
    }

    fn list_deploys(&self, service_id: &str, q: &Query, now: OffsetDateTime) -> Handled {
        self.service(service_id)?;
        let matching: Vec<Value> = self
            .deploys_of(service_id, now)
            .into_iter()
            .filter(|d| q.allows("status", d["status"].as_str()))
            .collect();
        let page = q.page(matching, |d| text(&d["id"]));
        let items = page
            .into_iter()
            .map(|d| json!({ "cursor": d["id"], "deploy": d }))
            .collect();
        Ok(Reply::json(200, Value::Array(items)))
    }

    fn create_deploy_api(&mut self, service_id: &str, now: OffsetDateTime) -> Handled {
        let id = self.create_deploy(service_id, now)?;
        Ok(match self.deploy_response {
            DeployResponse::Accepted => Reply::empty(202),
            DeployResponse::Created => match self.deploys.iter().find(|d| d.id == id) {
                Some(deploy) => Reply::json(201, self.deploy_json(deploy, now)),
                None => Reply::empty(202),
            },
        })
    }

    fn get_deploy(&self, service_id: &str, deploy_id: &str, now: OffsetDateTime) -> Handled {
        self.service(service_id)?;
        let deploy = self
            .deploys
            .iter()
            .find(|d| d.id == deploy_id && d.service_id == service_id)
            .ok_or_else(|| ApiError::not_found("deploy", deploy_id))?;
        Ok(Reply::json(200, self.deploy_json(deploy, now)))
    }

    fn list_logs(&self, q: &Query, now: OffsetDateTime) -> Handled {
        let owner = q.first("ownerId").unwrap_or_default();
        if owner != self.owner_id() {
            return Err(ApiError::not_found("owner", owner));
        }
        let bound = |name: &str, default: OffsetDateTime| match q.first(name) {
            Some(raw) => OffsetDateTime::parse(raw, &Rfc3339)
                .map_err(|e| ApiError::bad_request(format!("{name}: {e}"))),
            None => Ok(default),
        };
        let start = bound("startTime", now - time::Duration::hours(1))?;
        let end = bound("endTime", now)?.min(now);
        let resources = q.list("resource");
        // Every log line of the fake is a build log line at level `info`.
        let kind_wanted = q.allows("type", Some("build")) && q.allows("level", Some("info"));
        let mut matching: Vec<&LogLine> = self
            .logs
            .iter()
            .filter(|l| l.at >= start && l.at <= end)
            .filter(|l| resources.contains(&l.service_id.as_str()))
            .filter(|_| kind_wanted)
            .filter(|l| q.allows("instance", Some(&l.deploy_id)))
            .collect();
        let limit = q.first("limit").and_then(|l| l.parse().ok()).unwrap_or(20);
        let forward = q.first("direction") == Some("forward");
        if !forward {
            matching.reverse();
        }
        let has_more = matching.len() > limit;
        matching.truncate(limit);
        let (next_start, next_end) = match (has_more, matching.last()) {
            (true, Some(last)) if forward => (last.at + time::Duration::microseconds(1), end),
            (true, Some(last)) => (start, last.at - time::Duration::microseconds(1)),
            _ => (start, end),
        };
        let logs: Vec<Value> = matching
            .iter()
            .map(|l| {
                json!({
                    "id": l.id, "message": l.message, "timestamp": ts(l.at),
                    "labels": [
                        { "name": "resource", "value": l.service_id },
                        { "name": "instance", "value": l.deploy_id },
                        { "name": "type", "value": "build" },
                        { "name": "level", "value": "info" },
                    ],
                })
            })
            .collect();
        Ok(Reply::json(
            200,
            json!({
                "hasMore": has_more, "nextStartTime": ts(next_start), "nextEndTime": ts(next_end), "logs": logs,
            }),
        ))
    }

    // ---- Postgres -----------------------------------------------------------------------------

    fn postgres_json(&self, db: &Postgres, now: OffsetDateTime) -> Value {
        let mut json = db.json.clone();
        let ready = now - db.created >= db.step;
        json["status"] = json!(if ready { "available" } else { "creating" });
        json
    }

    fn find_postgres(&self, id: &str) -> Result<&Postgres, ApiError> {
        self.postgres
            .iter()
            .find(|p| p.json["id"] == id)
            .ok_or_else(|| ApiError::not_found("postgres", id))
    }

    pub fn postgres_by_name(&self, name: &str, now: OffsetDateTime) -> Option<Value> {
        let db = self.postgres.iter().find(|p| p.json["name"] == name)?;
        Some(self.postgres_json(db, now))
    }

    fn list_postgres(&self, q: &Query, now: OffsetDateTime) -> Reply {
        let matching: Vec<Value> = self
            .postgres
            .iter()
            .map(|p| self.postgres_json(p, now))
            .filter(|j| {
                q.allows("name", j["name"].as_str())
                    && q.allows("region", j["region"].as_str())
                    && q.allows("suspended", j["suspended"].as_str())
                    && q.allows("ownerId", j["owner"]["id"].as_str())
                    && q.allows("environmentId", j["environmentId"].as_str())
            })
            .collect();
        let page = q.page(matching, |j| text(&j["id"]));
        let items = page
            .into_iter()
            .map(|mut j| {
                // A list item is a `postgres`, which has no `project` or `parameterOverrides`.
                if let Some(o) = j.as_object_mut() {
                    o.remove("project");
                    o.remove("parameterOverrides");
                }
                json!({ "cursor": j["id"], "postgres": j })
            })
            .collect();
        Reply::json(200, Value::Array(items))
    }

    fn create_postgres(&mut self, body: &Value, now: OffsetDateTime) -> Handled {
        self.check_owner(body)?;
        let id = format!("{}-a", new_id("dpg"));
        let name = body["name"].as_str().unwrap_or_default();
        let ident: String = name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let mut json = json!({
            "id": id, "name": name, "owner": self.owner, "plan": body["plan"], "version": body["version"],
            "region": body.get("region").unwrap_or(&json!("oregon")),
            "databaseName": body.get("databaseName").cloned()
                .unwrap_or_else(|| json!(format!("{ident}_{}", random_from(ID_CHARS, 4)))),
            "databaseUser": body.get("databaseUser").cloned().unwrap_or_else(|| json!(format!("{ident}_user"))),
            "ipAllowList": body.get("ipAllowList").unwrap_or(&json!([])),
            "highAvailabilityEnabled": body.get("enableHighAvailability").unwrap_or(&json!(false)),
            "diskAutoscalingEnabled": body.get("enableDiskAutoscaling").unwrap_or(&json!(false)),
            "createdAt": ts(now), "updatedAt": ts(now),
            "dashboardUrl": format!("{DASHBOARD}/d/{id}"),
            // `postgresDetail` requires `project` but does not define it; the fake has no projects.
            "project": null,
            "readReplicas": [], "role": "primary", "status": "creating",
            "suspended": "not_suspended", "suspenders": [],
        });
        for key in ["diskSizeGB", "environmentId", "parameterOverrides"] {
            if let Some(value) = body.get(key) {
                json[key] = value.clone();
            }
        }
        let db = Postgres {
            json,
            created: now,
            step: self.step,
            password: random_from(TOKEN_CHARS.split_at(62).0, 32),
        };
        let reply = Reply::json(201, self.postgres_json(&db, now));
        self.postgres.push(db);
        Ok(reply)
    }

    fn get_postgres(&self, id: &str, now: OffsetDateTime) -> Handled {
        let db = self.find_postgres(id)?;
        Ok(Reply::json(200, self.postgres_json(db, now)))
    }

    fn postgres_connection_info(&self, id: &str) -> Handled {
        let db = self.find_postgres(id)?;
        let user = db.json["databaseUser"].as_str().unwrap_or_default();
        let name = db.json["databaseName"].as_str().unwrap_or_default();
        let region = db.json["region"].as_str().unwrap_or_default();
        let password = &db.password;
        let host = format!("{id}.{region}-postgres.render.com");
        Ok(Reply::json(
            200,
            json!({
                "password": password,
                "internalConnectionString": format!("postgresql://{user}:{password}@{id}/{name}"),
                "externalConnectionString": format!("postgresql://{user}:{password}@{host}/{name}"),
                "psqlCommand": format!("PGPASSWORD={password} psql -h {host} -U {user} {name}"),
            }),
        ))
    }

    // ---- environment groups -------------------------------------------------------------------

    fn env_group(&self, id: &str) -> Result<&EnvGroup, ApiError> {
        self.env_groups
            .iter()
            .find(|g| g.id == id)
            .ok_or_else(|| ApiError::not_found("environment group", id))
    }

    fn env_group_mut(&mut self, id: &str) -> Result<&mut EnvGroup, ApiError> {
        self.env_groups
            .iter_mut()
            .find(|g| g.id == id)
            .ok_or_else(|| ApiError::not_found("environment group", id))
    }

    pub fn env_group_by_name(&self, name: &str) -> Option<Value> {
        let group = self.env_groups.iter().find(|g| g.name == name)?;
        Some(self.group_json(group))
    }

    fn group_meta(&self, group: &EnvGroup) -> Value {
        let links: Vec<Value> = group
            .services
            .iter()
            .filter_map(|id| self.service(id).ok())
            .map(|s| {
                let short = short_type(s.json["type"].as_str().unwrap_or_default());
                json!({ "id": s.id, "name": s.json["name"], "type": short })
            })
            .collect();
        let mut json = json!({
            "id": group.id, "name": group.name, "ownerId": self.owner_id(),
            "createdAt": ts(group.created), "updatedAt": ts(group.updated), "serviceLinks": links,
        });
        if let Some(environment) = &group.environment_id {
            json["environmentId"] = json!(environment);
        }
        json
    }

    fn group_json(&self, group: &EnvGroup) -> Value {
        let mut json = self.group_meta(group);
        let vars: Vec<Value> = group
            .env
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect();
        json["envVars"] = Value::Array(vars);
        json["secretFiles"] = json!([]);
        json
    }

    fn list_env_groups(&self, q: &Query) -> Reply {
        let matching: Vec<&EnvGroup> = self
            .env_groups
            .iter()
            .filter(|g| {
                q.allows("name", Some(&g.name))
                    && q.allows("ownerId", Some(self.owner_id()))
                    && q.allows("environmentId", g.environment_id.as_deref())
            })
            .collect();
        let page = q.page(matching, |g| g.id.clone());
        Reply::json(200, page.into_iter().map(|g| self.group_meta(g)).collect())
    }

    fn create_env_group(&mut self, body: &Value, now: OffsetDateTime) -> Handled {
        self.check_owner(body)?;
        let services: Vec<String> = body["serviceIds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        for id in &services {
            self.service(id)?;
        }
        let group = EnvGroup {
            id: new_id("evg"),
            name: body["name"].as_str().unwrap_or_default().to_owned(),
            created: now,
            updated: now,
            environment_id: body["environmentId"].as_str().map(str::to_owned),
            env: env_inputs(&body["envVars"]),
            services,
        };
        let reply = Reply::json(201, self.group_json(&group));
        self.env_groups.push(group);
        Ok(reply)
    }

    fn get_group_var(&self, id: &str, key: &str) -> Handled {
        find_var(&self.env_group(id)?.env, key)
    }

    fn put_group_var(&mut self, id: &str, key: &str, body: &Value, now: OffsetDateTime) -> Handled {
        let value = update_value(body)?;
        let group = self.env_group_mut(id)?;
        upsert(&mut group.env, key, &value);
        group.updated = now;
        let group = self.env_group(id)?;
        Ok(Reply::json(200, self.group_json(group)))
    }

    fn delete_group_var(&mut self, id: &str, key: &str, now: OffsetDateTime) -> Handled {
        let group = self.env_group_mut(id)?;
        let before = group.env.len();
        group.env.retain(|(k, _)| k != key);
        if group.env.len() == before {
            return Err(ApiError::not_found("environment variable", key));
        }
        group.updated = now;
        Ok(Reply::empty(204))
    }

    fn link(&mut self, id: &str, service_id: &str, linked: bool, now: OffsetDateTime) -> Handled {
        self.service(service_id)?;
        let group = self.env_group_mut(id)?;
        group.services.retain(|s| s != service_id);
        if linked {
            group.services.push(service_id.to_owned());
        }
        group.updated = now;
        if !linked {
            return Ok(Reply::empty(204));
        }
        let group = self.env_group(id)?;
        Ok(Reply::json(200, self.group_json(group)))
    }
}

/// The details of a new service of `service_type`, from the `serviceDetails` of a `servicePOST`.
fn service_details(service_type: &str, input: &Value, slug: &str) -> Value {
    let copy = |details: &mut Value, keys: &[&str]| {
        for key in keys {
            if let Some(value) = input.get(*key) {
                details[*key] = value.clone();
            }
        }
    };
    if service_type == "static_site" {
        let mut details = json!({
            "buildCommand": "", "publishPath": "public", "url": format!("https://{slug}.onrender.com"),
            "buildPlan": "starter", "pullRequestPreviewsEnabled": "no", "previews": { "generation": "off" },
            "renderSubdomainPolicy": "enabled", "ipAllowList": [],
        });
        let keys = [
            "buildCommand",
            "publishPath",
            "pullRequestPreviewsEnabled",
            "previews",
            "renderSubdomainPolicy",
            "ipAllowList",
        ];
        copy(&mut details, &keys);
        return details;
    }
    let runtime = input["runtime"]
        .as_str()
        .or(input["env"].as_str())
        .unwrap_or("docker");
    let given = &input["envSpecificDetails"];
    let mut specific = if matches!(runtime, "docker" | "image") {
        json!({ "dockerCommand": "", "dockerContext": ".", "dockerfilePath": "./Dockerfile" })
    } else {
        json!({ "buildCommand": "", "startCommand": "" })
    };
    for key in [
        "dockerCommand",
        "dockerContext",
        "dockerfilePath",
        "buildCommand",
        "startCommand",
    ] {
        if specific.get(key).is_some()
            && let Some(value) = given.get(key)
        {
            specific[key] = value.clone();
        }
    }
    if let Some(command) = input.get("preDeployCommand") {
        specific["preDeployCommand"] = command.clone();
    }
    let mut details = json!({
        "runtime": runtime, "env": runtime, "plan": "starter", "region": "oregon", "buildPlan": "starter",
        "envSpecificDetails": specific,
    });
    copy(&mut details, &["plan", "region"]);
    if service_type == "cron_job" {
        copy(&mut details, &["schedule"]);
        return details;
    }
    details["numInstances"] = json!(1);
    details["pullRequestPreviewsEnabled"] = json!("no");
    details["previews"] = json!({ "generation": "off" });
    details["maxShutdownDelaySeconds"] = json!(30);
    let keys = [
        "numInstances",
        "pullRequestPreviewsEnabled",
        "previews",
        "maxShutdownDelaySeconds",
        "autoscaling",
    ];
    copy(&mut details, &keys);
    let port = json!([{ "port": 10000, "protocol": "TCP" }]);
    match service_type {
        "web_service" => {
            details["url"] = json!(format!("https://{slug}.onrender.com"));
            details["openPorts"] = port;
            details["healthCheckPath"] = json!("");
            let keys = [
                "healthCheckPath",
                "maintenanceMode",
                "renderSubdomainPolicy",
                "ipAllowList",
            ];
            copy(&mut details, &keys);
        }
        "private_service" => {
            details["url"] = json!(format!("{slug}:10000"));
            details["openPorts"] = port;
        }
        _ => {}
    }
    details
}

fn normalise_dir(dir: &str) -> &str {
    let dir = dir.trim();
    dir.strip_prefix("./").unwrap_or(dir).trim_end_matches('/')
}

/// The value of an `envVarInput`: its `value`, or a generated one for `generateValue: true`.
fn input_value(input: &Value) -> String {
    match input["value"].as_str() {
        Some(value) => value.to_owned(),
        None => random_token(32),
    }
}

/// The value of an `addUpdateEnvVarInput`.
fn update_value(body: &Value) -> Result<String, ApiError> {
    match (body["value"].as_str(), body["generateValue"].as_bool()) {
        (Some(value), _) => Ok(value.to_owned()),
        (None, Some(true)) => Ok(random_token(32)),
        _ => Err(ApiError::bad_request("give a value or generateValue: true")),
    }
}

/// The variables of an `envVarInputArray`; a repeated key keeps its last value.
fn env_inputs(list: &Value) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for input in list.as_array().into_iter().flatten() {
        upsert(
            &mut env,
            input["key"].as_str().unwrap_or_default(),
            &input_value(input),
        );
    }
    env
}

fn find_var(env: &[(String, String)], key: &str) -> Handled {
    let (key, value) = env
        .iter()
        .find(|(k, _)| k == key)
        .ok_or_else(|| ApiError::not_found("environment variable", key))?;
    Ok(Reply::json(200, json!({ "key": key, "value": value })))
}

/// The short service type of env group links and dashboard URLs.
fn short_type(service_type: &str) -> &'static str {
    match service_type {
        "static_site" => "static",
        "private_service" => "pserv",
        "background_worker" => "worker",
        "cron_job" => "cron",
        _ => "web",
    }
}

fn upsert(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_owned(),
        None => env.push((key.to_owned(), value.to_owned())),
    }
}

fn env_list(env: &[(String, String)]) -> Value {
    env.iter()
        .map(|(k, v)| json!({ "cursor": k, "envVar": { "key": k, "value": v } }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_bucket_refills_every_minute() {
        let start = Instant::now();
        let mut bucket = RateBucket {
            limit: 2,
            window_start: start,
            used: 0,
        };
        assert_eq!(bucket.take(start).remaining, 1);
        assert_eq!(bucket.take(start).exhausted, None);
        let spent = bucket.take(start + Duration::from_secs(15));
        assert_eq!((spent.remaining, spent.exhausted), (0, Some(45)));
        let fresh = bucket.take(start + Duration::from_secs(61));
        assert_eq!((fresh.remaining, fresh.exhausted), (1, None));
    }

    #[test]
    fn queries_page_after_the_cursor() {
        let q = Query::parse("limit=2&cursor=b&type=a,b&type=c");
        let items = vec!["a", "b", "c", "d", "e"];
        assert_eq!(q.page(items, |i| i.to_string()), ["c", "d"]);
        assert_eq!(q.list("type"), ["a", "b", "c"]);
        assert!(q.allows("type", Some("c")) && !q.allows("type", Some("d")));
        assert!(q.allows("name", None));
        let unknown = Query::parse("cursor=zzz");
        assert!(unknown.page(vec!["a"], |i| i.to_string()).is_empty());
    }
}

//! Watches the latest deploy of each service in `RENDER_MONITOR_SERVICES` (names or ids). A
//! failed static-site build is classified from the service's settings and its build log:
//! a missing publish directory or an empty build command gets the standard fix (`rootDir`,
//! `buildCommand`, `publishPath` as `render.yaml` declares them for that site, else a Vite
//! app's defaults) and a redeploy; anything else is only reported.
//!
//! It never loops: each failed deploy is handled once (its id is the primary key of
//! `render_monitor_findings`, so replicas do not both act), a failure of the deploy a fix
//! started is reported instead of fixed again, a fix that would change nothing is not made,
//! and fixes of one service are spaced by a doubling backoff.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::Renderctl;
use crate::changes::{NewChange, Origin};
use crate::render::{
    DeployStatus, LogLine, Service, ServiceDetailsIn, ServiceFilter, ServicePatch, ServiceType,
};

/// A Vite app's build, used when `render.yaml` says nothing about the failing site.
pub const DEFAULT_BUILD_COMMAND: &str = "npm ci && npm run build";
pub const DEFAULT_PUBLISH_PATH: &str = "dist";
/// Build log lines read per failure.
const LOG_LINES: u32 = 100;

static MISSING_PUBLISH_DIR: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)publish directory (\S+) does not exist").ok());
static EMPTY_BUILD_COMMAND: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)empty build command|no build command").ok());

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    MissingPublishDirectory,
    EmptyBuildCommand,
    Unrecognised,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::MissingPublishDirectory => "missing_publish_directory",
            Failure::EmptyBuildCommand => "empty_build_command",
            Failure::Unrecognised => "unrecognised",
        }
    }
}

/// Recognises the common static-site build failures from the site's settings and its log.
pub fn classify(service: &Service, log: &[LogLine]) -> Failure {
    if service.kind != ServiceType::StaticSite {
        return Failure::Unrecognised;
    }
    let empty_command = service
        .service_details
        .build_command
        .as_deref()
        .is_none_or(|command| command.trim().is_empty());
    let says = |regex: &LazyLock<Option<Regex>>| {
        regex
            .as_ref()
            .is_some_and(|regex| log.iter().any(|line| regex.is_match(&line.message)))
    };
    if empty_command || says(&EMPTY_BUILD_COMMAND) {
        Failure::EmptyBuildCommand
    } else if says(&MISSING_PUBLISH_DIR) {
        Failure::MissingPublishDirectory
    } else {
        Failure::Unrecognised
    }
}

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct FindingOut {
    pub deploy_id: String,
    pub service_id: String,
    pub service_name: String,
    /// `missing_publish_directory`, `empty_build_command` or `unrecognised`.
    pub failure: String,
    /// `fixed` (and redeployed), `reported`, `fix_failed`, or `fixing` while in progress.
    pub action: String,
    pub fix_deploy_id: Option<String>,
    pub detail: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub seen_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// The newest findings first.
pub async fn findings(pool: &PgPool, limit: u32) -> sqlx::Result<Vec<FindingOut>> {
    sqlx::query_as::<_, FindingOut>(
        "SELECT deploy_id, service_id, service_name, failure, action, fix_deploy_id, detail, \
         seen_at, updated_at FROM render_monitor_findings ORDER BY seen_at DESC LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
}

pub struct Monitor {
    app: Renderctl,
    services: Vec<String>,
    interval: Duration,
    /// Per service: fixes made in a row and when the last one was.
    backoff: HashMap<String, (u32, Instant)>,
}

impl Monitor {
    pub fn new(app: Renderctl, services: Vec<String>, interval: Duration) -> Self {
        Self {
            app,
            services,
            interval,
            backoff: HashMap::new(),
        }
    }

    pub async fn run(mut self, shutdown: CancellationToken) {
        if !self.app.client.has_token() {
            tracing::warn!(
                "RENDER_MONITOR_SERVICES is set but RENDER_API_TOKEN is not; the monitor is off"
            );
            return;
        }
        tracing::info!(services = ?self.services, interval = ?self.interval, "watching Render deploys");
        loop {
            for name in self.services.clone() {
                if let Err(error) = self.check(&name).await {
                    tracing::warn!(service = name, error = %error, "monitor check failed");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// Looks at the newest deploy of one service and handles it if it failed.
    pub async fn check(&mut self, name_or_id: &str) -> anyhow::Result<()> {
        let client = &self.app.client;
        let Some(pool) = self.app.recorder.pool().cloned() else {
            anyhow::bail!("the monitor needs the database");
        };
        let service = if name_or_id.starts_with("srv-") {
            client.get_service(name_or_id).await?
        } else {
            let filter = ServiceFilter {
                names: vec![name_or_id.to_owned()],
                ..ServiceFilter::default()
            };
            let found = client.list_all_services(&filter).await?;
            match found.into_iter().find(|s| s.name == name_or_id) {
                Some(service) => service,
                None => anyhow::bail!("no Render service is named {name_or_id:?}"),
            }
        };
        let Some(deploy) = client.list_deploys(&service.id, None, 1).await?.items.pop() else {
            return Ok(());
        };
        if deploy.status != Some(DeployStatus::BuildFailed) {
            return Ok(());
        }
        // Claim the failure; whoever inserts it handles it, once.
        let claimed = sqlx::query(
            "INSERT INTO render_monitor_findings \
             (deploy_id, service_id, service_name, failure, action, detail) \
             VALUES ($1, $2, $3, 'unrecognised', 'fixing', '') ON CONFLICT (deploy_id) DO NOTHING",
        )
        .bind(&deploy.id)
        .bind(&service.id)
        .bind(&service.name)
        .execute(&pool)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            return Ok(());
        }
        let owner = self
            .app
            .owner_id()
            .await
            .map_err(|p| anyhow::anyhow!("{p}"))?;
        let log = client.build_logs(&owner, &service.id, LOG_LINES).await?;
        let log: Vec<LogLine> = {
            let of_deploy: Vec<LogLine> = log
                .iter()
                .filter(|line| line.label("instance") == Some(deploy.id.as_str()))
                .cloned()
                .collect();
            if of_deploy.is_empty() { log } else { of_deploy }
        };
        let failure = classify(&service, &log);
        let caused_by_our_fix: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM render_monitor_findings WHERE fix_deploy_id = $1)",
        )
        .bind(&deploy.id)
        .fetch_one(&pool)
        .await?;
        let (action, fix_deploy_id, detail) = if failure == Failure::Unrecognised {
            let last = log
                .last()
                .map(|line| line.message.as_str())
                .unwrap_or("no build log");
            (
                "reported",
                None,
                format!("unrecognised build failure; last log line: {last}"),
            )
        } else if caused_by_our_fix {
            (
                "reported",
                None,
                "the deploy started by the previous automatic fix failed again; not fixing twice"
                    .to_owned(),
            )
        } else if let Some(wait) = self.backoff_left(&service.id) {
            (
                "reported",
                None,
                format!(
                    "recognised, but the last automatic fix was recent; next allowed in {}s",
                    wait.as_secs()
                ),
            )
        } else {
            self.fix(&service, failure).await
        };
        sqlx::query(
            "UPDATE render_monitor_findings SET failure = $2, action = $3, fix_deploy_id = $4, \
             detail = $5, updated_at = now() WHERE deploy_id = $1",
        )
        .bind(&deploy.id)
        .bind(failure.as_str())
        .bind(action)
        .bind(&fix_deploy_id)
        .bind(&detail)
        .execute(&pool)
        .await?;
        if action == "fixed" {
            tracing::info!(
                service = service.name,
                deploy = deploy.id,
                failure = failure.as_str(),
                fix_deploy = fix_deploy_id,
                "fixed a failed static-site build and redeployed"
            );
        } else {
            tracing::warn!(
                service = service.name,
                deploy = deploy.id,
                failure = failure.as_str(),
                detail,
                "failed deploy reported"
            );
        }
        Ok(())
    }

    fn backoff_left(&self, service_id: &str) -> Option<Duration> {
        let (fixes, at) = self.backoff.get(service_id)?;
        let wait = self.interval.saturating_mul(2u32.saturating_pow(*fixes));
        let elapsed = at.elapsed();
        (elapsed < wait).then(|| wait - elapsed)
    }

    /// Applies the standard settings and redeploys: (`fixed`|`fix_failed`|`reported`, the
    /// new deploy, what was done).
    async fn fix(
        &mut self,
        service: &Service,
        failure: Failure,
    ) -> (&'static str, Option<String>, String) {
        let declared = match self.app.read_blueprint().await {
            Ok(blueprint) => blueprint.service(&service.name).cloned(),
            Err(_) => None,
        };
        let want_root = declared.as_ref().and_then(|s| s.root_dir.clone());
        let want_build = declared
            .as_ref()
            .and_then(|s| s.build_command.clone())
            .unwrap_or_else(|| DEFAULT_BUILD_COMMAND.to_owned());
        let want_publish = declared
            .as_ref()
            .and_then(|s| s.static_publish_path.clone())
            .unwrap_or_else(|| DEFAULT_PUBLISH_PATH.to_owned());
        let details = &service.service_details;
        let mut patch = ServicePatch::default();
        let mut before = serde_json::Map::new();
        let mut after = serde_json::Map::new();
        if let Some(root) = want_root
            && root != service.root_dir
        {
            before.insert("rootDir".into(), json!(service.root_dir));
            after.insert("rootDir".into(), json!(root));
            patch.root_dir = Some(root);
        }
        let mut new_details = ServiceDetailsIn::default();
        if details.build_command.as_deref() != Some(want_build.as_str()) {
            before.insert("buildCommand".into(), json!(details.build_command));
            after.insert("buildCommand".into(), json!(want_build));
            new_details.build_command = Some(want_build);
        }
        if details.publish_path.as_deref() != Some(want_publish.as_str()) {
            before.insert("publishPath".into(), json!(details.publish_path));
            after.insert("publishPath".into(), json!(want_publish));
            new_details.publish_path = Some(want_publish);
        }
        if !new_details.is_empty() {
            patch.service_details = Some(new_details);
        }
        if patch.is_empty() {
            return (
                "reported",
                None,
                format!(
                    "{}, but the site already has the standard settings; not changing anything",
                    failure.as_str()
                ),
            );
        }
        let client = &self.app.client;
        let record = NewChange::new("monitor", Origin::Monitor, "update_service", &service.name)
            .target_id(&service.id)
            .before(before.clone().into())
            .after(json!({ "fix": failure.as_str(), "settings": after }));
        let result = client.update_service(&service.id, &patch).await;
        self.app
            .recorder
            .record(
                record,
                result.as_ref().map(|_| (200, json!({ "id": service.id }))),
            )
            .await;
        if let Err(error) = result {
            return (
                "fix_failed",
                None,
                format!("updating the settings failed: {error}"),
            );
        }
        let entry = self
            .backoff
            .entry(service.id.clone())
            .or_insert((0, Instant::now()));
        *entry = (entry.0 + 1, Instant::now());
        let record = NewChange::new("monitor", Origin::Monitor, "deploy", &service.name)
            .target_id(&service.id)
            .after(json!({ "reason": format!("automatic fix of {}", failure.as_str()) }));
        let result = client.trigger_deploy(&service.id, false).await;
        self.app
            .recorder
            .record(record, crate::changes::deploy_answer(&result))
            .await;
        let changed: Vec<String> = after.keys().cloned().collect();
        match result {
            Ok(deploy) => (
                "fixed",
                deploy.deploy_id(),
                format!(
                    "{}: set {} and redeployed",
                    failure.as_str(),
                    changed.join(", ")
                ),
            ),
            Err(error) => (
                "fix_failed",
                None,
                format!(
                    "set {} but the redeploy failed: {error}",
                    changed.join(", ")
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::ServiceDetails;

    fn site(build_command: &str) -> Service {
        Service {
            id: "srv-1".into(),
            name: "dashboard".into(),
            owner_id: "tea-1".into(),
            kind: ServiceType::StaticSite,
            slug: "dashboard".into(),
            repo: None,
            branch: None,
            auto_deploy: "yes".into(),
            root_dir: String::new(),
            dashboard_url: String::new(),
            suspended: "not_suspended".into(),
            created_at: String::new(),
            updated_at: String::new(),
            service_details: ServiceDetails {
                build_command: Some(build_command.into()),
                publish_path: Some("public".into()),
                ..ServiceDetails::default()
            },
        }
    }

    fn log(lines: &[&str]) -> Vec<LogLine> {
        lines
            .iter()
            .enumerate()
            .map(|(i, message)| LogLine {
                id: i.to_string(),
                message: (*message).into(),
                timestamp: format!("2026-11-21T00:00:0{i}Z"),
                labels: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn recognises_the_common_static_site_failures() {
        let missing = log(&[
            "==> Running build command 'npm run build'...",
            "==> Publish directory public does not exist!",
        ]);
        assert_eq!(
            classify(&site("npm run build"), &missing),
            Failure::MissingPublishDirectory
        );
        assert_eq!(classify(&site(""), &missing), Failure::EmptyBuildCommand);
        let other = log(&["npm ERR! code E404"]);
        assert_eq!(
            classify(&site("npm run build"), &other),
            Failure::Unrecognised
        );
        let mut web = site("npm run build");
        web.kind = ServiceType::WebService;
        assert_eq!(classify(&web, &missing), Failure::Unrecognised);
    }
}

//! docker-compose.yml and .env.example against what they describe: the Compose Specification,
//! each service's section of infra/config.schema.json, the services' images, and each other.
//! (render.yaml's variables are checked in services/renderctl/tests/render_yaml.rs, with the
//! same `Spec::key_coverage`.)

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;
use std::time::Duration;

use autonoma_common::config::{Spec, service_names};
use autonoma_testkit::{empty_db, run_to_exit_with_args, workspace_binary};
use serde_json::{Value, json};
use support::{
    compose, compose_services, environment, final_stage, image_of, instructions, interpolate, only,
    ports, read,
};

fn compose_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: Value = serde_json::from_str(&read("infra/specs/compose-spec.json"))
            .expect("the Compose Specification schema is JSON");
        jsonschema::draft7::new(&schema).expect("the Compose Specification schema compiles")
    })
}

/// Every violation of the Compose Specification, as `path: message`.
fn compose_errors(document: &Value) -> Vec<String> {
    compose_validator()
        .iter_errors(document)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn docker_compose_validates_against_the_compose_specification() {
    let errors = compose_errors(&compose());
    assert!(
        errors.is_empty(),
        "docker-compose.yml breaks the Compose Specification:\n{}",
        errors.join("\n")
    );
}

#[test]
fn the_compose_check_can_fail() {
    let broken = json!({
        "services": {
            "web": {
                "image": "nginx",
                "ports": "8080:80",
                "depends_on": { "db": { "condition": "when_it_feels_like_it" } },
                "healthcheck": { "tset": ["CMD", "true"] }
            }
        }
    });
    let errors = compose_errors(&broken);
    for path in [
        "/services/web/ports",
        "/services/web/depends_on",
        "/services/web/healthcheck",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(path)),
            "no error at {path}: {errors:#?}"
        );
    }
}

/// The environment a compose service gets on a fresh clone (no .env, nothing exported).
fn fresh_clone_env(service: &Value) -> HashMap<String, String> {
    environment(service)
        .into_iter()
        .map(|(key, value)| (key, interpolate(&value)))
        .collect()
}

/// Every service of docker-compose.yml that runs a service image sets only variables its
/// config schema knows and every variable it requires, with values that pass validation as
/// they are on a fresh clone, so `docker compose up` boots with no .env. Each schema service
/// runs under its own name.
#[test]
fn compose_sets_every_required_variable_and_only_known_ones() {
    let services = compose_services(&compose());
    let mut problems = Vec::new();
    for name in service_names().expect("schema") {
        match services.get(&name).map(image_of) {
            Some(Some(image)) if image == name => {}
            Some(_) => problems.push(format!(
                "docker-compose.yml: {name} is not built from services/{name}/Dockerfile"
            )),
            None => problems.push(format!("docker-compose.yml has no service {name}")),
        }
    }
    for (name, service) in &services {
        let Some(image) = image_of(service) else {
            continue;
        };
        let what = format!("docker-compose.yml: {name}");
        let Ok(spec) = Spec::for_service(&image) else {
            problems.push(format!("{what}: services/{image} has no config section"));
            continue;
        };
        let env = fresh_clone_env(service);
        problems.extend(
            spec.key_coverage(env.keys().map(String::as_str))
                .problems(&what),
        );
        for key in spec.evaluate(&env).report.problems() {
            problems.push(format!(
                "{what}: {}: {:?}: {}",
                key.key,
                key.status,
                key.reason.as_deref().unwrap_or_default()
            ));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// `.env.example` lists each variable with the services that use it ("Used by: …"): each of
/// them knows the variable, and every variable of every service is listed.
#[test]
fn env_example_sets_only_variables_its_services_know() {
    let text = read(".env.example");
    let specs: BTreeMap<String, Spec> = service_names()
        .expect("schema")
        .into_iter()
        .map(|name| {
            let spec = Spec::for_service(&name).expect("section");
            (name, spec)
        })
        .collect();
    let mut problems = Vec::new();
    let mut listed = BTreeSet::new();
    let mut used_by: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some((_, services)) = line.split_once("Used by: ") {
            used_by = services
                .trim_end_matches('.')
                .split(", ")
                .map(str::to_owned)
                .collect();
            continue;
        }
        let assignment = line.trim_start_matches("# ");
        let Some((key, _)) = assignment.split_once('=') else {
            continue;
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            continue;
        }
        if used_by.is_empty() {
            problems.push(format!(".env.example: {key} says no service uses it"));
        }
        for service in used_by.drain(..) {
            match specs.get(&service) {
                Some(spec) if spec.var(key).is_some() => {}
                Some(_) => problems.push(format!(
                    ".env.example: sets {key} for {service}, whose config schema does not know it"
                )),
                None => problems.push(format!(
                    ".env.example: sets {key} for {service}, which is not a service"
                )),
            }
        }
        listed.insert(key.to_owned());
    }
    for (service, spec) in &specs {
        for var in spec.vars() {
            if !listed.contains(&var.name) {
                problems.push(format!(".env.example: lacks {} ({service})", var.name));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Services that run once and exit: those another service waits for with
/// `service_completed_successfully`.
fn one_shots(services: &BTreeMap<String, Value>) -> BTreeSet<String> {
    services
        .values()
        .filter_map(|s| s["depends_on"].as_object())
        .flatten()
        .filter(|(_, dep)| dep["condition"] == "service_completed_successfully")
        .map(|(name, _)| name.clone())
        .collect()
}

/// Every long-running service is health-checked; every dependency is waited for, healthy (or,
/// for a one-shot step, completed), never merely started.
#[test]
fn every_service_is_health_checked_and_waits_for_what_it_needs() {
    let services = compose_services(&compose());
    let one_shots = one_shots(&services);
    let mut problems = Vec::new();
    for (name, service) in &services {
        let healthcheck = &service["healthcheck"];
        if one_shots.contains(name) {
            if service["restart"] != "no" {
                problems.push(format!("{name} runs once but may be restarted"));
            }
        } else if healthcheck["disable"] == true
            || healthcheck["test"].as_array().is_none_or(Vec::is_empty)
        {
            problems.push(format!("{name} has no health check"));
        }
        let Some(depends_on) = service.get("depends_on") else {
            continue;
        };
        let Some(depends_on) = depends_on.as_object() else {
            problems.push(format!("{name}: depends_on without conditions"));
            continue;
        };
        for (dependency, how) in depends_on {
            let wanted = if one_shots.contains(dependency) {
                "service_completed_successfully"
            } else {
                "service_healthy"
            };
            if how["condition"] != wanted {
                problems.push(format!(
                    "{name} waits for {dependency} with {}, not {wanted}",
                    how["condition"]
                ));
            }
            if !services.contains_key(dependency) {
                problems.push(format!(
                    "{name} waits for {dependency}, which is not a service"
                ));
            }
        }
    }
    // The migrations run once, before every service that keeps state.
    let migrate = services
        .iter()
        .find(|(_, s)| s["command"] == json!(["migrate"]))
        .map(|(name, _)| name.clone())
        .expect("a one-shot service that runs `<service> migrate`");
    assert!(one_shots.contains(&migrate));
    for (name, service) in &services {
        let env = fresh_clone_env(service);
        if image_of(service).is_some() && env.contains_key("DATABASE_URL") && *name != migrate {
            if service["depends_on"][&migrate]["condition"] != "service_completed_successfully" {
                problems.push(format!("{name} does not wait for {migrate}"));
            }
            if env.get("MIGRATE_ON_START").map(String::as_str) != Some("false") {
                problems.push(format!("{name} migrates too (MIGRATE_ON_START)"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The port a service's image listens on (its Dockerfile's EXPOSE).
fn image_port(service: &str) -> u16 {
    let dockerfile = read(&format!("services/{service}/Dockerfile"));
    let all = instructions(&dockerfile);
    only(final_stage(&all), "EXPOSE")
        .expect("one EXPOSE")
        .parse()
        .expect("a port")
}

/// `127.0.0.1:<host>:<container>` → (host, container).
fn loopback_mapping(mapping: &str) -> Option<(u16, u16)> {
    let rest = mapping.strip_prefix("127.0.0.1:")?;
    let (host, container) = rest.split_once(':')?;
    Some((host.parse().ok()?, container.parse().ok()?))
}

/// Ports are published on 127.0.0.1 only, each service at its image's (the launcher's) port;
/// the dashboard is built with the published address of every service and every service lets
/// the dashboard's published origin in; service-to-service URLs name a service and the port
/// it listens on.
#[test]
fn the_stack_is_wired_at_the_launchers_addresses() {
    let services = compose_services(&compose());
    let mut problems = Vec::new();
    let mut published: BTreeMap<String, (u16, u16)> = BTreeMap::new();
    for (name, service) in &services {
        for mapping in ports(service) {
            match loopback_mapping(&interpolate(&mapping)) {
                Some(ports) => {
                    published.insert(name.clone(), ports);
                }
                None => problems.push(format!("{name} publishes {mapping} beyond 127.0.0.1")),
            }
        }
    }
    let names = service_names().expect("schema");
    // Container port of each compose service that runs a service image.
    let mut listens: BTreeMap<String, u16> = BTreeMap::new();
    for name in &names {
        let Some(service) = services.get(name) else {
            continue;
        };
        let port = image_port(name);
        listens.insert(name.clone(), port);
        if published.get(name) != Some(&(port, port)) {
            problems.push(format!(
                "{name} is not published at 127.0.0.1:{port}:{port}: {:?}",
                ports(service)
            ));
        }
        if fresh_clone_env(service).get("PORT") != Some(&port.to_string()) {
            problems.push(format!("{name} does not listen on PORT={port}"));
        }
    }

    let dashboard = services.get("dashboard").expect("a dashboard service");
    if dashboard["build"]["dockerfile"] != "dashboard/Dockerfile" {
        problems.push("the dashboard is not built from dashboard/Dockerfile".into());
    }
    let (dashboard_port, _) = published["dashboard"];
    let origin = format!("http://127.0.0.1:{dashboard_port}");
    for name in &names {
        let key = format!("VITE_{}_URL", name.to_uppercase().replace('-', "_"));
        let wanted = published
            .get(name)
            .map(|(host, _)| format!("http://127.0.0.1:{host}"));
        let built = dashboard["build"]["args"][&key].as_str().map(interpolate);
        if built.is_none() || built != wanted {
            problems.push(format!(
                "the dashboard is built with {key}={built:?}, not {wanted:?}"
            ));
        }
        if let Some(service) = services.get(name) {
            let origins = fresh_clone_env(service)
                .get("WS_ALLOWED_ORIGINS")
                .cloned()
                .unwrap_or_default();
            if !origins.split(',').any(|o| o.trim() == origin) {
                problems.push(format!("{name}: WS_ALLOWED_ORIGINS lacks {origin}"));
            }
        }
    }

    // http://<service or alias>:<port> inside the stack: the port that service listens on.
    let mut hosts: BTreeMap<String, String> = BTreeMap::new();
    for (name, service) in &services {
        hosts.insert(name.clone(), name.clone());
        for alias in service["networks"]["default"]["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            hosts.insert(alias.to_owned(), name.clone());
        }
    }
    for (name, service) in &services {
        let Some(image) = image_of(service) else {
            continue;
        };
        let spec = Spec::for_service(&image).expect("section");
        for (key, value) in fresh_clone_env(service) {
            let Some(rest) = value.strip_prefix("http://") else {
                continue;
            };
            let authority = rest.split('/').next().unwrap_or_default();
            let Some((host, port)) = authority.rsplit_once(':') else {
                continue;
            };
            let Some(target) = hosts.get(host) else {
                continue;
            };
            let expected = listens
                .get(target)
                .copied()
                .or_else(|| published.get(target).map(|(_, container)| *container));
            if expected.map(|p| p.to_string()).as_deref() != Some(port) {
                problems.push(format!(
                    "{name}: {key}={value}, but {target} listens on {expected:?}"
                ));
            }
            // Presigned S3 URLs carry the endpoint to browsers: it must answer on the host too.
            if key == "AWS_ENDPOINT_URL"
                && !(host.ends_with(".localhost")
                    && published.get(target).is_some_and(|(h, c)| h == c))
            {
                problems.push(format!(
                    "{name}: AWS_ENDPOINT_URL={value} is not reachable from a browser at the same address"
                ));
            }
        }
        // Where a service supports SQS and S3, the stack's emulator serves them.
        if spec.var("AWS_ENDPOINT_URL").is_some()
            && !fresh_clone_env(service).contains_key("AWS_ENDPOINT_URL")
        {
            problems.push(format!("{name} is not pointed at the SQS/S3 emulator"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The one-shot `migrate` step, run as docker-compose.yml runs it (its image's binary, its
/// command, its environment with the database swapped for a test one), applies every
/// migration, and a second run finds nothing to do.
#[tokio::test]
async fn the_compose_migrate_step_applies_every_migration_once() {
    let services = compose_services(&compose());
    let (_, migrate) = services
        .iter()
        .find(|(_, s)| s["command"] == json!(["migrate"]))
        .expect("a migrate service");
    let image = image_of(migrate).expect("built from a service image");
    let binary = workspace_binary(&image);
    let db = empty_db().await;
    let mut env: Vec<(&str, String)> = Vec::new();
    let fresh = fresh_clone_env(migrate);
    for (key, value) in &fresh {
        let value = if key == "DATABASE_URL" {
            db.url.clone()
        } else {
            value.clone()
        };
        env.push((key.as_str(), value));
    }
    let args: Vec<&str> = migrate["command"]
        .as_array()
        .expect("exec form")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for _ in 0..2 {
        let output = run_to_exit_with_args(&binary, &args, &env, Duration::from_secs(90))
            .await
            .expect("migrate exits");
        assert!(
            output.status.success(),
            "{}",
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
}

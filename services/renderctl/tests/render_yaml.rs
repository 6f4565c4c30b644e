//! The product's own `render.yaml`: valid against Render's published Blueprint schema, and
//! shaped the way this product deploys (Docker web services checked on /health, the dashboard
//! as a static site, one Postgres, shared secrets in an env group).

use std::collections::BTreeSet;

use autonoma_common::config::Spec;
use renderctl::blueprint::{Blueprint, BlueprintEnvVar, validate};
use renderctl::render::ServiceType;

fn render_yaml() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../render.yaml");
    std::fs::read_to_string(path).expect("render.yaml at the repository root")
}

#[test]
fn render_yaml_validates_against_the_blueprint_schema() {
    let document: serde_json::Value =
        yaml_serde::from_str(&render_yaml()).expect("render.yaml is YAML");
    let errors = validate(&document);
    assert!(
        errors.is_empty(),
        "render.yaml breaks the Blueprint schema: {errors:#?}"
    );
    Blueprint::parse(&render_yaml()).expect("render.yaml's references resolve");
}

#[test]
fn the_schema_check_can_fail() {
    let document = serde_json::json!({
        "services": [{ "type": "web", "name": "x", "runtime": "docker", "plan": "enormous" }]
    });
    let errors = validate(&document);
    assert!(
        errors.iter().any(|e| e.path.starts_with("services[0]")),
        "{errors:?}"
    );
}

#[test]
fn every_service_is_a_docker_web_service_and_the_dashboard_a_static_site() {
    let blueprint = Blueprint::parse(&render_yaml()).expect("valid");
    let names: BTreeSet<String> = blueprint
        .services
        .iter()
        .filter(|s| s.service_type() == Some(ServiceType::WebService))
        .map(|s| s.name.trim_start_matches("autonoma-").to_owned())
        .collect();
    let expected: BTreeSet<String> = autonoma_common::config::service_names()
        .expect("config schema")
        .into_iter()
        .collect();
    assert_eq!(names, expected, "one Docker web service per service");
    for service in &blueprint.services {
        if service.service_type() == Some(ServiceType::WebService) {
            assert_eq!(
                service.runtime.as_deref(),
                Some("docker"),
                "{}",
                service.name
            );
            assert_eq!(
                service.health_check_path.as_deref(),
                Some("/health"),
                "{}",
                service.name
            );
            let dockerfile = service.dockerfile_path.as_deref().expect("dockerfilePath");
            assert!(dockerfile.ends_with("/Dockerfile"), "{dockerfile}");
        }
    }
    let dashboard = blueprint.service("autonoma-dashboard").expect("dashboard");
    assert_eq!(dashboard.service_type(), Some(ServiceType::StaticSite));
    assert!(dashboard.static_publish_path.is_some() && dashboard.build_command.is_some());
    assert_eq!(blueprint.databases.len(), 1);
    assert_eq!(blueprint.env_var_groups.len(), 1);

    let all_vars: Vec<&BlueprintEnvVar> = blueprint
        .services
        .iter()
        .flat_map(|s| &s.env_vars)
        .collect();
    let group_vars: Vec<&BlueprintEnvVar> = blueprint
        .env_var_groups
        .iter()
        .flat_map(|g| &g.env_vars)
        .collect();
    assert!(
        all_vars
            .iter()
            .any(|v| matches!(v, BlueprintEnvVar::FromDatabase { .. }))
    );
    assert!(
        all_vars
            .iter()
            .any(|v| matches!(v, BlueprintEnvVar::FromService { .. }))
    );
    assert!(
        all_vars
            .iter()
            .any(|v| matches!(v, BlueprintEnvVar::FromGroup { .. }))
    );
    assert!(group_vars.iter().any(|v| matches!(
        v,
        BlueprintEnvVar::Plain { key, generate_value: true, .. } if key == "INTERNAL_API_KEYS"
    )));
}

/// Every variable render.yaml gives a service (its own, and those of the env groups it takes
/// with `fromGroup`) is one the service's config schema knows, and every variable the schema
/// requires is among them (a literal value, `generateValue`, `sync: false`, `fromDatabase` or
/// `fromService`).
#[test]
fn render_yaml_sets_every_required_variable_and_only_known_ones() {
    let blueprint = Blueprint::parse(&render_yaml()).expect("valid");
    let mut problems = Vec::new();
    for service in &blueprint.services {
        if service.service_type() != Some(ServiceType::WebService) {
            continue;
        }
        let name = service.name.trim_start_matches("autonoma-");
        let spec = Spec::for_service(name).expect("a config section per service");
        let mut keys: Vec<String> = service.env_vars.iter().filter_map(key).collect();
        for var in &service.env_vars {
            if let BlueprintEnvVar::FromGroup { from_group } = var {
                let group = blueprint
                    .env_var_groups
                    .iter()
                    .find(|g| &g.name == from_group)
                    .expect("fromGroup names a group of the blueprint");
                keys.extend(group.env_vars.iter().filter_map(key));
            }
        }
        problems.extend(
            spec.key_coverage(keys.iter().map(String::as_str))
                .problems(&format!("render.yaml: {}", service.name)),
        );
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The dashboard reads `VITE_<SERVICE>_URL` for each service (dashboard/src/config.ts): every
/// one render.yaml sets names a service of the blueprint, and every web service has one.
#[test]
fn the_dashboard_is_told_where_every_service_answers() {
    let blueprint = Blueprint::parse(&render_yaml()).expect("valid");
    let dashboard = blueprint
        .services
        .iter()
        .find(|s| s.name == "autonoma-dashboard")
        .expect("the dashboard");
    let set: Vec<String> = dashboard.env_vars.iter().filter_map(key).collect();
    let web: Vec<&str> = blueprint
        .services
        .iter()
        .filter(|s| s.service_type() == Some(ServiceType::WebService))
        .map(|s| s.name.trim_start_matches("autonoma-"))
        .collect();
    for name in &web {
        let wanted = format!("VITE_{}_URL", name.to_uppercase().replace('-', "_"));
        assert!(set.contains(&wanted), "the dashboard lacks {wanted}");
    }
    assert_eq!(set.len(), web.len(), "{set:?}");
    let config = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../dashboard/src/config.ts"
    ))
    .expect("dashboard/src/config.ts");
    for name in &web {
        assert!(
            config.contains(&format!("'{name}'")),
            "dashboard/src/config.ts does not know {name}"
        );
    }
}

fn key(var: &BlueprintEnvVar) -> Option<String> {
    match var {
        BlueprintEnvVar::FromDatabase { key, .. }
        | BlueprintEnvVar::FromService { key, .. }
        | BlueprintEnvVar::Plain { key, .. } => Some(key.clone()),
        BlueprintEnvVar::FromGroup { .. } => None,
    }
}

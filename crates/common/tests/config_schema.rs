//! Configuration validation, driven by `infra/config.schema.json` itself: for every service
//! section and every variable, the schema's examples must pass, and values built to break each
//! declared rule (type, bounds, length, pattern, format, enum) must be reported as invalid
//! under that variable's name, with secrets never echoed.

use std::collections::HashMap;

use autonoma_common::config::{self, KeyStatus, Spec, ValueKind, VarSpec};
use serde_json::Value;

/// An environment where every variable is set to its first example.
fn valid_env(spec: &Spec) -> HashMap<String, String> {
    spec.vars()
        .map(|var| {
            let example = var
                .examples
                .first()
                .unwrap_or_else(|| panic!("{}: every variable needs an example", var.name));
            (var.name.clone(), config::env_string(example))
        })
        .collect()
}

/// Values that break one rule each of a string schema.
fn invalid_strings(schema: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(Value::Array(options)) = schema.get("enum") {
        assert!(!options.contains(&Value::from("definitely-not-an-option")));
        out.push("definitely-not-an-option".to_owned());
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && min > 1
    {
        out.push("x".repeat(min as usize - 1));
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        out.push("x".repeat(max as usize + 1));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        let regex = regex::Regex::new(pattern).expect("schema patterns compile");
        let candidate = [
            "has spaces",
            "10 parsecs",
            "ftp://not-http.example",
            "user:with:colons",
            "\u{7f}",
        ]
        .into_iter()
        .find(|c| !regex.is_match(c))
        .unwrap_or_else(|| panic!("no candidate breaks pattern {pattern}"));
        out.push(candidate.to_owned());
    }
    if schema.get("format").is_some() || schema.get("anyOf").is_some() {
        out.push("not an address or URL".to_owned());
    }
    out
}

fn invalid_values(var: &VarSpec) -> Vec<String> {
    let schema = &var.schema;
    match &var.kind {
        ValueKind::Integer | ValueKind::Number => {
            let mut out = vec!["not-a-number".to_owned()];
            if let Some(min) = schema.get("minimum").and_then(Value::as_i64) {
                out.push((min - 1).to_string());
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_i64) {
                out.push((max + 1).to_string());
            }
            out
        }
        ValueKind::Boolean => vec!["maybe".to_owned()],
        ValueKind::String => invalid_strings(schema),
        ValueKind::Array(_) => {
            let root = config::schema().expect("schema parses");
            let items = schema.get("items").expect("arrays declare items");
            let items = match items.get("$ref").and_then(Value::as_str) {
                Some(reference) => root
                    .pointer(reference.trim_start_matches('#'))
                    .expect("ref resolves")
                    .as_object()
                    .expect("object")
                    .clone(),
                None => items.as_object().expect("object").clone(),
            };
            let good = config::env_string(&var.examples[0]);
            let good_item = good.split(',').next().unwrap_or_default().to_owned();
            invalid_strings(&items)
                .into_iter()
                .filter(|bad| !bad.contains(','))
                .map(|bad| format!("{good_item},{bad}"))
                .collect()
        }
    }
}

#[test]
fn the_schema_has_a_section_per_service_and_every_variable_is_described() {
    let services = config::service_names().expect("schema parses");
    assert!(services.contains(&"echo-agent".to_owned()), "{services:?}");
    for service in services {
        let spec = Spec::for_service(&service).expect("section compiles");
        assert!(spec.vars().count() > 0, "{service} declares variables");
        for var in spec.vars() {
            assert!(
                !var.description.is_empty(),
                "{service}.{} needs a description",
                var.name
            );
            assert!(
                !var.examples.is_empty(),
                "{service}.{} needs an example",
                var.name
            );
        }
    }
}

#[test]
fn examples_pass_and_every_key_is_ok() {
    for service in config::service_names().expect("schema parses") {
        let spec = Spec::for_service(&service).expect("section compiles");
        let report = spec.evaluate(&valid_env(&spec)).report;
        assert!(report.valid, "{service}: {}", report.render_text());
        assert!(
            report.keys.iter().all(|k| k.status == KeyStatus::Ok),
            "{report:?}"
        );
    }
}

#[test]
fn unset_optional_keys_are_defaulted_or_unset_and_required_ones_missing() {
    for service in config::service_names().expect("schema parses") {
        let spec = Spec::for_service(&service).expect("section compiles");
        let report = spec.evaluate(&HashMap::new()).report;
        for key in &report.keys {
            let var = spec.var(&key.key).expect("reported keys are declared");
            let expected = match (var.required, &var.default) {
                (true, None) => KeyStatus::Missing,
                (_, Some(_)) => KeyStatus::Defaulted,
                (false, None) => KeyStatus::Unset,
            };
            assert_eq!(key.status, expected, "{service}.{}", key.key);
            if expected == KeyStatus::Defaulted && !var.secret {
                assert_eq!(
                    key.value.as_ref(),
                    var.default.as_ref(),
                    "{service}.{}",
                    key.key
                );
            }
        }
        let required = spec
            .vars()
            .filter(|v| v.required && v.default.is_none())
            .count();
        assert_eq!(report.problems, required, "{service}");
        assert_eq!(report.valid, required == 0);
    }
}

#[test]
fn each_missing_required_variable_is_named() {
    for service in config::service_names().expect("schema parses") {
        let spec = Spec::for_service(&service).expect("section compiles");
        for var in spec.vars().filter(|v| v.required) {
            let mut env = valid_env(&spec);
            env.remove(&var.name);
            let report = spec.evaluate(&env).report;
            let problems: Vec<_> = report
                .problems()
                .map(|k| (k.key.as_str(), k.status))
                .collect();
            assert_eq!(
                problems,
                [(var.name.as_str(), KeyStatus::Missing)],
                "{service}"
            );
            assert!(report.render_text().contains(&var.name));
            // An empty value counts as unset.
            env.insert(var.name.clone(), String::new());
            assert_eq!(spec.evaluate(&env).report.problems, 1);
        }
    }
}

#[test]
fn each_broken_rule_is_reported_under_the_variable_without_echoing_secrets() {
    let mut checked = 0;
    for service in config::service_names().expect("schema parses") {
        let spec = Spec::for_service(&service).expect("section compiles");
        for var in spec.vars() {
            let bad_values = invalid_values(var);
            assert!(
                !bad_values.is_empty(),
                "{service}.{}: no rule to break?",
                var.name
            );
            for bad in bad_values {
                let mut env = valid_env(&spec);
                env.insert(var.name.clone(), bad.clone());
                let evaluation = spec.evaluate(&env);
                let report = evaluation.report;
                let problems: Vec<_> = report.problems().collect();
                assert_eq!(
                    problems.len(),
                    1,
                    "{service}.{}={bad:?}: {report:?}",
                    var.name
                );
                let problem = problems[0];
                assert_eq!(problem.key, var.name, "{service}: {bad:?}");
                assert_eq!(problem.status, KeyStatus::Invalid);
                let reason = problem.reason.as_deref().unwrap_or_default();
                assert!(!reason.is_empty(), "{service}.{} has a reason", var.name);
                assert!(
                    evaluation.values.is_empty(),
                    "no values escape an invalid config"
                );
                let rendered = report.render_text();
                assert!(rendered.contains(&var.name), "{rendered}");
                if var.secret && bad.len() > 3 {
                    let json = serde_json::to_string(&report).expect("serialises");
                    assert!(!json.contains(&bad), "secret {} echoed: {json}", var.name);
                    assert!(
                        !rendered.contains(&bad),
                        "secret {} echoed: {rendered}",
                        var.name
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} cases");
}

#[test]
fn several_problems_are_all_reported_at_once() {
    let spec = Spec::for_service("echo-agent").expect("section compiles");
    let mut env = valid_env(&spec);
    env.remove("INTERNAL_API_KEYS");
    env.insert("PORT".into(), "99999".into());
    env.insert("LOG_FORMAT".into(), "yaml".into());
    let report = spec.evaluate(&env).report;
    let mut named: Vec<_> = report.problems().map(|k| k.key.clone()).collect();
    named.sort();
    assert_eq!(named, ["INTERNAL_API_KEYS", "LOG_FORMAT", "PORT"]);
    // Problems come first in the report.
    assert!(report.keys[..3].iter().all(|k| k.status.is_problem()));
}

#[test]
fn values_are_typed_from_strings() {
    use autonoma_common::config::coerce;
    assert_eq!(coerce(" 42 ", &ValueKind::Integer), Ok(Value::from(42)));
    assert_eq!(coerce("YES", &ValueKind::Boolean), Ok(Value::Bool(true)));
    assert_eq!(coerce("off", &ValueKind::Boolean), Ok(Value::Bool(false)));
    assert_eq!(
        coerce("a, b,,c", &ValueKind::Array(Box::new(ValueKind::String))),
        Ok(serde_json::json!(["a", "b", "c"]))
    );
    assert!(coerce("4x", &ValueKind::Integer).is_err());
}

#[test]
fn service_urls_accept_renders_hostport() {
    let spec = Spec::for_service("echo-agent").expect("section");
    let mut env = valid_env(&spec);
    env.insert(
        "ORCHESTRATOR_URL".into(),
        "autonoma-orchestrator:10000".into(),
    );
    let evaluation = spec.evaluate(&env);
    assert!(
        evaluation.report.valid,
        "{}",
        evaluation.report.render_text()
    );
    assert_eq!(
        evaluation.values["ORCHESTRATOR_URL"],
        Value::from("http://autonoma-orchestrator:10000")
    );
    // Only host:port is completed; a word without a port stays invalid.
    env.insert("ORCHESTRATOR_URL".into(), "autonoma-orchestrator".into());
    assert!(!spec.evaluate(&env).report.valid);
}

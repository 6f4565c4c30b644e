//! Reading the deployment files of the repository: docker-compose.yml as Compose reads it (YAML
//! merge keys applied, `${VAR:-default}` interpolated for an empty environment), render.yaml,
//! and the instructions of a Dockerfile.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(workspace_root().join(path))
        .unwrap_or_else(|e| panic!("{path} at the repository root: {e}"))
}

/// A YAML document as JSON, with merge keys (`<<: *anchor`) applied as Compose applies them.
pub fn yaml_to_json(text: &str) -> Result<Value, String> {
    let mut value: yaml_serde::Value = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
    value.apply_merge().map_err(|e| e.to_string())?;
    serde_json::to_value(&value).map_err(|e| e.to_string())
}

pub fn compose() -> Value {
    yaml_to_json(&read("docker-compose.yml")).expect("docker-compose.yml is YAML")
}

pub fn render_yaml() -> Value {
    yaml_to_json(&read("render.yaml")).expect("render.yaml is YAML")
}

/// The services of docker-compose.yml by name.
pub fn compose_services(compose: &Value) -> BTreeMap<String, Value> {
    compose["services"]
        .as_object()
        .expect("docker-compose.yml has services")
        .iter()
        .map(|(name, service)| (name.clone(), service.clone()))
        .collect()
}

/// The schema section a compose service runs: `<name>` when it is built from
/// `services/<name>/Dockerfile` (the one-shot `migrate` runs the logging image).
pub fn image_of(service: &Value) -> Option<String> {
    let dockerfile = service["build"]["dockerfile"].as_str()?;
    let name = dockerfile
        .trim_start_matches("./")
        .strip_prefix("services/")?
        .strip_suffix("/Dockerfile")?;
    Some(name.to_owned())
}

/// A compose service's `environment` (mapping or `KEY=VALUE` list), values as written.
pub fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (key.clone(), value)
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|item| match item.split_once('=') {
                Some((key, value)) => (key.to_owned(), value.to_owned()),
                None => (item.to_owned(), String::new()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Compose's interpolation for an environment where nothing is set (a fresh clone, no .env):
/// `${VAR:-default}` and `${VAR-default}` become the default, `${VAR}` and `$VAR` become empty,
/// `$$` is a literal `$`.
pub fn interpolate(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
        } else if let Some(braced) = rest.strip_prefix('{') {
            let end = braced
                .find('}')
                .expect("an unterminated ${ in docker-compose.yml");
            let expression = &braced[..end];
            if let Some((_, default)) = expression
                .split_once(":-")
                .or_else(|| expression.split_once('-'))
            {
                out.push_str(default);
            }
            rest = &braced[end + 1..];
        } else {
            let name_len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            rest = &rest[name_len..];
        }
    }
    out.push_str(rest);
    out
}

/// A Dockerfile's instructions in order: (keyword in upper case, arguments), continuation lines
/// joined and comments dropped.
pub fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part.trim());
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                out.push((keyword.to_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

/// The instructions of the last stage (from its `FROM` on).
pub fn final_stage(instructions: &[(String, String)]) -> &[(String, String)] {
    let start = instructions
        .iter()
        .rposition(|(keyword, _)| keyword == "FROM")
        .unwrap_or(0);
    &instructions[start..]
}

/// The arguments of the one `keyword` instruction among `instructions`.
pub fn only<'a>(instructions: &'a [(String, String)], keyword: &str) -> Result<&'a str, String> {
    let found: Vec<&str> = instructions
        .iter()
        .filter(|(k, _)| k == keyword)
        .map(|(_, args)| args.as_str())
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        _ => Err(format!("{} {keyword} instructions, not one", found.len())),
    }
}

/// An exec-form argument list (`["a", "b"]`).
pub fn exec_form(args: &str) -> Result<Vec<String>, String> {
    serde_json::from_str(args).map_err(|_| format!("{args} is not exec form ([\"…\", …])"))
}

/// `host:published:container` port mappings of a compose service, as written.
pub fn ports(service: &Value) -> Vec<String> {
    service["ports"]
        .as_array()
        .map(|ports| {
            ports
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

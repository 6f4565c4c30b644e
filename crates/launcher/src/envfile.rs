//! `.env.example`, generated from `infra/config.schema.json` so it always lists every key.

use std::collections::BTreeMap;

use autonoma_common::config::{self, Spec, VarSpec};

/// The text of `.env.example`.
pub fn render() -> anyhow::Result<String> {
    let mut vars: BTreeMap<String, (VarSpec, Vec<String>, Vec<String>)> = BTreeMap::new();
    for service in config::service_names()? {
        let spec = Spec::for_service(&service)?;
        for var in spec.vars() {
            let entry = vars
                .entry(var.name.clone())
                .or_insert_with(|| (var.clone(), Vec::new(), Vec::new()));
            entry.1.push(service.clone());
            if var.required {
                entry.2.push(service.clone());
            }
        }
    }

    let mut out = String::from(
        "# Environment variables of the Autonoma services.\n\
         # Generated from infra/config.schema.json by `cargo autonoma env-example`; do not edit.\n\
         # Each service reads the variables its section of the schema lists (and a .env file in\n\
         # its working directory). An empty value counts as unset. Lines left commented show the\n\
         # default; (secret) values are never echoed by /config/validate.\n",
    );
    for (name, (var, used_by, required_by)) in vars {
        out.push('\n');
        for line in wrap(&var.description, 88) {
            out.push_str(&format!("# {line}\n"));
        }
        let mut facts = Vec::new();
        if var.secret {
            facts.push("(secret)".to_owned());
        }
        if !required_by.is_empty() {
            facts.push(format!("Required by: {}.", required_by.join(", ")));
        }
        facts.push(format!("Used by: {}.", used_by.join(", ")));
        out.push_str(&format!("# {}\n", facts.join(" ")));
        match (&var.default, var.secret) {
            (Some(default), _) => {
                out.push_str(&format!("# {name}={}\n", config::env_string(default)))
            }
            (None, true) => out.push_str(&format!("{name}=\n")),
            (None, false) if var.required => {
                let example = var
                    .examples
                    .first()
                    .map(config::env_string)
                    .unwrap_or_default();
                out.push_str(&format!("{name}={example}\n"));
            }
            (None, false) => {
                let example = var
                    .examples
                    .first()
                    .map(config::env_string)
                    .unwrap_or_default();
                out.push_str(&format!("# {name}={example}\n"));
            }
        }
    }
    Ok(out)
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

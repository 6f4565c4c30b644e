//! The directive types, which kind of address accepts each, and the JSON Schema (draft
//! 2020-12) every body is checked against before it is put on the bus.

use std::collections::HashMap;
use std::sync::LazyLock;

use autonoma_common::problem::FieldError;
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::envelope::{Address, AddressKind};

/// One directive type: its name, the kind of address that accepts it, and its schema.
#[derive(Debug, Clone, Copy)]
pub struct DirectiveSpec {
    pub name: &'static str,
    pub to: AddressKind,
    /// The JSON Schema of the body, as JSON text.
    pub schema: &'static str,
}

macro_rules! directive {
    ($name:literal, $to:ident) => {
        DirectiveSpec {
            name: $name,
            to: AddressKind::$to,
            schema: include_str!(concat!("../../schemas/directives/", $name, ".json")),
        }
    };
}

/// Every directive type and the address kind that accepts it.
pub const DIRECTIVES: &[DirectiveSpec] = &[
    directive!("layout.set", LayoutManager),
    directive!("component.remove", LayoutManager),
    directive!("text.set", TextComponent),
    directive!("form.set", TextComponent),
    directive!("plotly.figure", PlotlyPanel),
    directive!("dataset.route", DatasetRouter),
];

/// The schemas, compiled on first use. They are part of the build, so a schema that does not
/// compile is a bug caught by the tests, not an input error.
static VALIDATORS: LazyLock<HashMap<&'static str, jsonschema::Validator>> = LazyLock::new(|| {
    DIRECTIVES
        .iter()
        .map(|spec| {
            let schema: Value = serde_json::from_str(spec.schema)
                .unwrap_or_else(|e| panic!("schema of {} is not JSON: {e}", spec.name));
            let validator = jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .unwrap_or_else(|e| panic!("schema of {} does not compile: {e}", spec.name));
            (spec.name, validator)
        })
        .collect()
});

/// The directive types an address kind accepts.
pub fn accepted_by(kind: AddressKind) -> impl Iterator<Item = &'static DirectiveSpec> {
    DIRECTIVES.iter().filter(move |spec| spec.to == kind)
}

/// The spec of `directive` if `to` accepts it, else an error on `/directive`.
pub fn accepts(to: &Address, directive: &str) -> Result<&'static DirectiveSpec, Vec<FieldError>> {
    if let Some(spec) = accepted_by(to.kind()).find(|spec| spec.name == directive) {
        return Ok(spec);
    }
    let accepted = accepted_by(to.kind())
        .map(|spec| spec.name)
        .collect::<Vec<_>>()
        .join(", ");
    let message = if DIRECTIVES.iter().any(|spec| spec.name == directive) {
        format!("{to} does not accept {directive}; it accepts {accepted}")
    } else {
        format!("unknown directive {directive:?}; {to} accepts {accepted}")
    };
    Err(vec![FieldError {
        field: "/directive".into(),
        message,
    }])
}

/// Checks that `to` accepts `directive` and that `body` matches its schema. Fields are JSON
/// pointers: `/directive`, or `/body/...` into the body.
pub fn validate(to: &Address, directive: &str, body: &Value) -> Result<(), Vec<FieldError>> {
    validate_at(to, directive, body, "/body")
}

/// [`validate`] with body errors under `prefix` instead of `/body`.
pub(crate) fn validate_at(
    to: &Address,
    directive: &str,
    body: &Value,
    prefix: &str,
) -> Result<(), Vec<FieldError>> {
    let spec = accepts(to, directive)?;
    let Some(validator) = VALIDATORS.get(spec.name) else {
        // Every spec in DIRECTIVES is compiled into VALIDATORS.
        return Err(vec![FieldError {
            field: "/directive".into(),
            message: format!("no schema for {directive}"),
        }]);
    };
    let errors: Vec<FieldError> = validator
        .iter_errors(body)
        .map(|error| {
            let path = error.instance_path().as_str();
            let field = match error.kind() {
                // A missing property is reported where it should be, not at its parent.
                ValidationErrorKind::Required { property } => match property.as_str() {
                    Some(name) => format!("{prefix}{path}/{}", escape(name)),
                    None => format!("{prefix}{path}"),
                },
                // So is an unexpected one, when it is the only one.
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    match unexpected.as_slice() {
                        [name] => format!("{prefix}{path}/{}", escape(name)),
                        _ => format!("{prefix}{path}"),
                    }
                }
                _ => format!("{prefix}{path}"),
            };
            FieldError {
                field,
                // The offending value is not quoted back: it may be a secret sent by mistake.
                message: error.masked().to_string(),
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Escapes a property name for a JSON pointer (RFC 6901).
fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

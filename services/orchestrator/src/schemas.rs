//! Compiled payload schemas of the registered kinds, recompiled when an agent re-registers
//! with a different schema.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use autonoma_common::problem::FieldError;
use serde_json::Value;

#[derive(Default)]
pub struct SchemaCache {
    compiled: RwLock<HashMap<String, (Value, Arc<jsonschema::Validator>)>>,
}

impl SchemaCache {
    /// The validator for `kind`'s current `schema`.
    pub fn validator(
        &self,
        kind: &str,
        schema: &Value,
    ) -> Result<Arc<jsonschema::Validator>, String> {
        if let Ok(compiled) = self.compiled.read()
            && let Some((cached, validator)) = compiled.get(kind)
            && cached == schema
        {
            return Ok(validator.clone());
        }
        let validator = Arc::new(compile(schema)?);
        if let Ok(mut compiled) = self.compiled.write() {
            compiled.insert(kind.to_owned(), (schema.clone(), validator.clone()));
        }
        Ok(validator)
    }
}

pub fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| e.to_string())
}

/// Every violation of `validator` by `instance`, as field errors under `prefix`.
pub fn violations(
    validator: &jsonschema::Validator,
    instance: &Value,
    prefix: &str,
) -> Vec<FieldError> {
    validator
        .iter_errors(instance)
        .map(|error| FieldError {
            field: format!("{prefix}{}", error.instance_path().as_str()),
            // The offending value is not quoted back: it may be a secret sent in the wrong field.
            message: error.masked().to_string(),
        })
        .collect()
}

//! Validation of requests and responses against Render's published OpenAPI 3.0 document.
//!
//! The document's schema objects are converted to JSON Schema draft 4 once at load (OpenAPI 3.0
//! schemas are a draft-4/5 dialect: boolean `exclusiveMinimum`, `nullable`), and the converted
//! document is registered as one JSON Schema resource so that every `$ref` in it (into
//! `components` or into `paths`) resolves. A validator is compiled lazily for each schema location
//! the first time it is needed and then cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use http::Method;
use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, Registry, ValidationError, Validator};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde_json::{Map, Value, json};

/// Render's published OpenAPI document (OpenAPI 3.0.2).
const SPEC: &str = include_str!("../../../infra/specs/render-openapi.json");

/// The URI under which the converted document is registered for `$ref` resolution.
const BASE_URI: &str = "https://render-openapi.invalid/spec.json";

/// Characters escaped when a JSON pointer is used as a URI fragment.
const FRAGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Longest rendering of a single violation, so that a huge instance cannot flood a report.
const MAX_MESSAGE: usize = 400;

/// The Render API contract: operations, parameters and schemas of the OpenAPI document.
pub struct Contract {
    doc: Value,
    registry: Registry<'static>,
    operations: Vec<Arc<Operation>>,
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

/// An operation of the contract matched against a concrete request path.
#[derive(Clone, Debug)]
pub struct OperationRef {
    op: Arc<Operation>,
    path_params: Vec<(String, String)>,
}

impl OperationRef {
    /// The operation's `operationId`, e.g. `create-service`.
    pub fn operation_id(&self) -> &str {
        &self.op.operation_id
    }

    /// The path template the request matched, e.g. `/services/{serviceId}`.
    pub fn template(&self) -> &str {
        &self.op.template
    }

    /// The HTTP method of the operation.
    pub fn method(&self) -> &Method {
        &self.op.method
    }

    /// The percent-decoded value of a path parameter of the matched path.
    pub fn path_param(&self, name: &str) -> Option<&str> {
        self.path_params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
struct Operation {
    method: Method,
    template: String,
    segments: Vec<Segment>,
    operation_id: String,
    params: Vec<Param>,
    body: Option<RequestBody>,
    responses: Vec<(String, ResponseSpec)>,
}

#[derive(Debug)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Debug)]
struct Param {
    name: String,
    location: String,
    required: bool,
    explode: bool,
    kind: Kind,
    schema: Option<String>,
}

/// How a parameter's string form is turned into JSON before schema validation.
#[derive(Debug, Clone)]
enum Kind {
    String,
    Integer,
    Number,
    Boolean,
    Array(Box<Kind>),
}

#[derive(Debug)]
struct RequestBody {
    required: bool,
    media_types: Vec<String>,
    json_schema: Option<String>,
}

#[derive(Debug)]
struct ResponseSpec {
    has_content: bool,
    json_schema: Option<String>,
}

impl Contract {
    /// The contract of Render's public API, loaded once per process.
    pub fn render() -> Arc<Contract> {
        static CONTRACT: OnceLock<Arc<Contract>> = OnceLock::new();
        CONTRACT
            .get_or_init(|| {
                let contract =
                    Contract::from_spec(SPEC).expect("the embedded Render OpenAPI document loads");
                Arc::new(contract)
            })
            .clone()
    }

    /// Loads a contract from the text of an OpenAPI 3.0 document.
    pub fn from_spec(text: &str) -> anyhow::Result<Contract> {
        let mut doc: Value = serde_json::from_str(text)?;
        convert_document(&mut doc);
        apply_exceptions(&mut doc)?;
        let operations = collect_operations(&doc)?;
        let resource = Draft::Draft4.create_resource(doc.clone());
        let registry = Registry::new()
            .draft(Draft::Draft4)
            .add(BASE_URI, resource)?
            .prepare()?;
        Ok(Contract {
            doc,
            registry,
            operations,
            validators: Mutex::new(HashMap::new()),
        })
    }

    /// Finds the operation for a method and a concrete path relative to the server base
    /// (`/services/srv-1/env-vars/FOO`). Literal segments win over templated ones.
    pub fn operation(&self, method: &Method, path: &str) -> Option<OperationRef> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut best: Option<(Vec<bool>, OperationRef)> = None;
        for op in self.operations.iter().filter(|op| op.method == *method) {
            if op.segments.len() != segments.len() {
                continue;
            }
            let mut score = Vec::with_capacity(segments.len());
            let mut params = Vec::new();
            let matched = op
                .segments
                .iter()
                .zip(&segments)
                .all(|(seg, actual)| match seg {
                    Segment::Literal(lit) => {
                        score.push(true);
                        lit == actual
                    }
                    Segment::Param(name) => {
                        score.push(false);
                        let value = percent_decode_str(actual).decode_utf8_lossy().into_owned();
                        params.push((name.clone(), value));
                        !actual.is_empty()
                    }
                });
            if matched && best.as_ref().is_none_or(|(s, _)| score > *s) {
                let found = OperationRef {
                    op: op.clone(),
                    path_params: params,
                };
                best = Some((score, found));
            }
        }
        best.map(|(_, op)| op)
    }

    /// Validates a request: the operation exists, its path and query parameters conform, and the
    /// body is present exactly when required and valid against the body schema.
    pub fn validate_request(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<OperationRef, Vec<String>> {
        let Some(op) = self.operation(method, path) else {
            return Err(vec![format!("no operation {method} {path}")]);
        };
        let id = op.operation_id().to_owned();
        let mut out = Vec::new();
        self.check_path_params(&op, &mut out);
        self.check_query(&op.op, query.unwrap_or(""), &mut out);
        self.check_body(&op.op, content_type, body, &mut out);
        if out.is_empty() {
            Ok(op)
        } else {
            Err(out.into_iter().map(|v| format!("{id}: {v}")).collect())
        }
    }

    /// Validates a response: the status is declared for the operation, a declared JSON body is
    /// present and valid, and a response declared without content has an empty body.
    pub fn validate_response(
        &self,
        op: &OperationRef,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Vec<String> {
        let id = op.operation_id();
        let keys = [
            status.to_string(),
            format!("{}XX", status / 100),
            "default".to_owned(),
        ];
        let declared = keys.iter().find_map(|key| {
            op.op
                .responses
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
        });
        let Some((_, spec)) = declared else {
            return vec![format!(
                "{id}: response {status} is not declared for this operation"
            )];
        };
        let mut out = Vec::new();
        let at = format!("response {status} body");
        match &spec.json_schema {
            Some(pointer) => {
                if body.is_empty() {
                    out.push(format!(
                        "{at}: a JSON body is declared but the body is empty"
                    ));
                } else if !is_json(content_type) {
                    out.push(format!(
                        "{at}: content type {} is not application/json",
                        content_type.unwrap_or("(none)")
                    ));
                } else {
                    match serde_json::from_slice::<Value>(body) {
                        Ok(value) => out.extend(self.validate_value(pointer, &value, &at)),
                        Err(e) => out.push(format!("{at}: invalid JSON: {e}")),
                    }
                }
            }
            None if !spec.has_content && !body.is_empty() => out.push(format!(
                "{at}: no content is declared but the body has {} bytes",
                body.len()
            )),
            None => {}
        }
        out.into_iter().map(|v| format!("{id}: {v}")).collect()
    }

    /// Validates a JSON value against the schema at a JSON pointer into the converted document
    /// (e.g. `/components/schemas/servicePOST`); each violation starts with `location`.
    pub fn validate_schema(&self, pointer: &str, value: &Value, location: &str) -> Vec<String> {
        self.validate_value(pointer, value, location)
    }

    fn validate_value(&self, pointer: &str, value: &Value, location: &str) -> Vec<String> {
        match self.validator(pointer) {
            Ok(validator) => validator
                .iter_errors(value)
                .map(|e| describe(&e, location))
                .collect(),
            Err(e) => vec![format!(
                "{location}: the schema at {pointer} does not compile: {e}"
            )],
        }
    }

    fn validator(&self, pointer: &str) -> Result<Arc<Validator>, String> {
        let mut cache = self
            .validators
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = cache.get(pointer) {
            return Ok(found.clone());
        }
        if self.doc.pointer(pointer).is_none() {
            return Err(format!("no schema at {pointer}"));
        }
        let reference = format!("{BASE_URI}#{}", utf8_percent_encode(pointer, FRAGMENT));
        let validator = jsonschema::options()
            .with_draft(Draft::Draft4)
            .should_validate_formats(true)
            .with_registry(&self.registry)
            .build(&json!({ "$ref": reference }))
            .map_err(|e| e.to_string())?;
        let validator = Arc::new(validator);
        cache.insert(pointer.to_owned(), validator.clone());
        Ok(validator)
    }

    fn check_path_params(&self, op: &OperationRef, out: &mut Vec<String>) {
        for param in op.op.params.iter().filter(|p| p.location == "path") {
            let Some(raw) = op.path_param(&param.name) else {
                continue;
            };
            let at = format!("path.{}", param.name);
            match coerce(raw, &param.kind) {
                Ok(value) => self.check_param_value(param, &value, &at, out),
                Err(e) => out.push(format!("{at}: {e}")),
            }
        }
    }

    fn check_query(&self, op: &Operation, query: &str, out: &mut Vec<String>) {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let declared = |name: &str| {
            op.params
                .iter()
                .any(|p| p.location == "query" && p.name == name)
        };
        let mut reported = Vec::new();
        for (name, _) in &pairs {
            if !declared(name) && !reported.contains(name) {
                out.push(format!("query.{name}: unknown query parameter"));
                reported.push(name.clone());
            }
        }
        for param in op.params.iter().filter(|p| p.location == "query") {
            let values: Vec<&str> = pairs
                .iter()
                .filter(|(n, _)| *n == param.name)
                .map(|(_, v)| v.as_str())
                .collect();
            let at = format!("query.{}", param.name);
            if values.is_empty() {
                if param.required {
                    out.push(format!("{at}: required parameter is missing"));
                }
                continue;
            }
            let value = match &param.kind {
                Kind::Array(item) => {
                    let raw: Vec<&str> = if param.explode {
                        values
                    } else {
                        if values.len() > 1 {
                            out.push(format!(
                                "{at}: given {} times, but the parameter is declared with \
                                 style=form, explode=false: send one comma-separated value",
                                values.len()
                            ));
                        }
                        values.iter().flat_map(|v| v.split(',')).collect()
                    };
                    raw.iter()
                        .map(|v| coerce(v, item))
                        .collect::<Result<Vec<_>, _>>()
                        .map(Value::Array)
                }
                scalar => {
                    if values.len() > 1 {
                        out.push(format!(
                            "{at}: given {} times, but it is not an array",
                            values.len()
                        ));
                    }
                    coerce(values[0], scalar)
                }
            };
            match value {
                Ok(value) => self.check_param_value(param, &value, &at, out),
                Err(e) => out.push(format!("{at}: {e}")),
            }
        }
    }

    fn check_param_value(&self, param: &Param, value: &Value, at: &str, out: &mut Vec<String>) {
        if let Some(pointer) = &param.schema {
            out.extend(self.validate_value(pointer, value, at));
        }
    }

    fn check_body(
        &self,
        op: &Operation,
        content_type: Option<&str>,
        body: &[u8],
        out: &mut Vec<String>,
    ) {
        let Some(spec) = &op.body else {
            if !body.is_empty() {
                out.push("body: this operation takes no request body".to_owned());
            }
            return;
        };
        if body.is_empty() {
            if spec.required {
                out.push("body: a request body is required".to_owned());
            }
            return;
        }
        let media = content_type
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase());
        let Some(media) = media.filter(|m| spec.media_types.iter().any(|d| d == m)) else {
            out.push(format!(
                "body: content type {} is not one of {}",
                content_type.unwrap_or("(none)"),
                spec.media_types.join(", ")
            ));
            return;
        };
        if let (Some(pointer), "application/json") = (&spec.json_schema, media.as_str()) {
            match serde_json::from_slice::<Value>(body) {
                Ok(value) => out.extend(self.validate_value(pointer, &value, "body")),
                Err(e) => out.push(format!("body: invalid JSON: {e}")),
            }
        }
    }
}

fn resolve_in<'a>(
    doc: &'a Value,
    mut value: &'a Value,
    mut pointer: String,
) -> (&'a Value, String) {
    for _ in 0..32 {
        let Some(target) = value.get("$ref").and_then(Value::as_str) else {
            break;
        };
        let Some(fragment) = target.strip_prefix('#') else {
            break;
        };
        let decoded = percent_decode_str(fragment)
            .decode_utf8_lossy()
            .into_owned();
        match doc.pointer(&decoded) {
            Some(found) => {
                value = found;
                pointer = decoded;
            }
            None => break,
        }
    }
    (value, pointer)
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

fn coerce(raw: &str, kind: &Kind) -> Result<Value, String> {
    match kind {
        Kind::String | Kind::Array(_) => Ok(Value::String(raw.to_owned())),
        Kind::Integer => raw
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{raw:?} is not an integer")),
        Kind::Number => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{raw:?} is not a number")),
        Kind::Boolean => match raw {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{raw:?} is not a boolean (true or false)")),
        },
    }
}

/// Renders one validation error as `location/instance/path: message`. For a failed `oneOf` or
/// `anyOf` it reports the errors of the closest branch. Branches ruled out by a discriminating
/// property (an `enum` mismatch of a property of the object itself) are not close; among the
/// others the closest is the one whose errors lie deepest in the instance, then the fewest.
fn describe(error: &ValidationError<'_>, location: &str) -> String {
    let at = format!("{location}{}", error.instance_path().as_str());
    let depth = |e: &ValidationError<'_>| e.instance_path().as_str().matches('/').count();
    let branches = match error.kind() {
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            context.as_slice()
        }
        _ => &[],
    };
    let discriminated_out = |errors: &&Vec<ValidationError<'static>>| {
        errors.iter().any(|e| {
            matches!(
                e.kind(),
                ValidationErrorKind::Enum { .. } | ValidationErrorKind::Constant { .. }
            ) && depth(e) == depth(error) + 1
        })
    };
    let failed: Vec<&Vec<ValidationError<'static>>> = branches
        .iter()
        .filter(|errors| !errors.is_empty())
        .collect();
    let mut candidates: Vec<_> = failed
        .iter()
        .copied()
        .filter(|b| !discriminated_out(b))
        .collect();
    if candidates.is_empty() {
        candidates = failed;
    }
    let closest = candidates.into_iter().max_by_key(|errors| {
        let shallowest = errors.iter().map(depth).min().unwrap_or(0);
        (shallowest, usize::MAX - errors.len())
    });
    let text = match closest {
        Some(errors) => {
            let inner: Vec<String> = errors.iter().map(|e| describe(e, location)).collect();
            format!(
                "{at}: matches none of the allowed schemas; closest: {}",
                inner.join("; ")
            )
        }
        None => format!("{at}: {error}"),
    };
    truncate(text)
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

// ---------------------------------------------------------------------------------------------
// Loading: OpenAPI 3.0 schema objects to JSON Schema draft 4.

/// Converts every schema object of the document in place: `components/schemas/*` and every
/// `schema` of a parameter or media type.
fn convert_document(doc: &mut Value) {
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for schema in schemas.values_mut() {
            *schema = convert_schema(schema);
        }
    }
    if let Some(root) = doc.as_object_mut() {
        for (key, value) in root.iter_mut() {
            if key == "components" {
                if let Some(components) = value.as_object_mut() {
                    for (name, section) in components.iter_mut() {
                        if name != "schemas" {
                            convert_schemas_within(section);
                        }
                    }
                }
            } else {
                convert_schemas_within(value);
            }
        }
    }
}

/// Walks non-schema OpenAPI structure, converting the value of every `schema` key.
fn convert_schemas_within(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "schema" && child.is_object() {
                    *child = convert_schema(child);
                } else if key != "example" && key != "examples" {
                    convert_schemas_within(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(convert_schemas_within),
        _ => {}
    }
}

fn convert_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let converted = match key.as_str() {
            // Annotations of OpenAPI that JSON Schema does not know, or must not see.
            "example" | "examples" | "discriminator" | "xml" | "externalDocs" | "nullable"
            | "deprecated" | "readOnly" | "writeOnly" => continue,
            k if k.starts_with("x-") => continue,
            "properties" | "patternProperties" => match value {
                Value::Object(props) => Value::Object(
                    props
                        .iter()
                        .map(|(name, s)| (name.clone(), convert_schema(s)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" | "additionalProperties" | "not" => match value {
                Value::Array(list) => Value::Array(list.iter().map(convert_schema).collect()),
                other => convert_schema(other),
            },
            "allOf" | "anyOf" | "oneOf" => match value {
                Value::Array(list) => Value::Array(list.iter().map(convert_schema).collect()),
                other => other.clone(),
            },
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if map.get("nullable").and_then(Value::as_bool) == Some(true) {
        return make_nullable(out);
    }
    Value::Object(out)
}

fn make_nullable(mut schema: Map<String, Value>) -> Value {
    if let Some(Value::Array(options)) = schema.get_mut("enum") {
        options.push(Value::Null);
    }
    match schema.get_mut("type") {
        Some(Value::String(t)) => {
            let t = std::mem::take(t);
            schema.insert("type".to_owned(), json!([t, "null"]));
            Value::Object(schema)
        }
        Some(Value::Array(types)) => {
            types.push(json!("null"));
            Value::Object(schema)
        }
        _ => json!({ "anyOf": [Value::Object(schema), { "type": "null" }] }),
    }
}

/// The service types and the schema that describes `serviceDetails` of each, in a service as
/// returned and in a service to create.
const SERVICE_DETAILS: [(&str, &str, &str); 5] = [
    ("static_site", "staticSiteDetails", "staticSiteDetailsPOST"),
    ("web_service", "webServiceDetails", "webServiceDetailsPOST"),
    (
        "private_service",
        "privateServiceDetails",
        "privateServiceDetailsPOST",
    ),
    (
        "background_worker",
        "backgroundWorkerDetails",
        "backgroundWorkerDetailsPOST",
    ),
    ("cron_job", "cronJobDetails", "cronJobDetailsPOST"),
];

/// Where the published document contradicts itself, rewrites the affected schemas. Each rewrite
/// is as strict as the document allows; none drops a constraint that a valid instance can meet.
fn apply_exceptions(doc: &mut Value) -> anyhow::Result<()> {
    // `service.serviceDetails` and `servicePOST.serviceDetails` are a `oneOf` of the five
    // per-type detail schemas with no discriminator. The schemas overlap: none forbids extra
    // properties, a web service's details also satisfy `privateServiceDetails` and
    // `backgroundWorkerDetails`, and `staticSiteDetailsPOST` requires nothing, so every web,
    // private or worker service (and every request creating one with details) would match more
    // than one branch and fail `oneOf`. Render chooses the schema by the service's `type`, so the
    // `oneOf` moves up to the service object, each branch pinning `type` to one value and
    // `serviceDetails` to that type's schema: exactly one branch can apply, and the details are
    // checked against the right schema.
    for (schema, post) in [("service", false), ("servicePOST", true)] {
        let branches: Vec<Value> = SERVICE_DETAILS
            .iter()
            .map(|(service_type, details, details_post)| {
                let target = if post { details_post } else { details };
                json!({ "properties": {
                    "type": { "enum": [service_type] },
                    "serviceDetails": { "$ref": format!("#/components/schemas/{target}") },
                }})
            })
            .collect();
        let object = schema_object(doc, &format!("/components/schemas/{schema}"))?;
        object.insert("oneOf".to_owned(), Value::Array(branches));
        let details = schema_object(
            doc,
            &format!("/components/schemas/{schema}/properties/serviceDetails"),
        )?;
        anyhow::ensure!(
            details.remove("oneOf").is_some(),
            "{schema}.serviceDetails has no oneOf"
        );
        details.insert("type".to_owned(), json!("object"));
    }
    // `servicePATCH.serviceDetails` is a `oneOf` of five per-type PATCH schemas, none of which
    // requires a property: every object matches all five, so `oneOf` can never pass. The request
    // carries no service type to choose by, so at least one of them must match (`anyOf`).
    // `envSpecificDetailsPOST` and `envSpecificDetailsPATCH` are a `oneOf` of Docker and native
    // details where the Docker branch requires nothing: every native object also matches it.
    // They become `anyOf` as well.
    for pointer in [
        "/components/schemas/servicePATCH/properties/serviceDetails",
        "/components/schemas/envSpecificDetailsPOST",
        "/components/schemas/envSpecificDetailsPATCH",
    ] {
        let object = schema_object(doc, pointer)?;
        let branches = object
            .remove("oneOf")
            .ok_or_else(|| anyhow::anyhow!("{pointer} has no oneOf"))?;
        object.insert("anyOf".to_owned(), branches);
    }
    Ok(())
}

fn schema_object<'a>(
    doc: &'a mut Value,
    pointer: &str,
) -> anyhow::Result<&'a mut Map<String, Value>> {
    doc.pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| anyhow::anyhow!("the document has no schema object at {pointer}"))
}

// ---------------------------------------------------------------------------------------------
// Loading: operations.

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn collect_operations(doc: &Value) -> anyhow::Result<Vec<Arc<Operation>>> {
    let paths = doc
        .get("paths")
        .and_then(Value::as_object)
        .ok_or_else(|| anyhow::anyhow!("the document has no paths"))?;
    let mut operations = Vec::new();
    for (template, item) in paths {
        let item_pointer = format!("/paths/{}", escape_pointer(template));
        let shared = item.get("parameters").and_then(Value::as_array);
        for method in METHODS {
            let Some(op) = item.get(method) else {
                continue;
            };
            let op_pointer = format!("{item_pointer}/{method}");
            let mut params: Vec<Param> = Vec::new();
            let sources = [
                (shared, format!("{item_pointer}/parameters")),
                (
                    op.get("parameters").and_then(Value::as_array),
                    format!("{op_pointer}/parameters"),
                ),
            ];
            for (list, base) in sources {
                for (i, raw) in list.into_iter().flatten().enumerate() {
                    let param = parse_param(doc, raw, format!("{base}/{i}"))?;
                    params.retain(|p| !(p.name == param.name && p.location == param.location));
                    params.push(param);
                }
            }
            let segments = template
                .trim_start_matches('/')
                .split('/')
                .map(
                    |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(name) => Segment::Param(name.to_owned()),
                        None => Segment::Literal(s.to_owned()),
                    },
                )
                .collect();
            operations.push(Arc::new(Operation {
                method: Method::from_bytes(method.to_ascii_uppercase().as_bytes())?,
                template: template.clone(),
                segments,
                operation_id: op
                    .get("operationId")
                    .and_then(Value::as_str)
                    .unwrap_or(template)
                    .to_owned(),
                params,
                body: parse_body(doc, op, &op_pointer),
                responses: parse_responses(doc, op, &op_pointer),
            }));
        }
    }
    Ok(operations)
}

fn parse_param(doc: &Value, raw: &Value, pointer: String) -> anyhow::Result<Param> {
    let (param, pointer) = resolve_in(doc, raw, pointer);
    let field = |name: &str| param.get(name).and_then(Value::as_str);
    let name =
        field("name").ok_or_else(|| anyhow::anyhow!("parameter at {pointer} has no name"))?;
    let location = field("in").unwrap_or("query");
    let style = field("style").unwrap_or(if location == "query" {
        "form"
    } else {
        "simple"
    });
    let explode = param
        .get("explode")
        .and_then(Value::as_bool)
        .unwrap_or(style == "form");
    let schema = param.get("schema").map(|_| format!("{pointer}/schema"));
    let kind = match &schema {
        Some(p) => kind_of(doc, p),
        None => Kind::String,
    };
    Ok(Param {
        name: name.to_owned(),
        location: location.to_owned(),
        required: param
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        explode,
        kind,
        schema,
    })
}

fn kind_of(doc: &Value, pointer: &str) -> Kind {
    let Some(schema) = doc.pointer(pointer) else {
        return Kind::String;
    };
    let (schema, pointer) = resolve_in(doc, schema, pointer.to_owned());
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => Kind::Integer,
        Some("number") => Kind::Number,
        Some("boolean") => Kind::Boolean,
        Some("array") => Kind::Array(Box::new(kind_of(doc, &format!("{pointer}/items")))),
        _ => Kind::String,
    }
}

fn parse_body(doc: &Value, op: &Value, op_pointer: &str) -> Option<RequestBody> {
    let raw = op.get("requestBody")?;
    let (body, pointer) = resolve_in(doc, raw, format!("{op_pointer}/requestBody"));
    let content = body.get("content").and_then(Value::as_object);
    let media_types = content
        .map(|c| c.keys().map(|k| k.to_ascii_lowercase()).collect())
        .unwrap_or_default();
    let json_schema = content
        .and_then(|c| c.get("application/json"))
        .and_then(|m| m.get("schema"))
        .map(|_| format!("{pointer}/content/application~1json/schema"));
    Some(RequestBody {
        required: body
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        media_types,
        json_schema,
    })
}

fn parse_responses(doc: &Value, op: &Value, op_pointer: &str) -> Vec<(String, ResponseSpec)> {
    let Some(responses) = op.get("responses").and_then(Value::as_object) else {
        return Vec::new();
    };
    responses
        .iter()
        .map(|(code, raw)| {
            let start = format!("{op_pointer}/responses/{}", escape_pointer(code));
            let (response, pointer) = resolve_in(doc, raw, start);
            let content = response.get("content").and_then(Value::as_object);
            let json_schema = content
                .and_then(|c| c.get("application/json"))
                .and_then(|m| m.get("schema"))
                .map(|_| format!("{pointer}/content/application~1json/schema"));
            let spec = ResponseSpec {
                has_content: content.is_some_and(|c| !c.is_empty()),
                json_schema,
            };
            (code.clone(), spec)
        })
        .collect()
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract() -> Arc<Contract> {
        Contract::render()
    }

    #[test]
    fn literal_segments_win_and_params_are_decoded() {
        let c = contract();
        let op = c
            .operation(&Method::GET, "/services/srv-1/env-vars/MY%20KEY")
            .expect("matches");
        assert_eq!(op.operation_id(), "retrieve-env-var");
        assert_eq!(op.template(), "/services/{serviceId}/env-vars/{envVarKey}");
        assert_eq!(op.path_param("envVarKey"), Some("MY KEY"));
        let op = c
            .operation(&Method::POST, "/blueprints/validate")
            .expect("matches");
        assert_eq!(op.template(), "/blueprints/validate");
        assert!(c.operation(&Method::GET, "/nope").is_none());
    }

    #[test]
    fn valid_service_post_passes_and_missing_owner_fails() {
        let c = contract();
        let body = json!({
            "type": "static_site", "name": "site", "ownerId": "tea-1",
            "repo": "https://github.com/acme/site", "rootDir": "web",
            "serviceDetails": { "buildCommand": "npm run build", "publishPath": "dist" },
        });
        let bytes = serde_json::to_vec(&body).expect("serialises");
        let ok = c.validate_request(
            &Method::POST,
            "/services",
            None,
            Some("application/json"),
            &bytes,
        );
        assert_eq!(
            ok.map(|op| op.operation_id().to_owned()),
            Ok("create-service".to_owned())
        );

        let mut missing = body.clone();
        missing.as_object_mut().expect("object").remove("ownerId");
        let bytes = serde_json::to_vec(&missing).expect("serialises");
        let errors = c
            .validate_request(
                &Method::POST,
                "/services",
                None,
                Some("application/json"),
                &bytes,
            )
            .expect_err("ownerId is required");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("body") && e.contains("ownerId")),
            "{errors:?}"
        );
    }

    #[test]
    fn service_details_are_checked_against_the_schema_of_the_type() {
        let c = contract();
        let web = json!({
            "type": "web_service", "name": "api", "ownerId": "tea-1",
            "serviceDetails": { "runtime": "docker", "plan": "starter",
                "envSpecificDetails": { "dockerfilePath": "./Dockerfile" } },
        });
        let bytes = serde_json::to_vec(&web).expect("serialises");
        assert!(
            c.validate_request(
                &Method::POST,
                "/services",
                None,
                Some("application/json"),
                &bytes
            )
            .is_ok()
        );
        let bad = json!({
            "type": "static_site", "name": "site", "ownerId": "tea-1",
            "serviceDetails": { "publishPath": 7 },
        });
        let bytes = serde_json::to_vec(&bad).expect("serialises");
        let errors = c
            .validate_request(
                &Method::POST,
                "/services",
                None,
                Some("application/json"),
                &bytes,
            )
            .expect_err("publishPath must be a string");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("body/serviceDetails/publishPath")),
            "{errors:?}"
        );
    }

    #[test]
    fn query_parameters_are_checked() {
        let c = contract();
        let errors = c
            .validate_request(&Method::GET, "/services", Some("limit=500"), None, b"")
            .expect_err("limit is at most 100");
        assert!(
            errors.iter().any(|e| e.contains("query.limit")),
            "{errors:?}"
        );

        let errors = c
            .validate_request(&Method::GET, "/services", Some("colour=blue"), None, b"")
            .expect_err("unknown parameter");
        assert!(
            errors.iter().any(|e| e.contains("query.colour")),
            "{errors:?}"
        );

        let errors = c
            .validate_request(&Method::GET, "/services", Some("limit=ten"), None, b"")
            .expect_err("not an integer");
        assert!(
            errors.iter().any(|e| e.contains("not an integer")),
            "{errors:?}"
        );

        let ok = c.validate_request(
            &Method::GET,
            "/services",
            Some("type=web_service,static_site&limit=2&includePreviews=false"),
            None,
            b"",
        );
        assert!(ok.is_ok(), "{ok:?}");
        let errors = c
            .validate_request(
                &Method::GET,
                "/services",
                Some("type=web_service,gizmo"),
                None,
                b"",
            )
            .expect_err("gizmo is no service type");
        assert!(
            errors.iter().any(|e| e.contains("query.type/1")),
            "{errors:?}"
        );
        // `resource` and `type` of /logs are exploded (the default): repetition is the array form.
        let ok = c.validate_request(
            &Method::GET,
            "/logs",
            Some("ownerId=tea-1&resource=srv-1&resource=srv-2&type=build&limit=5"),
            None,
            b"",
        );
        assert!(ok.is_ok(), "{ok:?}");
        let errors = c
            .validate_request(&Method::GET, "/logs", Some("resource=srv-1"), None, b"")
            .expect_err("ownerId is required");
        assert!(
            errors.iter().any(|e| e.contains("query.ownerId: required")),
            "{errors:?}"
        );
        assert!(
            c.validate_request(
                &Method::GET,
                "/services",
                Some("includePreviews=maybe"),
                None,
                b""
            )
            .is_err()
        );
        assert!(
            c.validate_request(&Method::GET, "/nothing/here", None, None, b"")
                .is_err_and(|e| e == ["no operation GET /nothing/here"])
        );
    }

    #[test]
    fn request_body_presence_is_checked() {
        let c = contract();
        let path = "/services/srv-1/deploys";
        assert!(
            c.validate_request(&Method::POST, path, None, None, b"")
                .is_err()
        );
        let ok = c.validate_request(
            &Method::POST,
            path,
            None,
            Some("application/json"),
            br#"{"clearCache":"clear"}"#,
        );
        assert!(ok.is_ok(), "{ok:?}");
        let errors = c
            .validate_request(
                &Method::POST,
                path,
                None,
                Some("application/json"),
                br#"{"clearCache":"sometimes"}"#,
            )
            .expect_err("not in the enum");
        assert!(
            errors.iter().any(|e| e.contains("body/clearCache")),
            "{errors:?}"
        );
        assert!(
            c.validate_request(
                &Method::GET,
                "/services/srv-1",
                None,
                Some("application/json"),
                b"{}"
            )
            .is_err()
        );
    }

    #[test]
    fn responses_are_checked() {
        let c = contract();
        let deploy = c
            .operation(&Method::POST, "/services/srv-1/deploys")
            .expect("matches");
        assert!(c.validate_response(&deploy, 202, None, b"").is_empty());
        let errors = c.validate_response(&deploy, 418, None, b"");
        assert!(
            errors.iter().any(|e| e.contains("418 is not declared")),
            "{errors:?}"
        );
        let errors = c.validate_response(&deploy, 202, Some("application/json"), b"{}");
        assert!(
            errors.iter().any(|e| e.contains("no content is declared")),
            "{errors:?}"
        );
        let good = br#"{"id":"dep-1","status":"live","createdAt":"2024-01-02T03:04:05Z"}"#;
        assert!(
            c.validate_response(&deploy, 201, Some("application/json"), good)
                .is_empty()
        );
        let wrong = br#"{"id":7,"status":"live"}"#;
        let errors = c.validate_response(&deploy, 201, Some("application/json"), wrong);
        assert!(
            errors.iter().any(|e| e.contains("response 201 body/id")),
            "{errors:?}"
        );
        let date = br#"{"id":"dep-1","createdAt":"yesterday"}"#;
        assert!(
            !c.validate_response(&deploy, 201, Some("application/json"), date)
                .is_empty()
        );
        // A `$ref`'d response of components/responses.
        let err = br#"{"id":"not_found","message":"no such service"}"#;
        assert!(
            c.validate_response(&deploy, 404, Some("application/json"), err)
                .is_empty()
        );
        assert!(
            !c.validate_response(&deploy, 404, Some("application/json"), br#"{"id":1}"#)
                .is_empty()
        );
    }

    #[test]
    fn refs_into_paths_resolve() {
        let c = contract();
        let logs = c.operation(&Method::GET, "/logs").expect("matches");
        let body = json!({
            "hasMore": false, "nextStartTime": "2024-01-02T03:04:05Z",
            "nextEndTime": "2024-01-02T03:04:05Z",
            "logs": [{ "id": "l1", "message": "hi", "timestamp": "2024-01-02T03:04:05Z",
                       "labels": [{ "name": "deploy", "value": "dep-1" }] }],
        });
        let bytes = serde_json::to_vec(&body).expect("serialises");
        let errors = c.validate_response(&logs, 200, Some("application/json"), &bytes);
        assert!(
            errors.iter().any(|e| e.contains("labels/0/name")),
            "{errors:?}"
        );
    }

    #[test]
    fn openapi_schemas_become_draft_4() {
        let nullable = json!({ "type": "string", "enum": ["a"], "nullable": true, "example": "a" });
        assert_eq!(
            convert_schema(&nullable),
            json!({ "type": ["string", "null"], "enum": ["a", null] })
        );
        let nested =
            json!({ "properties": { "example": { "type": "integer", "x-go-type": "int64" } } });
        assert_eq!(
            convert_schema(&nested),
            json!({ "properties": { "example": { "type": "integer" } } })
        );
        let untyped = json!({ "nullable": true, "minimum": 1 });
        assert_eq!(
            convert_schema(&untyped),
            json!({ "anyOf": [{ "minimum": 1 }, { "type": "null" }] })
        );
    }
}

//! Addresses, directive schemas and the envelope's JSON form.

use queue_gateway::{
    Address, AddressError, AddressKind, BlobRef, Body, DIRECTIVES, Envelope, IdError, PageId,
    validate,
};
use serde_json::{Value, json};
use time::macros::datetime;
use uuid::Uuid;

fn address(s: &str) -> Address {
    s.parse()
        .unwrap_or_else(|e| panic!("{s} should parse: {e}"))
}

#[test]
fn address_grammar() {
    let accepted = [
        ("layout-manager", AddressKind::LayoutManager, None),
        ("dataset-router", AddressKind::DatasetRouter, None),
        ("plotly-panel-1", AddressKind::PlotlyPanel, Some("1")),
        (
            "plotly-panel-price_chart-2",
            AddressKind::PlotlyPanel,
            Some("price_chart-2"),
        ),
        (
            "text-component-intro",
            AddressKind::TextComponent,
            Some("intro"),
        ),
        ("text-component-a-", AddressKind::TextComponent, Some("a-")),
    ];
    for (raw, kind, id) in accepted {
        let parsed = address(raw);
        assert_eq!(parsed.kind(), kind, "{raw}");
        assert_eq!(parsed.id(), id, "{raw}");
        assert_eq!(parsed.to_string(), raw);
    }
    let long = format!("plotly-panel-{}", "a".repeat(65));
    let max = format!("plotly-panel-{}", "a".repeat(64));
    assert!(max.parse::<Address>().is_ok());

    let rejected = [
        ("", "unknown address"),
        ("layout", "unknown address"),
        ("layout-manager-1", "unknown address"),
        ("Layout-Manager", "unknown address"),
        ("plotly-panelx", "unknown address"),
        ("chart-1", "unknown address"),
        ("plotly-panel", "the {id} of plotly-panel-{id} is empty"),
        ("plotly-panel-", "the {id} of plotly-panel-{id} is empty"),
        (
            "text-component-_a",
            "must start with a lowercase letter or a digit",
        ),
        (
            "text-component-A",
            "must start with a lowercase letter or a digit",
        ),
        ("plotly-panel-a b", "' ' at position 1"),
        ("plotly-panel-ä", "must start with"),
        ("text-component-a/b", "'/' at position 1"),
        (long.as_str(), "65 characters long"),
    ];
    for (raw, expected) in rejected {
        let error = raw
            .parse::<Address>()
            .expect_err(&format!("{raw:?} should be refused"));
        assert!(
            error.to_string().contains(expected),
            "{raw:?}: {error} lacks {expected:?}"
        );
    }
    assert_eq!(
        "plotly-panel-".parse::<Address>(),
        Err(AddressError::Id {
            kind: AddressKind::PlotlyPanel,
            error: IdError::Empty
        })
    );
}

#[test]
fn page_id_grammar() {
    assert!("page-1".parse::<PageId>().is_ok());
    assert!("0".parse::<PageId>().is_ok());
    assert_eq!("".parse::<PageId>(), Err(IdError::Empty));
    assert_eq!("-a".parse::<PageId>(), Err(IdError::BadStart('-')));
    assert!(serde_json::from_value::<PageId>(json!("Page")).is_err());
}

fn examples(directive: &str) -> (&'static str, Value, Value, &'static str) {
    // (address, a realistic body, a broken body, the field the broken one is refused on)
    match directive {
        "layout.set" => (
            "layout-manager",
            json!({
                "title": "ETH market",
                "areas": ["header header", "chart side", "chart ."],
                "columns": ["2fr", "1fr"],
                "rows": ["auto", "400px", "1fr"],
                "gap": "1rem",
                "regions": [
                    {"area": "header", "component": "text-component-intro"},
                    {"area": "chart", "component": "plotly-panel-price", "title": "Price"},
                    {"area": "side", "component": "text-component-filters"}
                ]
            }),
            json!({
                "areas": ["header"],
                "regions": [{"area": "header", "component": "<div>hi</div>"}]
            }),
            "/body/regions/0/component",
        ),
        "component.remove" => (
            "layout-manager",
            json!({"component": "plotly-panel-price"}),
            json!({"component": "layout-manager"}),
            "/body/component",
        ),
        "text.set" => (
            "text-component-intro",
            json!({"text": "# Prices\nDaily **close**.", "format": "markdown", "label": "Intro"}),
            json!({"text": "hi", "format": "html"}),
            "/body/format",
        ),
        "form.set" => (
            "text-component-filters",
            json!({
                "title": "Filters",
                "submitLabel": "Apply",
                "fields": [
                    {"name": "symbol", "label": "Symbol", "type": "select", "required": true,
                     "options": [{"value": "ETH"}, {"value": "BTC", "label": "Bitcoin"}]},
                    {"name": "days", "label": "Days", "type": "number", "default": 30},
                    {"name": "log_scale", "label": "Log scale", "type": "checkbox"},
                    {"name": "note", "type": "textarea", "placeholder": "Anything else?"}
                ]
            }),
            json!({"fields": [{"name": "symbol", "type": "select"}]}),
            "/body/fields/0/options",
        ),
        "plotly.figure" => (
            "plotly-panel-price",
            json!({
                "data": [{"type": "scatter", "mode": "lines", "x": ["2025-07-01", "2025-07-02"], "y": [3400.5, 3452.1]}],
                "layout": {"title": {"text": "ETH close"}, "yaxis": {"type": "log"}},
                "config": {"responsive": true}
            }),
            json!({"data": [{"type": "scatter"}]}),
            "/body/layout",
        ),
        "dataset.route" => (
            "dataset-router",
            json!({
                "dataset": {"blobId": "01980000-0000-7000-8000-000000000001"},
                "to": ["plotly-panel-price", "plotly-panel-volume"],
                "mapping": {"x": "date", "y": "close", "marker.color": "side"}
            }),
            json!({
                "dataset": {"rows": [{"date": "2025-07-01", "close": 1}]},
                "to": ["text-component-intro"],
                "mapping": {"x": "date"}
            }),
            "/body/to/0",
        ),
        other => panic!("no example for {other}"),
    }
}

#[test]
fn every_directive_accepts_a_realistic_body_and_refuses_a_broken_one() {
    for spec in DIRECTIVES {
        let (to, good, bad, field) = examples(spec.name);
        let to = address(to);
        assert_eq!(to.kind(), spec.to, "{}", spec.name);
        assert_eq!(validate(&to, spec.name, &good), Ok(()), "{}", spec.name);
        let errors = validate(&to, spec.name, &bad).expect_err(spec.name);
        assert!(
            errors.iter().any(|e| e.field == field),
            "{}: expected an error on {field}, got {errors:?}",
            spec.name
        );
    }
}

#[test]
fn inline_rows_and_bad_blob_ids_in_dataset_route() {
    let to = address("dataset-router");
    let rows = json!({
        "dataset": {"rows": [{"date": "2025-07-01", "close": 3400.5}]},
        "to": ["plotly-panel-price"],
        "mapping": {"x": "date", "y": "close"}
    });
    assert_eq!(validate(&to, "dataset.route", &rows), Ok(()));
    let bad_id = json!({
        "dataset": {"blobId": "not-a-uuid"},
        "to": ["plotly-panel-price"],
        "mapping": {"x": "date"}
    });
    let errors = validate(&to, "dataset.route", &bad_id).expect_err("a blob id is a uuid");
    assert!(
        errors.iter().any(|e| e.field.starts_with("/body/dataset")),
        "{errors:?}"
    );
}

#[test]
fn missing_and_unexpected_properties_point_at_themselves() {
    let to = address("text-component-intro");
    let errors = validate(&to, "text.set", &json!({"label": "x"})).expect_err("text is required");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "/body/text");
    let errors = validate(&to, "text.set", &json!({"text": "x", "html": "<b>"}))
        .expect_err("no extra properties");
    assert_eq!(errors[0].field, "/body/html");
}

#[test]
fn an_address_refuses_directives_it_does_not_accept() {
    let figure = json!({"data": [], "layout": {}});
    let errors = validate(&address("text-component-intro"), "plotly.figure", &figure)
        .expect_err("wrong address");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].field, "/directive");
    assert!(
        errors[0].message.contains("accepts text.set, form.set"),
        "{}",
        errors[0].message
    );

    let errors = validate(&address("layout-manager"), "layout.html", &json!({}))
        .expect_err("unknown directive");
    assert_eq!(errors[0].field, "/directive");
    assert!(
        errors[0].message.contains("unknown directive"),
        "{}",
        errors[0].message
    );
}

fn envelope(body: Body) -> Envelope {
    Envelope {
        id: Uuid::now_v7(),
        page: "eth-market".parse().expect("valid page id"),
        to: address("plotly-panel-price"),
        from: "ai".into(),
        directive: "plotly.figure".into(),
        body,
        seq: 42,
        sent_at: datetime!(2025-07-30 18:15:02.5 UTC),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    }
}

#[test]
fn envelope_json_round_trip() {
    let inline = envelope(Body::Inline(json!({"data": [], "layout": {}})));
    let text = serde_json::to_value(&inline).expect("serializes");
    assert_eq!(text["to"], "plotly-panel-price");
    assert_eq!(text["page"], "eth-market");
    assert_eq!(text["sentAt"], "2025-07-30T18:15:02.5Z");
    assert_eq!(text["body"], json!({"inline": {"data": [], "layout": {}}}));
    assert_eq!(
        serde_json::from_value::<Envelope>(text).expect("parses"),
        inline
    );
    assert_eq!(inline.check(), Ok(()));

    let blob = envelope(Body::Blob(BlobRef {
        blob_id: Uuid::now_v7(),
        sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
        size: 183_204,
        content_type: "application/json".into(),
    }));
    let text = serde_json::to_value(&blob).expect("serializes");
    assert!(text["body"]["blob"]["blobId"].is_string());
    assert_eq!(text["body"]["blob"]["contentType"], "application/json");
    assert!(text.get("traceparent").is_some());
    assert_eq!(
        serde_json::from_value::<Envelope>(text).expect("parses"),
        blob
    );
    assert_eq!(blob.check(), Ok(()));
}

#[test]
fn envelope_refuses_bad_addresses_and_checks_inline_bodies() {
    let mut text = serde_json::to_value(envelope(Body::Inline(json!({})))).expect("serializes");
    text["to"] = json!("plotly-panel-");
    let error = serde_json::from_value::<Envelope>(text).expect_err("bad address");
    assert!(error.to_string().contains("plotly-panel-{id}"), "{error}");

    let errors = envelope(Body::Inline(json!({"data": []})))
        .check()
        .expect_err("layout is required");
    assert_eq!(errors[0].field, "/body/inline/layout");
}

#[test]
fn envelope_openapi_schema_describes_the_wire_form() {
    let schema = serde_json::to_value(<Envelope as utoipa::PartialSchema>::schema())
        .expect("schema serializes");
    let properties = &schema["properties"];
    assert_eq!(properties["to"]["type"], "string");
    assert!(
        properties["to"]["pattern"]
            .as_str()
            .is_some_and(|p| p.contains("plotly-panel"))
    );
    assert_eq!(properties["sentAt"]["format"], "date-time");
}

//! `BusConfig` reads what `infra/config.schema.json` declares for `BUS_BACKEND`.

use autonoma_bus::{BusBackend, BusConfig};
use serde_json::{Value, json};

#[test]
fn bus_backend_defaults_to_postgres_and_reads_every_schema_value() {
    let schema: Value = serde_json::from_str(include_str!("../../../infra/config.schema.json"))
        .expect("schema parses");
    let var = &schema["$defs"]["BUS_BACKEND"];
    assert_eq!(var["default"], "postgres");
    assert_eq!(
        schema["$defs"]["bus"]["properties"]["BUS_BACKEND"]["$ref"],
        "#/$defs/BUS_BACKEND"
    );

    let unset: BusConfig = serde_json::from_value(json!({})).expect("unset");
    assert_eq!(unset.bus_backend, BusBackend::Postgres);

    let values = var["enum"].as_array().expect("an enum");
    let parsed: Vec<BusBackend> = values
        .iter()
        .map(|value| {
            let config: BusConfig = serde_json::from_value(json!({ "BUS_BACKEND": value }))
                .unwrap_or_else(|err| panic!("BUS_BACKEND={value}: {err}"));
            config.bus_backend
        })
        .collect();
    assert_eq!(parsed, [BusBackend::Postgres, BusBackend::Sqs]);
}

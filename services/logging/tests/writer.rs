//! The writer when the database refuses a record that passed validation (here: a constraint
//! added to the table after the service started): the rest of its chunk is still stored, and
//! the refused record is counted rather than silently dropped.

mod support;

use serde_json::{Value, json};
use support::{KEY, frame, start};

#[tokio::test]
async fn a_record_the_database_refuses_does_not_sink_its_chunk() {
    let service = start(&[]).await;
    sqlx::raw_sql(
        "ALTER TABLE logs ADD CONSTRAINT logs_no_forbidden CHECK (message <> 'forbidden')",
    )
    .execute(&service.db.pool)
    .await
    .expect("add constraint");

    let batch = json!([
        frame("api", "info", "first"),
        frame("api", "info", "forbidden"),
        frame("api", "info", "third"),
    ]);
    assert_eq!(service.post(&batch).await.status(), 202);
    service.wait_for_rows(2).await;

    // The queue is empty once the writer is done with the whole chunk.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let metrics = loop {
        let metrics = service
            .http
            .get(service.url("/metrics"))
            .header("x-internal-key", KEY)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if metrics.contains("log_ingest_queue_depth{service=\"logging\"} 0") {
            break metrics;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let sample = |name: &str, label: &str| {
        metrics
            .lines()
            .find(|line| line.starts_with(name) && line.contains(label))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<f64>().ok())
    };
    assert_eq!(
        sample("log_records_rejected_total", "reason=\"database\""),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample("log_records_written_total", ""),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample("log_records_ingested_total", ""),
        Some(3.0),
        "{metrics}"
    );

    let messages: Vec<Value> = service
        .items("")
        .await
        .iter()
        .map(|item| item["message"].clone())
        .collect();
    assert_eq!(messages, [json!("third"), json!("first")]);
    service.stop().await;
}

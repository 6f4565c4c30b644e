//! `GET /logs/stream`: a real client reading the event stream receives what is posted after
//! it connected, filtered and in order, and resumes exactly after `Last-Event-ID`.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{PASS, Running, USER, frame, start};

const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug)]
struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl SseEvent {
    fn id(&self) -> i64 {
        self.id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .expect("numeric event id")
    }

    fn record(&self) -> Value {
        serde_json::from_str(&self.data).expect("data is a LogOut")
    }

    fn message(&self) -> String {
        self.record()["message"]
            .as_str()
            .expect("message")
            .to_owned()
    }
}

/// A streaming response read event by event.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    async fn open(service: &Running, query: &str, last_event_id: Option<i64>) -> EventStream {
        let mut request = service
            .http
            .get(service.url(&format!("/logs/stream{query}")))
            .basic_auth(USER, Some(PASS));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.expect("stream request");
        assert_eq!(response.status(), 200, "GET /logs/stream{query}");
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` if none arrives within `timeout`.
    async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: None,
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        event.id = Some(value.trim_start().to_owned());
                        any = true;
                    } else if let Some(value) = line.strip_prefix("event:") {
                        event.event = Some(value.trim_start().to_owned());
                        any = true;
                    } else if let Some(value) = line.strip_prefix("data:") {
                        if !event.data.is_empty() {
                            event.data.push('\n');
                        }
                        event
                            .data
                            .push_str(value.strip_prefix(' ').unwrap_or(value));
                        any = true;
                    }
                }
                if any {
                    return Some(event);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .expect("stream body");
            let chunk = chunk.expect("the stream stays open");
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }

    async fn take(&mut self, count: usize) -> Vec<SseEvent> {
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            let event = self.next(WAIT).await.unwrap_or_else(|| {
                panic!(
                    "only {} of {count} events arrived: {events:?}",
                    events.len()
                )
            });
            events.push(event);
        }
        events
    }

    async fn assert_quiet(&mut self) {
        if let Some(event) = self.next(Duration::from_millis(700)).await {
            panic!("unexpected event {event:?}");
        }
    }
}

fn messages(events: &[SseEvent]) -> Vec<String> {
    events.iter().map(SseEvent::message).collect()
}

#[tokio::test]
async fn live_records_are_streamed_filtered_and_in_order() {
    let service = start(&[]).await;
    assert_eq!(
        service
            .post(&frame("svc-a", "error", "before"))
            .await
            .status(),
        202
    );
    service.wait_for_rows(1).await;

    let mut stream = EventStream::open(&service, "?service=svc-a&level=info", None).await;
    let batch = json!([
        frame("svc-a", "info", "a1"),
        frame("svc-b", "error", "b1"),
        frame("svc-a", "debug", "a-debug"),
        frame("svc-a", "error", "a2"),
    ]);
    assert_eq!(service.post(&batch).await.status(), 202);
    assert_eq!(
        service.post(&frame("svc-a", "warn", "a3")).await.status(),
        202
    );

    let events = stream.take(3).await;
    assert_eq!(messages(&events), ["a1", "a2", "a3"]);
    for event in &events {
        assert_eq!(event.event.as_deref(), Some("log"));
        let record = event.record();
        assert_eq!(record["id"].as_i64(), Some(event.id()));
        assert_eq!(record["service"], "svc-a");
        assert!(record["receivedAt"].is_string());
    }
    assert!(events.windows(2).all(|w| w[0].id() < w[1].id()));
    stream.assert_quiet().await;
    drop(stream);
    service.stop().await;
}

#[tokio::test]
async fn reconnecting_with_last_event_id_resumes_exactly() {
    let service = start(&[]).await;
    let mut stream = EventStream::open(&service, "", None).await;
    let first: Vec<Value> = (0..6)
        .map(|i| frame("api", "info", &format!("r{i}")))
        .collect();
    let second: Vec<Value> = (6..10)
        .map(|i| frame("api", "info", &format!("r{i}")))
        .collect();
    assert_eq!(service.post(&Value::Array(first)).await.status(), 202);
    assert_eq!(service.post(&Value::Array(second)).await.status(), 202);

    let seen = stream.take(4).await;
    assert_eq!(messages(&seen), ["r0", "r1", "r2", "r3"]);
    let last_seen = seen[3].id();
    drop(stream);

    // Written while no client is connected.
    let offline: Vec<Value> = (10..15)
        .map(|i| frame("api", "info", &format!("r{i}")))
        .collect();
    assert_eq!(service.post(&Value::Array(offline)).await.status(), 202);
    service.wait_for_rows(15).await;

    let mut resumed = EventStream::open(&service, "", Some(last_seen)).await;
    let rest = resumed.take(11).await;
    let expected: Vec<String> = (4..15).map(|i| format!("r{i}")).collect();
    assert_eq!(messages(&rest), expected, "none lost, none repeated");
    resumed.assert_quiet().await;

    // The query parameter works for clients that cannot set the header; the header wins.
    let r12 = rest[8].id();
    let mut by_query =
        EventStream::open(&service, &format!("?lastEventId={r12}&service=api"), None).await;
    assert_eq!(messages(&by_query.take(2).await), ["r13", "r14"]);
    by_query.assert_quiet().await;
    let mut both = EventStream::open(&service, "?lastEventId=0", Some(r12)).await;
    assert_eq!(messages(&both.take(2).await), ["r13", "r14"]);

    // Still live after resuming.
    assert_eq!(
        service.post(&frame("api", "info", "r15")).await.status(),
        202
    );
    assert_eq!(messages(&resumed.take(1).await), ["r15"]);

    let bad = service
        .http
        .get(service.url("/logs/stream"))
        .basic_auth(USER, Some(PASS))
        .header("last-event-id", "yesterday")
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 400);
    let problem: Value = bad.json().await.expect("problem");
    assert_eq!(problem["errors"][0]["field"], "Last-Event-ID");
    drop((resumed, by_query, both));
    service.stop().await;
}

#[tokio::test]
async fn a_client_far_behind_is_caught_up_from_the_table() {
    let service = start(&[]).await;
    let total = 1234;
    for chunk in (0..total).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| {
                let service = if i % 2 == 0 { "even" } else { "odd" };
                frame(service, "info", &format!("m{i}"))
            })
            .collect();
        assert_eq!(service.post(&Value::Array(batch)).await.status(), 202);
    }
    service.wait_for_rows(total).await;

    let mut stream = EventStream::open(&service, "?service=odd", Some(0)).await;
    let events = stream.take(617).await;
    let expected: Vec<String> = (0..total)
        .filter(|i| i % 2 == 1)
        .map(|i| format!("m{i}"))
        .collect();
    assert_eq!(messages(&events), expected);
    stream.assert_quiet().await;
    drop(stream);
    service.stop().await;
}

#[tokio::test]
async fn open_streams_end_when_the_service_shuts_down() {
    let service = start(&[]).await;
    let mut stream = EventStream::open(&service, "", None).await;
    let shutdown = service.shutdown.clone();
    let stopped = tokio::spawn(service.stop());
    shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = stream.response.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end");
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("the service stopped promptly")
        .expect("task");
}

/// Writes run side by side, so a record can commit after one with a larger id. The stream
/// must hold the larger one back until the earlier write settles, then send both in id order:
/// a client resuming after the larger id would otherwise never see the smaller one.
#[tokio::test]
async fn a_record_that_commits_late_is_streamed_in_order_not_skipped() {
    let service = start(&[]).await;
    let mut stream = EventStream::open(&service, "?service=svc-order", None).await;

    // Two writes in flight, reserved the way the service's writers reserve theirs.
    let first = InFlight::reserve(&service, "first").await;
    let late = InFlight::reserve(&service, "late").await;
    assert!(late.id > first.id);
    assert_eq!(
        service
            .post(&frame("svc-order", "info", "early"))
            .await
            .status(),
        202
    );
    let early_id: i64 = {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let id: Option<i64> = sqlx::query_scalar("SELECT id FROM logs WHERE message = 'early'")
                .fetch_optional(&service.db.pool)
                .await
                .expect("select");
            if let Some(id) = id {
                break id;
            }
            assert!(tokio::time::Instant::now() < deadline, "never written");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    assert!(early_id > late.id, "{early_id} after {}", late.id);
    // Committed, but behind writes in flight: not sent yet.
    stream.assert_quiet().await;

    // The first write settles and wakes the stream: it gets that record, and not yet the one
    // that committed behind the late write.
    first.settle().await;
    assert_eq!(messages(&stream.take(1).await), ["first"]);
    stream.assert_quiet().await;

    late.settle().await;
    let events = stream.take(2).await;
    assert_eq!(messages(&events), ["late", "early"]);
    assert!(events[0].id() < events[1].id());
    stream.assert_quiet().await;
    drop(stream);
    service.stop().await;
}

/// A log row written outside the service, as its writers write: reserved and announced, then
/// committed and withdrawn when told.
struct InFlight {
    conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
    floor: i64,
    id: i64,
}

impl InFlight {
    async fn reserve(service: &Running, message: &str) -> InFlight {
        let mut conn = service.db.pool.acquire().await.expect("connection");
        let (floor, id): (i64, i64) =
            sqlx::query_as("SELECT floor, first FROM logs_begin_write(1)")
                .fetch_one(&mut *conn)
                .await
                .expect("reserve");
        sqlx::query("BEGIN")
            .execute(&mut *conn)
            .await
            .expect("begin");
        sqlx::query(
            "INSERT INTO logs (id, ts, level, service, message)
             OVERRIDING SYSTEM VALUE VALUES ($1, now(), 'info', 'svc-order', $2)",
        )
        .bind(id)
        .bind(message)
        .execute(&mut *conn)
        .await
        .expect("insert");
        InFlight { conn, floor, id }
    }

    async fn settle(mut self) {
        sqlx::query("COMMIT")
            .execute(&mut *self.conn)
            .await
            .expect("commit");
        sqlx::query("SELECT pg_advisory_unlock_shared($1), pg_notify('autonoma_logs', '')")
            .bind(self.floor)
            .execute(&mut *self.conn)
            .await
            .expect("settle");
    }
}

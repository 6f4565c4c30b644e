//! One suite of behaviour, run against both backends: Postgres on a fresh test database and
//! SQS on the test run's SQS-compatible server (`TEST_SQS_ENDPOINT`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use autonoma_bus::{
    Bus, BusBackend, BusConfig, Error, MAX_MESSAGE_BYTES, OutgoingMessage, QueueOptions, QueueRef,
    dlq_name,
};
use autonoma_testkit::TestDb;
use tokio::time::Instant;

/// A bus and whatever must live as long as it.
struct Harness {
    bus: Bus,
    _db: Option<TestDb>,
}

async fn postgres() -> Harness {
    let db = autonoma_testkit::test_db().await;
    let config = BusConfig {
        bus_backend: BusBackend::Postgres,
    };
    let bus = Bus::connect(&config, Some(&db.pool), None)
        .await
        .expect("postgres bus");
    Harness { bus, _db: Some(db) }
}

async fn sqs() -> Harness {
    let aws = serde_json::from_value(serde_json::json!({
        "AWS_ENDPOINT_URL": autonoma_testkit::sqs_endpoint(),
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }))
    .expect("aws config");
    let config = BusConfig {
        bus_backend: BusBackend::Sqs,
    };
    let bus = Bus::connect(&config, None, Some(&aws))
        .await
        .expect("sqs bus");
    Harness { bus, _db: None }
}

/// Each case runs once per backend, as `postgres::<case>` and `sqs::<case>`.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let harness = super::postgres().await;
                    super::$case(&harness.bus).await;
                }
            )*
        }
        mod sqs {
            $(
                #[tokio::test]
                async fn $case() {
                    let harness = super::sqs().await;
                    super::$case(&harness.bus).await;
                }
            )*
        }
    };
}

on_both_backends!(
    queues_are_ensured_idempotently_and_opened_by_name,
    a_message_is_sent_received_and_deleted,
    a_batch_of_25_is_sent_in_order_and_received,
    concurrent_receivers_never_share_a_message,
    a_long_poll_returns_as_soon_as_a_message_is_sent,
    an_empty_poll_returns_after_its_wait,
    an_undeleted_message_comes_back_after_its_visibility_timeout,
    change_visibility_extends_and_ends_the_hidden_time,
    a_stale_receipt_deletes_nothing_and_cannot_change_visibility,
    a_message_moves_to_the_dead_letter_queue_after_max_receives,
    messages_over_the_size_limit_are_refused,
);

fn unique_name() -> String {
    format!("t-{}", uuid::Uuid::new_v4().simple())
}

fn seconds(s: u64) -> Duration {
    Duration::from_secs(s)
}

async fn queue(bus: &Bus, visibility: u64, max_receives: Option<u32>) -> QueueRef {
    let options = QueueOptions {
        visibility_timeout: seconds(visibility),
        max_receives,
    };
    bus.ensure_queue(&unique_name(), &options)
        .await
        .expect("ensure queue")
}

fn no_attributes() -> BTreeMap<String, String> {
    BTreeMap::new()
}

async fn queues_are_ensured_idempotently_and_opened_by_name(bus: &Bus) {
    let name = unique_name();
    let options = QueueOptions {
        visibility_timeout: seconds(5),
        max_receives: Some(3),
    };
    let first = bus.ensure_queue(&name, &options).await.expect("create");
    let again = bus.ensure_queue(&name, &options).await.expect("ensure");
    assert_eq!(first, again);
    assert_eq!(first.name(), name);
    assert_eq!(bus.open_queue(&name).await.expect("open"), first);
    bus.open_queue(&dlq_name(&name))
        .await
        .expect("the dead-letter queue exists");

    let missing = bus.open_queue(&unique_name()).await;
    assert!(
        matches!(missing, Err(Error::QueueNotFound(_))),
        "{missing:?}"
    );
    let invalid = bus.ensure_queue("has spaces", &options).await;
    assert!(
        matches!(invalid, Err(Error::InvalidQueueName(_))),
        "{invalid:?}"
    );
}

async fn a_message_is_sent_received_and_deleted(bus: &Bus) {
    let queue = queue(bus, 30, None).await;
    let attributes = BTreeMap::from([
        ("address".to_owned(), "plotly-panel-7".to_owned()),
        ("kind".to_owned(), "directive".to_owned()),
    ]);
    let id = bus
        .send(&queue, r#"{"op":"render"}"#, &attributes)
        .await
        .expect("send");

    let received = bus.receive(&queue, 10, seconds(5)).await.expect("receive");
    assert_eq!(received.len(), 1, "{received:?}");
    let message = &received[0];
    assert_eq!(message.id, id);
    assert_eq!(message.body, r#"{"op":"render"}"#);
    assert_eq!(message.attributes, attributes);
    assert_eq!(message.receive_count, 1);

    bus.delete(&queue, &message.receipt).await.expect("delete");
    let after = bus.receive(&queue, 10, seconds(1)).await.expect("receive");
    assert!(after.is_empty(), "{after:?}");
}

async fn a_batch_of_25_is_sent_in_order_and_received(bus: &Bus) {
    let queue = queue(bus, 30, None).await;
    let entries: Vec<OutgoingMessage> = (0..25)
        .map(|i| OutgoingMessage {
            body: format!("message {i}"),
            attributes: BTreeMap::from([("index".to_owned(), i.to_string())]),
        })
        .collect();
    let ids = bus.send_batch(&queue, &entries).await.expect("send batch");
    assert_eq!(ids.len(), 25);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        25,
        "ids are distinct"
    );

    let mut received = BTreeMap::new();
    let deadline = Instant::now() + seconds(20);
    while received.len() < 25 && Instant::now() < deadline {
        for message in bus.receive(&queue, 10, seconds(2)).await.expect("receive") {
            assert_eq!(message.receive_count, 1);
            bus.delete(&queue, &message.receipt).await.expect("delete");
            received.insert(message.id.clone(), message);
        }
    }
    assert_eq!(received.len(), 25);
    for (i, id) in ids.iter().enumerate() {
        let message = &received[id];
        assert_eq!(
            message.body,
            format!("message {i}"),
            "ids follow the entries' order"
        );
        assert_eq!(message.attributes["index"], i.to_string());
    }
}

async fn concurrent_receivers_never_share_a_message(bus: &Bus) {
    let queue = queue(bus, 30, None).await;
    let entries: Vec<_> = (0..20)
        .map(|i| OutgoingMessage::new(format!("job {i}")))
        .collect();
    let ids = bus.send_batch(&queue, &entries).await.expect("send batch");
    let receivers: Vec<_> = (0..3)
        .map(|_| {
            let (bus, queue) = (bus.clone(), queue.clone());
            tokio::spawn(async move {
                let mut taken = Vec::new();
                loop {
                    let messages = bus.receive(&queue, 3, seconds(1)).await.expect("receive");
                    if messages.is_empty() {
                        return taken;
                    }
                    taken.extend(messages.into_iter().map(|m| m.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for receiver in receivers {
        all.extend(receiver.await.expect("receiver task"));
    }
    let distinct: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), distinct.len(), "a message went to two receivers");
    assert_eq!(distinct, ids.into_iter().collect::<BTreeSet<_>>());
}

async fn a_long_poll_returns_as_soon_as_a_message_is_sent(bus: &Bus) {
    let queue = queue(bus, 30, None).await;
    let started = Instant::now();
    let poll = {
        let (bus, queue) = (bus.clone(), queue.clone());
        tokio::spawn(async move { bus.receive(&queue, 1, seconds(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    bus.send(&queue, "wake up", &no_attributes())
        .await
        .expect("send");

    let received = poll.await.expect("poll task").expect("receive");
    let elapsed = started.elapsed();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, "wake up");
    assert!(
        elapsed < seconds(2),
        "a 10 s poll answered {elapsed:?} after it started, though a message came at 300 ms"
    );
}

async fn an_empty_poll_returns_after_its_wait(bus: &Bus) {
    let queue = queue(bus, 30, None).await;
    let started = Instant::now();
    let received = bus.receive(&queue, 10, seconds(2)).await.expect("receive");
    let elapsed = started.elapsed();
    assert!(received.is_empty(), "{received:?}");
    assert!(elapsed >= seconds(2), "returned after {elapsed:?}");
    assert!(elapsed < seconds(10), "returned after {elapsed:?}");

    let started = Instant::now();
    let received = bus
        .receive(&queue, 10, Duration::ZERO)
        .await
        .expect("receive");
    assert!(received.is_empty());
    assert!(started.elapsed() < seconds(2), "a zero wait does not wait");
}

async fn an_undeleted_message_comes_back_after_its_visibility_timeout(bus: &Bus) {
    let queue = queue(bus, 1, None).await;
    let id = bus
        .send(&queue, "again", &no_attributes())
        .await
        .expect("send");

    let first = bus.receive(&queue, 1, seconds(5)).await.expect("receive");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receive_count, 1);
    let hidden = bus
        .receive(&queue, 1, Duration::ZERO)
        .await
        .expect("receive");
    assert!(hidden.is_empty(), "in flight, so hidden: {hidden:?}");

    let second = bus.receive(&queue, 1, seconds(5)).await.expect("receive");
    assert_eq!(second.len(), 1, "redelivered after the visibility timeout");
    assert_eq!(second[0].id, id);
    assert_eq!(second[0].receive_count, 2);
    assert_ne!(
        second[0].receipt, first[0].receipt,
        "each delivery has its own receipt"
    );
    bus.delete(&queue, &second[0].receipt)
        .await
        .expect("delete");
}

async fn change_visibility_extends_and_ends_the_hidden_time(bus: &Bus) {
    let queue = queue(bus, 1, None).await;
    bus.send(&queue, "slow work", &no_attributes())
        .await
        .expect("send");
    let first = bus.receive(&queue, 1, seconds(5)).await.expect("receive");
    assert_eq!(first.len(), 1);
    bus.change_visibility(&queue, &first[0].receipt, seconds(4))
        .await
        .expect("extend");

    tokio::time::sleep(Duration::from_millis(2000)).await;
    let hidden = bus
        .receive(&queue, 1, Duration::ZERO)
        .await
        .expect("receive");
    assert!(
        hidden.is_empty(),
        "still hidden past the queue's 1 s: {hidden:?}"
    );

    let second = bus.receive(&queue, 1, seconds(6)).await.expect("receive");
    assert_eq!(second.len(), 1, "visible again once the extension ran out");
    assert_eq!(second[0].receive_count, 2);

    bus.change_visibility(&queue, &second[0].receipt, Duration::ZERO)
        .await
        .expect("release");
    let third = bus.receive(&queue, 1, seconds(3)).await.expect("receive");
    assert_eq!(third.len(), 1, "a zero timeout makes it visible at once");
    assert_eq!(third[0].receive_count, 3);
    bus.delete(&queue, &third[0].receipt).await.expect("delete");
}

async fn a_stale_receipt_deletes_nothing_and_cannot_change_visibility(bus: &Bus) {
    let queue = queue(bus, 1, None).await;
    bus.send(&queue, "contested", &no_attributes())
        .await
        .expect("send");
    let first = bus.receive(&queue, 1, seconds(5)).await.expect("receive");
    let second = bus.receive(&queue, 1, seconds(5)).await.expect("receive");
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_eq!(second[0].receive_count, 2);
    let (old, current) = (&first[0].receipt, &second[0].receipt);

    bus.delete(&queue, old)
        .await
        .expect("a stale receipt's delete is accepted");
    bus.delete(&queue, current).await.expect("delete");
    bus.delete(&queue, current)
        .await
        .expect("deleting twice is accepted");
    let after = bus.receive(&queue, 1, seconds(2)).await.expect("receive");
    assert!(after.is_empty(), "{after:?}");

    for receipt in [old, current] {
        let changed = bus.change_visibility(&queue, receipt, seconds(5)).await;
        assert!(matches!(changed, Err(Error::StaleReceipt)), "{changed:?}");
    }
}

async fn a_message_moves_to_the_dead_letter_queue_after_max_receives(bus: &Bus) {
    let queue = queue(bus, 1, Some(2)).await;
    let id = bus
        .send(&queue, "poison", &no_attributes())
        .await
        .expect("send");
    for expected in 1..=2 {
        let received = bus.receive(&queue, 1, seconds(5)).await.expect("receive");
        assert_eq!(received.len(), 1, "receive {expected}");
        assert_eq!(received[0].receive_count, expected);
    }
    let third = bus.receive(&queue, 1, seconds(3)).await.expect("receive");
    assert!(third.is_empty(), "not delivered a third time: {third:?}");

    let dlq = bus
        .open_queue(&dlq_name(queue.name()))
        .await
        .expect("dead-letter queue");
    let dead = bus.receive(&dlq, 1, seconds(5)).await.expect("receive");
    assert_eq!(dead.len(), 1, "the message is in the dead-letter queue");
    assert_eq!(dead[0].id, id);
    assert_eq!(dead[0].body, "poison");
}

async fn messages_over_the_size_limit_are_refused(bus: &Bus) {
    let queue = queue(bus, 30, None).await;
    let too_big = "x".repeat(MAX_MESSAGE_BYTES + 1);
    let refused = bus.send(&queue, &too_big, &no_attributes()).await;
    match refused {
        Err(error @ Error::TooLarge { .. }) => {
            assert!(error.to_string().contains("262144"), "{error}")
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let batch = [
        OutgoingMessage::new("fine"),
        OutgoingMessage::new(too_big.clone()),
    ];
    let refused = bus.send_batch(&queue, &batch).await;
    assert!(
        matches!(refused, Err(Error::TooLarge { .. })),
        "{refused:?}"
    );
    let nothing = bus
        .receive(&queue, 10, Duration::ZERO)
        .await
        .expect("receive");
    assert!(
        nothing.is_empty(),
        "a refused batch sends nothing: {nothing:?}"
    );

    let at_limit = "y".repeat(MAX_MESSAGE_BYTES);
    bus.send(&queue, &at_limit, &no_attributes())
        .await
        .expect("a message at the limit is accepted");
    let received = bus.receive(&queue, 1, seconds(5)).await.expect("receive");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body.len(), MAX_MESSAGE_BYTES);
}

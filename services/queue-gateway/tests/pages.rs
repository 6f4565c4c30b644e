//! The per-page ordered message log on a real Postgres.

use std::time::Duration;

use autonoma_testkit::{TestDb, test_db};
use queue_gateway::pages::MAX_BATCH;
use queue_gateway::{Address, Body, Envelope, NewMessage, PageError, PageId, PageLog};
use serde_json::{Value, json};
use tokio::time::Instant;

fn page(s: &str) -> PageId {
    s.parse()
        .unwrap_or_else(|e| panic!("{s} should be a page id: {e}"))
}

fn address(s: &str) -> Address {
    s.parse()
        .unwrap_or_else(|e| panic!("{s} should parse: {e}"))
}

fn text(page: &PageId, id: &str, text: &str) -> NewMessage {
    NewMessage::from_ai(
        page.clone(),
        address(&format!("text-component-{id}")),
        "text.set",
        json!({ "text": text }),
    )
}

fn layout(page: &PageId, components: &[&str]) -> NewMessage {
    let regions: Vec<Value> = components
        .iter()
        .enumerate()
        .map(|(i, c)| json!({ "area": format!("a{i}"), "component": c }))
        .collect();
    let areas = components
        .iter()
        .enumerate()
        .map(|(i, _)| format!("a{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    NewMessage::from_ai(
        page.clone(),
        address("layout-manager"),
        "layout.set",
        json!({ "areas": [areas], "regions": regions }),
    )
}

fn remove(page: &PageId, component: &str) -> NewMessage {
    NewMessage::from_ai(
        page.clone(),
        address("layout-manager"),
        "component.remove",
        json!({ "component": component }),
    )
}

/// A log on a fresh database with page `p` created.
async fn setup() -> (TestDb, PageLog, PageId) {
    let db = test_db().await;
    let log = PageLog::new(db.pool.clone())
        .await
        .unwrap_or_else(|e| panic!("starting the page log: {e}"));
    let p = page("p");
    assert!(log.create_page(&p).await.expect("create page"));
    (db, log, p)
}

fn seqs(messages: &[Envelope]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

#[tokio::test]
async fn create_page_reports_whether_it_was_new() {
    let (_db, log, p) = setup().await;
    assert!(!log.create_page(&p).await.expect("create again"));
    let state = log.state(&p).await.expect("state");
    assert_eq!(state.seq, 0);
    assert!(state.components.is_empty());
}

#[tokio::test]
async fn concurrent_appends_get_gap_free_sequences() {
    let (_db, log, p) = setup().await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let log = log.clone();
            let message = text(&p, &format!("c{i}"), &format!("hello {i}"));
            tokio::spawn(async move { log.append(message).await })
        })
        .collect();
    let mut assigned = Vec::new();
    for task in tasks {
        let envelope = task.await.expect("task").expect("append");
        assigned.push(envelope.seq);
    }
    assigned.sort_unstable();
    assert_eq!(assigned, (1..=50).collect::<Vec<i64>>());

    let all = log.after(&p, 0, MAX_BATCH).await.expect("after");
    assert_eq!(seqs(&all), (1..=50).collect::<Vec<i64>>());
    assert_eq!(log.state(&p).await.expect("state").seq, 50);
}

#[tokio::test]
async fn after_returns_each_message_once_in_order_and_readers_agree() {
    let (_db, log, p) = setup().await;
    let mut sent = Vec::new();
    for i in 0..10 {
        sent.push(
            log.append(text(&p, "t", &i.to_string()))
                .await
                .expect("append"),
        );
    }
    assert_eq!(seqs(&sent), (1..=10).collect::<Vec<i64>>());

    // One reader pages through three at a time, another reads everything at once.
    let mut paged = Vec::new();
    let mut last = 0;
    loop {
        let batch = log.after(&p, last, 3).await.expect("after");
        let Some(tail) = batch.last() else { break };
        last = tail.seq;
        paged.extend(batch);
    }
    let whole = log.after(&p, 0, MAX_BATCH).await.expect("after");
    assert_eq!(paged, sent);
    assert_eq!(whole, sent);
    assert!(log.after(&p, 10, 5).await.expect("after").is_empty());
    assert_eq!(seqs(&log.after(&p, 7, 5).await.expect("after")), [8, 9, 10]);
}

#[tokio::test]
async fn wait_after_wakes_on_append() {
    let (_db, log, p) = setup().await;
    log.append(text(&p, "t", "first")).await.expect("append");

    let waiter = {
        let (log, p) = (log.clone(), p.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            let got = log.wait_after(&p, 1, Duration::from_secs(10)).await;
            (got, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = log.append(text(&p, "t", "second")).await.expect("append");
    let (got, elapsed) = waiter.await.expect("waiter");
    assert_eq!(got.expect("wait_after"), vec![second]);
    assert!(elapsed < Duration::from_secs(2), "woke after {elapsed:?}");

    // Something is already there: no wait at all.
    let start = Instant::now();
    let got = log
        .wait_after(&p, 0, Duration::from_secs(10))
        .await
        .expect("wait_after");
    assert_eq!(seqs(&got), [1, 2]);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn wait_after_returns_empty_when_nothing_comes() {
    let (_db, log, p) = setup().await;
    log.append(text(&p, "t", "only")).await.expect("append");
    // Messages on another page do not end the wait.
    let other = page("other");
    log.create_page(&other).await.expect("create other");
    let noise = {
        let (log, other) = (log.clone(), other.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            log.append(text(&other, "t", "elsewhere")).await
        })
    };
    let wait = Duration::from_secs(1);
    let start = Instant::now();
    let got = log.wait_after(&p, 1, wait).await.expect("wait_after");
    assert!(got.is_empty());
    assert!(
        start.elapsed() >= wait,
        "returned after {:?}",
        start.elapsed()
    );
    noise.await.expect("noise").expect("append elsewhere");
}

#[tokio::test]
async fn state_has_latest_directive_per_live_component() {
    let (_db, log, p) = setup().await;
    let lay = log
        .append(layout(&p, &["text-component-a", "text-component-b"]))
        .await
        .expect("layout");
    log.append(text(&p, "a", "a1")).await.expect("a1");
    log.append(text(&p, "b", "b1")).await.expect("b1");
    let a2 = log.append(text(&p, "a", "a2")).await.expect("a2");
    log.append(text(&p, "b", "b2")).await.expect("b2");
    log.append(text(&p, "c", "c1")).await.expect("c1");
    log.append(remove(&p, "text-component-b"))
        .await
        .expect("remove b");
    log.append(remove(&p, "text-component-c"))
        .await
        .expect("remove c");
    let c2 = log.append(text(&p, "c", "c2")).await.expect("c2");

    let state = log.state(&p).await.expect("state");
    assert_eq!(state.seq, 9);
    // b is gone; c came back with its directive after the removal; the removals themselves
    // do not replace the layout.
    assert_eq!(state.components, vec![lay, a2, c2]);

    // The log itself still holds everything, removed components included.
    assert_eq!(log.after(&p, 0, MAX_BATCH).await.expect("after").len(), 9);
}

#[tokio::test]
async fn unknown_page_is_a_clear_error() {
    let (_db, log, _p) = setup().await;
    let missing = page("missing");
    let err = log.append(text(&missing, "t", "x")).await;
    assert!(
        matches!(err, Err(PageError::UnknownPage(ref q)) if *q == missing),
        "{err:?}"
    );
    let err = log.after(&missing, 0, 10).await;
    assert!(matches!(err, Err(PageError::UnknownPage(_))), "{err:?}");
    let err = log.state(&missing).await;
    assert!(matches!(err, Err(PageError::UnknownPage(_))), "{err:?}");
    let err = log.wait_after(&missing, 0, Duration::from_secs(5)).await;
    assert!(matches!(err, Err(PageError::UnknownPage(_))), "{err:?}");
}

#[tokio::test]
async fn invalid_and_duplicate_messages_are_refused() {
    let (_db, log, p) = setup().await;
    let bad = NewMessage::from_ai(
        p.clone(),
        address("text-component-a"),
        "text.set",
        json!({}),
    );
    assert!(matches!(log.append(bad).await, Err(PageError::Invalid(_))));
    let wrong = NewMessage::from_ai(
        p.clone(),
        address("text-component-a"),
        "layout.set",
        json!({ "areas": ["a"], "regions": [] }),
    );
    assert!(matches!(
        log.append(wrong).await,
        Err(PageError::Invalid(_))
    ));

    let message = text(&p, "a", "once");
    let stored = log.append(message.clone()).await.expect("append");
    let again = log.append(message).await;
    assert!(
        matches!(again, Err(PageError::DuplicateId(id)) if id == stored.id),
        "{again:?}"
    );
    // The refused duplicate used no sequence number.
    let next = log.append(text(&p, "a", "next")).await.expect("append");
    assert_eq!(next.seq, 2);
    assert!(matches!(next.body, Body::Inline(_)));
}

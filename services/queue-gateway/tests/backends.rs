//! One page end to end on each set of backends: the embedded defaults (Postgres queue, blob
//! directory) and SQS + S3 on moto. A long poll wakes on a send, input reaches the AI over the
//! bus, a large directive body travels as a blob, and a 50 MB dataset uploaded as a stream is
//! routed by reference and fetched back byte-identical (from S3 through a presigned redirect).

mod common;

use std::time::Duration;

use common::{Backends, Gateway, send, seqs, start_with};
use futures::StreamExt;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The dataset's size: 50 MiB.
const DATASET_BYTES: usize = 50 * 1024 * 1024;
/// Upload chunk size.
const CHUNK: usize = 256 * 1024;

#[tokio::test]
async fn the_embedded_backends_carry_a_page_end_to_end() {
    page_end_to_end(Backends::Embedded).await;
}

#[tokio::test]
async fn sqs_and_s3_carry_a_page_end_to_end() {
    page_end_to_end(Backends::Aws).await;
}

async fn page_end_to_end(backends: Backends) {
    let gateway = start_with(backends, &[]).await;
    let page = gateway.page("sales");
    gateway.create_page(&page).await;

    long_poll_wakes_on_send(&gateway, &page).await;
    input_reaches_the_ai(&gateway, &page).await;
    large_body_travels_as_a_blob(&gateway, &page).await;
    dataset_goes_by_reference(&gateway, &page).await;
    directives_arrive_from_the_queue(&gateway, &page).await;
}

async fn long_poll_wakes_on_send(gateway: &Gateway, page: &str) {
    let poller = {
        let request = gateway.browser(
            reqwest::Method::GET,
            &format!("/pages/{page}/poll?after=0&wait=20"),
        );
        tokio::spawn(async move { send(request).await.json::<Value>().await.expect("poll") })
    };
    // The poll is waiting by the time this send lands, or it finds the message at once.
    gateway.text(page, "intro", "Quarterly sales").await;
    let polled = tokio::time::timeout(Duration::from_secs(15), poller)
        .await
        .expect("the poll returned on the send, not at its wait")
        .expect("poller");
    assert_eq!(seqs(&polled), [1]);
    assert_eq!(
        polled["messages"][0]["body"],
        json!({"inline": {"text": "Quarterly sales"}})
    );
}

async fn input_reaches_the_ai(gateway: &Gateway, page: &str) {
    let response = send(
        gateway
            .browser(reqwest::Method::POST, &format!("/pages/{page}/events"))
            .json(&json!({"component": "text-component-ask", "kind": "submit", "value": {"text": "By region?"}})),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let input: Value = send(gateway.ai(
        reqwest::Method::GET,
        &format!("/pages/{page}/input?wait=10"),
    ))
    .await
    .json()
    .await
    .expect("input");
    let events = input["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{input}");
    assert_eq!(events[0]["value"], json!({"text": "By region?"}));
    let again: Value =
        send(gateway.ai(reqwest::Method::GET, &format!("/pages/{page}/input?wait=0")))
            .await
            .json()
            .await
            .expect("input");
    assert_eq!(again["events"], json!([]), "taken input is gone");
}

async fn large_body_travels_as_a_blob(gateway: &Gateway, page: &str) {
    let ys: Vec<f64> = (0..2000).map(|i| f64::from(i) * 0.25).collect();
    let figure =
        json!({"data": [{"type": "bar", "y": ys}], "layout": {"title": {"text": "by week"}}});
    let response = gateway
        .send_message(page, "plotly-panel-weekly", "plotly.figure", figure.clone())
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let envelope: Value = response.json().await.expect("envelope");
    let id = envelope["body"]["blob"]["blobId"]
        .as_str()
        .expect("a blob reference");
    let (bytes, digest) = fetch(gateway, page, id).await;
    assert_eq!(
        digest,
        envelope["body"]["blob"]["sha256"].as_str().expect("sha256")
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).expect("json"),
        figure
    );
}

async fn dataset_goes_by_reference(gateway: &Gateway, page: &str) {
    let (expected_digest, upload) = dataset_stream();
    let response = send(
        gateway
            .ai(
                reqwest::Method::POST,
                "/blobs?kind=dataset&name=sales%2F2026.csv&tags=sales,quarterly",
            )
            .header("content-type", "text/csv")
            .body(reqwest::Body::wrap_stream(upload)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let stored: Value = response.json().await.expect("blob");
    assert_eq!(stored["size"], DATASET_BYTES);
    assert_eq!(stored["sha256"], expected_digest.as_str());
    assert_eq!(stored["contentType"], "text/csv");
    assert_eq!(stored["tags"], json!(["quarterly", "sales"]));
    let id = stored["id"].as_str().expect("id").to_owned();

    // Found again by tag, and stored once when sent again.
    let listed: Value = send(gateway.ai(reqwest::Method::GET, "/blobs?tags=sales&kind=dataset"))
        .await
        .json()
        .await
        .expect("list");
    assert!(
        listed["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|item| item["id"] == id.as_str()),
        "{listed}"
    );

    // A page serves a dataset only once one of its messages routes it.
    let response =
        send(gateway.browser(reqwest::Method::GET, &format!("/pages/{page}/blobs/{id}"))).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = gateway
        .send_message(
            page,
            "dataset-router",
            "dataset.route",
            json!({"dataset": {"blobId": id}, "to": ["plotly-panel-weekly"], "mapping": {"x": "week", "y": "revenue"}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let envelope: Value = response.json().await.expect("envelope");
    assert_eq!(envelope["body"]["inline"]["dataset"]["blobId"], id.as_str());

    let (bytes, digest) = fetch(gateway, page, &id).await;
    assert_eq!(bytes.len(), DATASET_BYTES);
    assert_eq!(digest, expected_digest, "fetched back byte-identical");
}

/// An AI that puts its directives on the bus instead of calling HTTP: each reaches the page
/// once, however often it is delivered; a refused one goes to the dead-letter queue with the
/// reason and nothing is appended.
async fn directives_arrive_from_the_queue(gateway: &Gateway, page: &str) {
    let bus = gateway.bus().await;
    let queue = bus
        .open_queue(&gateway.directive_queue())
        .await
        .expect("the gateway made its queue");
    let before = gateway.poll(page, 0, 0).await["next"]
        .as_i64()
        .expect("next");

    let id = uuid::Uuid::now_v7();
    let directive = json!({"id": id, "page": page, "to": "text-component-status",
        "directive": "text.set", "body": {"text": "from the queue"}});
    let no_attributes = std::collections::BTreeMap::new();
    for _ in 0..2 {
        bus.send(&queue, &directive.to_string(), &no_attributes)
            .await
            .expect("send");
    }
    let polled = gateway.poll(page, before, 20).await;
    assert_eq!(polled["messages"][0]["id"], id.to_string());
    assert_eq!(
        polled["messages"][0]["body"],
        json!({"inline": {"text": "from the queue"}})
    );

    let refused =
        json!({"page": page, "to": "sidebar", "directive": "text.set", "body": {"text": "x"}});
    bus.send(&queue, &refused.to_string(), &no_attributes)
        .await
        .expect("send");
    let dlq = bus
        .open_queue(&autonoma_bus::dlq_name(&gateway.directive_queue()))
        .await
        .expect("dead-letter queue");
    let dead = bus
        .receive(&dlq, 10, Duration::from_secs(20))
        .await
        .expect("receive");
    assert_eq!(dead.len(), 1, "the refused directive is dead-lettered");
    assert_eq!(
        serde_json::from_str::<Value>(&dead[0].body).expect("json"),
        refused
    );
    let reason: Value =
        serde_json::from_str(dead[0].attributes.get("error").expect("a reason")).expect("json");
    assert_eq!(reason["status"], 422);
    assert_eq!(reason["errors"][0]["field"], "/to");

    // The duplicate and the refused directive appended nothing.
    let after = gateway.poll(page, before, 0).await;
    assert_eq!(seqs(&after), [before + 1]);
}

/// A deterministic CSV of exactly [`DATASET_BYTES`], as an upload stream, and its sha256.
fn dataset_stream() -> (
    String,
    impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static,
) {
    let mut text = String::from("week,region,revenue\n");
    let mut row = 0u64;
    while text.len() < DATASET_BYTES {
        text.push_str(&format!(
            "{},{},{}.{:02}\n",
            row % 52 + 1,
            ["north", "south", "east", "west"][(row % 4) as usize],
            row * 37 % 100_000,
            row % 100
        ));
        row += 1;
    }
    text.truncate(DATASET_BYTES);
    let bytes = text.into_bytes();
    let digest = hex::encode(Sha256::digest(&bytes));
    let chunks: Vec<Vec<u8>> = bytes.chunks(CHUNK).map(<[u8]>::to_vec).collect();
    (digest, futures::stream::iter(chunks.into_iter().map(Ok)))
}

/// A page blob as a browser gets it: the bytes from the gateway (directory) or from the
/// presigned URL it redirects to (S3), with their sha256.
async fn fetch(gateway: &Gateway, page: &str, id: &str) -> (Vec<u8>, String) {
    let response =
        send(gateway.browser(reqwest::Method::GET, &format!("/pages/{page}/blobs/{id}"))).await;
    let response = match gateway.backends {
        Backends::Embedded => {
            assert_eq!(response.status(), StatusCode::OK);
            response
        }
        Backends::Aws => {
            assert_eq!(response.status(), StatusCode::TEMPORARY_REDIRECT);
            let location = response
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .expect("a presigned location")
                .to_owned();
            assert!(
                location.contains("X-Amz-Signature="),
                "presigned: {location}"
            );
            // The bucket serves the presigned URL to anyone holding it, no credentials.
            let response = send(reqwest::Client::new().get(location)).await;
            assert_eq!(response.status(), StatusCode::OK);
            response
        }
    };
    read_hashed(response).await
}

async fn read_hashed(response: Response) -> (Vec<u8>, String) {
    let mut hasher = Sha256::new();
    let mut bytes = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        hasher.update(&chunk);
        bytes.extend_from_slice(&chunk);
    }
    (bytes, hex::encode(hasher.finalize()))
}

#[tokio::test]
async fn a_browser_without_credentials_gets_nothing_on_either_side() {
    let gateway = start_with(Backends::Embedded, &[]).await;
    let page = gateway.page("closed");
    gateway.create_page(&page).await;
    for (method, path) in [
        (reqwest::Method::GET, format!("/pages/{page}/poll")),
        (reqwest::Method::GET, format!("/pages/{page}/state")),
        (reqwest::Method::GET, format!("/pages/{page}/stream")),
        (reqwest::Method::POST, format!("/pages/{page}/events")),
        (reqwest::Method::GET, "/blobs".to_owned()),
        (reqwest::Method::POST, "/blobs?kind=other".to_owned()),
    ] {
        let response = send(gateway.anonymous(method.clone(), &path)).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
    }
    // Operator credentials do not open the AI's side.
    let response = send(gateway.browser(reqwest::Method::GET, "/blobs")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

//! One suite, run against both backends: a directory in a temporary dir, and S3 on the test
//! run's S3-compatible server (moto, at `TEST_SQS_ENDPOINT`) with a bucket per test. The
//! registry is a fresh migrated database per test.

use std::collections::HashSet;
use std::io;
use std::path::Path;

use autonoma_aws::AwsConfig;
use autonoma_aws::aws_sdk_s3;
use autonoma_blobs::{
    BlobBody, BlobConfig, BlobFilter, BlobKind, BlobMeta, BlobStore, Error, NewBlob,
};
use autonoma_testkit::{TestDb, sqs_endpoint, test_db};
use bytes::Bytes;
use futures::{Stream, StreamExt, stream};
use serde_json::json;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use uuid::Uuid;

enum Backend {
    Dir(TempDir),
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
    },
}

struct Fixture {
    store: BlobStore,
    backend: Backend,
    db: TestDb,
    http: reqwest::Client,
}

fn aws_config() -> AwsConfig {
    serde_json::from_value(json!({
        "AWS_ENDPOINT_URL": sqs_endpoint(),
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }))
    .expect("aws config")
}

fn blob_config(backend: &str, dir: &Path, bucket: &str) -> BlobConfig {
    serde_json::from_value(json!({
        "BLOB_BACKEND": backend,
        "BLOB_DIR": dir,
        "BLOB_BUCKET": bucket,
        "BLOB_PRESIGN_TTL": "5m",
    }))
    .expect("blob config")
}

async fn dir_fixture() -> Fixture {
    let db = test_db().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("blobs");
    let config = blob_config("dir", &root, "unused");
    let store = BlobStore::from_config(&config, &aws_config_unused(), db.pool.clone())
        .await
        .expect("directory store");
    Fixture {
        store,
        backend: Backend::Dir(dir),
        db,
        http: reqwest::Client::new(),
    }
}

/// The directory backend never contacts AWS; any region will do.
fn aws_config_unused() -> AwsConfig {
    serde_json::from_value(json!({ "AWS_REGION": "us-east-1" })).expect("aws config")
}

async fn s3_fixture() -> Fixture {
    let db = test_db().await;
    let aws = aws_config();
    let bucket = format!("blobs-test-{}", Uuid::new_v4().simple());
    let config = blob_config("s3", Path::new("unused"), &bucket);
    let store = BlobStore::from_config(&config, &aws, db.pool.clone())
        .await
        .expect("S3 store");
    Fixture {
        store,
        backend: Backend::S3 {
            client: autonoma_aws::s3_client(&aws).await,
            bucket,
        },
        db,
        http: reqwest::Client::new(),
    }
}

impl Fixture {
    /// How many objects the backend holds.
    async fn objects(&self) -> usize {
        match &self.backend {
            Backend::Dir(dir) => {
                let root = dir.path().join("blobs");
                let mut count = 0;
                for prefix in std::fs::read_dir(&root).expect("read root") {
                    let prefix = prefix.expect("entry");
                    if prefix.file_name() == ".tmp" {
                        continue;
                    }
                    count += std::fs::read_dir(prefix.path())
                        .expect("read prefix")
                        .count();
                }
                count
            }
            Backend::S3 { client, bucket } => {
                let listing = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .send()
                    .await
                    .expect("ListObjectsV2");
                let keys: Vec<_> = listing.contents().iter().filter_map(|o| o.key()).collect();
                assert!(keys.iter().all(|k| k.starts_with("blobs/")), "{keys:?}");
                keys.len()
            }
        }
    }

    /// Temporary upload files left behind (the directory backend's own staging dir).
    fn leftovers(&self) -> usize {
        match &self.backend {
            Backend::Dir(dir) => std::fs::read_dir(dir.path().join("blobs/.tmp"))
                .expect("read .tmp")
                .count(),
            // S3 stages in the shared system temp dir, which other tests use at the same time.
            Backend::S3 { .. } => 0,
        }
    }

    /// Feeds every chunk of `body` to `sink`, following a redirect like a browser would.
    /// Returns the Content-Type a redirect answered with.
    async fn drain(&self, body: BlobBody, mut sink: impl FnMut(&[u8])) -> Option<String> {
        match body {
            BlobBody::Stream(mut stream) => {
                while let Some(chunk) = stream.next().await {
                    sink(&chunk.expect("chunk"));
                }
                None
            }
            BlobBody::Redirect { url, expires_in } => {
                assert_eq!(expires_in.as_secs(), 300);
                let mut response = self.http.get(&url).send().await.expect("GET presigned");
                assert_eq!(response.status(), 200, "{url}");
                let content_type = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                while let Some(chunk) = response.chunk().await.expect("chunk") {
                    sink(&chunk);
                }
                content_type
            }
        }
    }

    async fn open_bytes(&self, id: Uuid) -> (Vec<u8>, Option<String>) {
        let blob = self
            .store
            .open(id)
            .await
            .expect("open")
            .expect("blob exists");
        let mut bytes = Vec::new();
        let content_type = self
            .drain(blob.body, |chunk| bytes.extend_from_slice(chunk))
            .await;
        (bytes, content_type)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = io::Result<Bytes>> + Send + Unpin {
    stream::iter(
        parts
            .iter()
            .map(|part| Ok(Bytes::from_static(part)))
            .collect::<Vec<_>>(),
    )
}

async fn round_trip(fx: Fixture) {
    let layout = br#"{"rows":[{"panels":["plotly-panel-1","text-component-2"]}]}"#;
    let meta = fx
        .store
        .put_bytes(
            NewBlob::new(BlobKind::Layout, "application/json")
                .name("two panels")
                .tag("dashboard")
                .tag("demo"),
            Bytes::from_static(layout),
        )
        .await
        .expect("put");
    assert_eq!(meta.kind, BlobKind::Layout);
    assert_eq!(meta.name.as_deref(), Some("two panels"));
    assert_eq!(meta.content_type, "application/json");
    assert_eq!(meta.size, layout.len() as i64);
    assert_eq!(meta.sha256, sha256_hex(layout));
    assert_eq!(meta.tags, ["dashboard", "demo"]);

    assert_eq!(
        fx.store.get(meta.id).await.expect("get"),
        Some(meta.clone())
    );
    let (bytes, content_type) = fx.open_bytes(meta.id).await;
    assert_eq!(bytes, layout);
    if let Backend::S3 { .. } = fx.backend {
        assert_eq!(content_type.as_deref(), Some("application/json"));
    }

    let (read_meta, mut stream) = fx.store.read(meta.id).await.expect("read").expect("exists");
    assert_eq!(read_meta, meta);
    let mut read = Vec::new();
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(read, layout);

    // A body in several chunks is the concatenation.
    let html = fx
        .store
        .put_stream(
            NewBlob::new(BlobKind::Html, "text/html; charset=utf-8"),
            chunks(&[b"<p>", b"hello", b"</p>"]),
            1024,
        )
        .await
        .expect("put html");
    assert_eq!(fx.open_bytes(html.id).await.0, b"<p>hello</p>");

    // An empty body is a blob too.
    let empty = fx
        .store
        .put_bytes(NewBlob::new(BlobKind::Other, "text/plain"), Bytes::new())
        .await
        .expect("put empty");
    assert_eq!(empty.size, 0);
    assert!(fx.open_bytes(empty.id).await.0.is_empty());

    let unknown = Uuid::now_v7();
    assert!(fx.store.get(unknown).await.expect("get").is_none());
    assert!(fx.store.open(unknown).await.expect("open").is_none());
    assert!(fx.store.read(unknown).await.expect("read").is_none());
}

async fn identical_content_is_stored_once(fx: Fixture) {
    let data = Bytes::from_static(b"x,y\n1,2\n3,4\n");
    let dataset = || NewBlob::new(BlobKind::Dataset, "text/csv").name("points");
    let first = fx
        .store
        .put_bytes(dataset().tag("a"), data.clone())
        .await
        .expect("first");
    let again = fx
        .store
        .put_bytes(dataset().tag("b"), data.clone())
        .await
        .expect("again");
    assert_eq!(again.id, first.id, "same piece, same registry entry");
    assert_eq!(again.created_at, first.created_at);
    assert_eq!(again.tags, ["a", "b"], "tags of both puts");

    let renamed = fx
        .store
        .put_bytes(
            NewBlob::new(BlobKind::Dataset, "text/csv").name("copy"),
            data.clone(),
        )
        .await
        .expect("renamed");
    assert_ne!(renamed.id, first.id, "another name is another entry");
    assert_eq!(renamed.sha256, first.sha256);
    assert_eq!(fx.objects().await, 1, "one object for identical content");
    assert_eq!(fx.open_bytes(renamed.id).await.0, data);

    fx.store
        .put_bytes(dataset(), Bytes::from_static(b"x,y\n5,6\n"))
        .await
        .expect("other content");
    assert_eq!(fx.objects().await, 2);
    let registered: i64 = sqlx::query_scalar("SELECT count(*) FROM blobs")
        .fetch_one(&fx.db.pool)
        .await
        .expect("count");
    assert_eq!(registered, 3);
}

async fn list_filters_and_pages(fx: Fixture) {
    let mut put = Vec::new();
    for i in 0..5 {
        let meta = NewBlob::new(BlobKind::Plotly, "application/json")
            .name(format!("sales_{i}"))
            .tag(if i % 2 == 0 { "even" } else { "odd" })
            .tag("sales");
        let body = Bytes::from(format!(r#"{{"data":[{i}]}}"#));
        put.push(fx.store.put_bytes(meta, body).await.expect("put plotly"));
    }
    for i in 0..3 {
        let meta =
            NewBlob::new(BlobKind::Layout, "application/json").name(format!("salesXlayout{i}"));
        let body = Bytes::from(format!(r#"{{"layout":{i}}}"#));
        put.push(fx.store.put_bytes(meta, body).await.expect("put layout"));
    }

    let all = fx.store.list(BlobFilter::default()).await.expect("list");
    assert_eq!(all.items.len(), 8);
    assert_eq!(all.next_cursor, None);
    let newest_first: Vec<Uuid> = put.iter().rev().map(|m| m.id).collect();
    assert_eq!(
        all.items.iter().map(|m| m.id).collect::<Vec<_>>(),
        newest_first
    );

    let names = |items: &[BlobMeta]| {
        items
            .iter()
            .filter_map(|m| m.name.clone())
            .collect::<HashSet<_>>()
    };
    let plotly = fx
        .store
        .list(BlobFilter {
            kind: Some(BlobKind::Plotly),
            ..Default::default()
        })
        .await
        .expect("by kind");
    assert_eq!(plotly.items.len(), 5);
    assert!(plotly.items.iter().all(|m| m.kind == BlobKind::Plotly));

    // `_` in a prefix is a character, not a wildcard: salesXlayout does not match sales_.
    let prefixed = fx
        .store
        .list(BlobFilter {
            name_prefix: Some("sales_".into()),
            ..Default::default()
        })
        .await
        .expect("by name");
    assert_eq!(
        names(&prefixed.items),
        (0..5).map(|i| format!("sales_{i}")).collect::<HashSet<_>>()
    );

    let even = fx
        .store
        .list(BlobFilter {
            tags: vec!["even".into(), "sales".into()],
            ..Default::default()
        })
        .await
        .expect("by tags");
    assert_eq!(
        names(&even.items),
        HashSet::from(["sales_0", "sales_2", "sales_4"].map(String::from))
    );
    let none = fx
        .store
        .list(BlobFilter {
            kind: Some(BlobKind::Layout),
            tags: vec!["sales".into()],
            ..Default::default()
        })
        .await
        .expect("kind and tag");
    assert!(none.items.is_empty());

    let mut paged = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = fx
            .store
            .list(BlobFilter {
                limit: Some(3),
                cursor,
                ..Default::default()
            })
            .await
            .expect("page");
        pages += 1;
        assert!(page.items.len() <= 3);
        paged.extend(page.items.iter().map(|m| m.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, newest_first, "every entry once, in order");
}

async fn limits_and_rules_are_enforced(fx: Fixture) {
    let meta = || NewBlob::new(BlobKind::Dataset, "application/octet-stream");
    let err = fx
        .store
        .put_stream(meta(), chunks(&[&[1; 1000], &[2; 1000], &[3; 1000]]), 2500)
        .await
        .expect_err("over the limit");
    assert!(matches!(err, Error::TooLarge { limit: 2500 }), "{err:?}");
    assert!(err.to_string().contains("2500"), "{err}");
    assert_eq!(fx.objects().await, 0, "nothing stored");
    assert_eq!(fx.leftovers(), 0, "no temporary file left");
    assert!(
        fx.store
            .list(BlobFilter::default())
            .await
            .expect("list")
            .items
            .is_empty()
    );

    let exact = fx
        .store
        .put_stream(meta(), chunks(&[&[1; 1000], &[2; 1000]]), 2000)
        .await
        .expect("exactly at the limit");
    assert_eq!(exact.size, 2000);

    for bad in [
        meta().name(""),
        meta().tag(""),
        meta().tag("x".repeat(65)),
        NewBlob::new(BlobKind::Html, "html"),
    ] {
        let err = fx
            .store
            .put_bytes(bad.clone(), Bytes::from_static(b"x"))
            .await
            .expect_err("invalid");
        assert!(matches!(err, Error::Invalid(_)), "{bad:?}: {err:?}");
    }
    assert_eq!(fx.objects().await, 1);
}

/// Kernel-reported memory of this process in bytes (`VmHWM` is the peak resident set).
fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .expect("field present");
    let kib: u64 = line
        .trim_start_matches(field)
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("kB value");
    kib * 1024
}

const LARGE_SIZE: u64 = 50 * 1024 * 1024;
const LARGE_CHUNK: usize = 64 * 1024;

/// 50 MB of pseudo-random bytes, generated one chunk at a time.
fn large_body() -> impl Stream<Item = io::Result<Bytes>> + Send + Unpin {
    let chunks = LARGE_SIZE as usize / LARGE_CHUNK;
    Box::pin(stream::iter(0..chunks).map(|i| {
        let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut chunk = Vec::with_capacity(LARGE_CHUNK);
        while chunk.len() < LARGE_CHUNK {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.extend_from_slice(&state.to_le_bytes());
        }
        Ok(Bytes::from(chunk))
    }))
}

async fn large_body_streams_with_flat_memory(fx: Fixture) {
    let mut expected = Sha256::new();
    let mut body = large_body();
    while let Some(chunk) = body.next().await {
        expected.update(chunk.expect("chunk"));
    }
    let expected = hex::encode(expected.finalize());

    let peak_before = proc_status_bytes("VmHWM");
    let meta = fx
        .store
        .put_stream(
            NewBlob::new(BlobKind::Dataset, "application/octet-stream").name("large"),
            large_body(),
            LARGE_SIZE,
        )
        .await
        .expect("put 50 MB");
    assert_eq!(meta.size as u64, LARGE_SIZE);
    assert_eq!(meta.sha256, expected);

    let blob = fx.store.open(meta.id).await.expect("open").expect("exists");
    let mut read = Sha256::new();
    let mut size = 0u64;
    fx.drain(blob.body, |chunk| {
        size += chunk.len() as u64;
        read.update(chunk);
    })
    .await;
    assert_eq!(size, LARGE_SIZE);
    assert_eq!(hex::encode(read.finalize()), expected);

    let peak_after = proc_status_bytes("VmHWM");
    let growth = peak_after.saturating_sub(peak_before);
    eprintln!(
        "peak RSS before {} KiB, after {} KiB, growth {} KiB for a {} MiB blob in and out",
        peak_before >> 10,
        peak_after >> 10,
        growth >> 10,
        LARGE_SIZE >> 20
    );
    assert!(
        growth < 30 * 1024 * 1024,
        "peak RSS grew by {} MiB: the body was held in memory",
        growth >> 20
    );
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod dir {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::dir_fixture().await).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::s3_fixture().await).await;
                }
            )*
        }
    };
}

suite!(
    round_trip,
    identical_content_is_stored_once,
    list_filters_and_pages,
    limits_and_rules_are_enforced,
    large_body_streams_with_flat_memory,
);

/// The registry's rules hold for anyone writing to the table, not only this crate.
#[tokio::test]
async fn the_registry_refuses_malformed_rows() {
    let db = test_db().await;
    let insert = |sha256: &'static str, kind: &'static str, size: i64, tags: Vec<&'static str>| {
        sqlx::query(
            "INSERT INTO blobs (id, sha256, kind, content_type, size, tags)
             VALUES ($1, $2, $3, 'text/plain', $4, $5)",
        )
        .bind(Uuid::now_v7())
        .bind(sha256)
        .bind(kind)
        .bind(size)
        .bind(tags)
        .execute(&db.pool)
    };
    let good = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    insert(good, "html", 0, vec!["t"]).await.expect("valid row");
    for (sha256, kind, size, tags) in [
        (
            "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "html",
            0,
            vec![],
        ),
        ("e3b0c442", "html", 0, vec![]),
        (good, "image", 0, vec![]),
        (good, "other", -1, vec![]),
        (good, "other", 0, vec![""]),
    ] {
        let err = insert(sha256, kind, size, tags)
            .await
            .expect_err("constraint violation");
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert_eq!(
            code.as_deref(),
            Some("23514"),
            "{sha256} {kind} {size}: {err}"
        );
    }
}

//! `GET /ws` under a crowd and a client that stops reading: 1,000 clients connect at once and
//! keep receiving their updates promptly while one client reads nothing of a flood of large
//! task updates; that client is disconnected, and the orchestrator's memory stays within a
//! bound set by the number of clients and the hub's buffer, not by what the slow client left
//! unread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use autonoma_testkit::{free_port, test_db};
use futures::StreamExt;
use serde_json::json;
use tokio::net::TcpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{
    KEY, ORIGIN, basic_token, echo_env, http, orchestrator_env, prebuild, rss_kib, spawn_healthy,
    take_turn, try_rss_kib, wait_for, wait_registered,
};

const CROWD: usize = 1_000;
/// Updates the crowd follows (by correlation id) while the flood goes on.
const MARKERS: usize = 10;
/// Markers sent before the flood starts: the crowd's latency with nothing else going on.
const QUIET_MARKERS: usize = 3;
/// Enough for the slow client's socket buffers (a few MiB) to fill up.
const FLOOD_TASKS: usize = 60;
/// Payload filler of a flood task: its frames are 16–33 KiB (the result echoes the payload).
const FILLER: usize = 16 * 1024;
/// Frames a client may fall behind by (`WS_CLIENT_BUFFER`).
const CLIENT_BUFFER: usize = 1024;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn request(port: u16, query: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let url = format!("ws://127.0.0.1:{port}/ws?auth={}&{query}", basic_token());
    let mut request = url.into_client_request().expect("a WebSocket request");
    request
        .headers_mut()
        .insert("origin", ORIGIN.parse().expect("header"));
    request
}

/// Connects as a browser would (`?auth=`, allowed Origin) and reads the hello.
async fn connect(port: u16, query: &str) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(request(port, query))
        .await
        .expect("WebSocket connects");
    let hello = socket.next().await.expect("hello").expect("hello frame");
    assert!(
        hello.to_text().is_ok_and(|t| t.contains("hello")),
        "{hello:?}"
    );
    socket
}

/// A client with a 4 KiB receive buffer, so the server's sends back up soon after it stops
/// reading.
async fn connect_slow(
    port: u16,
    query: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .expect("connect");
    let (mut socket, _) = tokio_tungstenite::client_async(request(port, query), stream)
        .await
        .expect("WebSocket handshake");
    socket.next().await.expect("hello").expect("hello frame");
    socket
}

/// Lets this process (and the orchestrator it starts, which inherits it) hold a socket per
/// client.
fn raise_open_files() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("RLIMIT_NOFILE");
    let wanted = (CROWD as u64 * 2 + 1024).min(hard);
    if soft < wanted {
        setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).expect("raising RLIMIT_NOFILE");
    }
    assert!(
        wanted >= CROWD as u64 * 2 + 256,
        "RLIMIT_NOFILE hard limit {hard} is too low for {CROWD} clients"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_and_one_that_stops_reading() {
    prebuild(&["orchestrator", "echo-agent"]);
    let _turn = take_turn().await;
    raise_open_files();
    let started = Instant::now();
    let db = test_db().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut env = orchestrator_env(&db.url, port);
    env.extend([
        ("WS_CLIENT_BUFFER", CLIENT_BUFFER.to_string()),
        ("LOG_LEVEL", "warn,orchestrator::ws=info".to_owned()),
        // The crowd comes from one address here; in production from a thousand.
        ("RATE_LIMIT_BURST", "5000".to_owned()),
    ]);
    let orchestrator = spawn_healthy("orchestrator", &env).await;
    let mut agent_env = echo_env(&base, free_port());
    agent_env.push(("LOG_LEVEL", "warn".to_owned()));
    let _agent = spawn_healthy("echo-agent", &agent_env).await;
    let http = http();
    wait_registered(&http, &base, "echo-agent").await;

    let pid = orchestrator.pid();
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (sampling, peak) = (sampling.clone(), peak.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(rss) = try_rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let baseline = rss_kib(pid);

    // The crowd, all at once.
    let connecting = Instant::now();
    let crowd: Vec<Socket> = tokio::time::timeout(
        Duration::from_secs(60),
        futures::future::join_all(
            (0..CROWD).map(|_| connect(port, "correlationId=crowd&logs=false")),
        ),
    )
    .await
    .expect("1,000 clients connected within 60s");
    let connected_in = connecting.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let with_crowd = rss_kib(pid);

    // Each crowd client reports the first frame of each marker task it sees.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, Instant)>();
    let readers: Vec<_> = crowd
        .into_iter()
        .map(|mut socket| {
            let seen = seen_tx.clone();
            tokio::spawn(async move {
                let mut first = [false; MARKERS];
                while let Some(Ok(message)) = socket.next().await {
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let frame: serde_json::Value = match serde_json::from_str(&text) {
                        Ok(frame) => frame,
                        Err(_) => continue,
                    };
                    if let Some(marker) = frame["task"]["payload"]["marker"].as_u64() {
                        let marker = marker as usize;
                        if marker < MARKERS && !first[marker] {
                            first[marker] = true;
                            let _ = seen.send((marker, Instant::now()));
                        }
                    }
                }
                let _ = socket.close(None).await;
            })
        })
        .collect();
    drop(seen_tx);

    // Two clients that follow everything and read it all, and one that reads nothing.
    let mut followers: Vec<Socket> = Vec::new();
    for _ in 0..2 {
        followers.push(connect(port, "logs=false").await);
    }
    let follower_counts: Vec<_> = followers
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                let mut flood_frames = 0usize;
                let mut last = Instant::now();
                while let Ok(Some(Ok(message))) =
                    tokio::time::timeout(Duration::from_secs(15), socket.next()).await
                {
                    if let Message::Text(text) = message
                        && text.contains("\"flood\"")
                    {
                        flood_frames += 1;
                        last = Instant::now();
                        if flood_frames == FLOOD_TASKS * 3 {
                            break;
                        }
                    }
                }
                (flood_frames, last)
            })
        })
        .collect();
    let mut slow = connect_slow(port, "logs=false").await;

    // Markers with nothing else going on, then the flood with markers in between.
    let send_marker = |marker: usize| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let response = http
                .post(format!("{base}/task"))
                .header("x-internal-key", KEY)
                .json(&json!({"kind": "echo", "correlationId": "crowd", "payload": {"marker": marker}}))
                .send()
                .await
                .expect("POST /task");
            assert_eq!(response.status(), 201);
        }
    };
    let mut marker_sent = Vec::new();
    for marker in 0..QUIET_MARKERS {
        marker_sent.push(Instant::now());
        send_marker(marker).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let filler = "x".repeat(FILLER);
    let flooding = Instant::now();
    let flood = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move {
            futures::stream::iter(0..FLOOD_TASKS)
                .for_each_concurrent(8, |i| {
                    let (http, base, filler) = (http.clone(), base.clone(), filler.clone());
                    async move {
                        let response = http
                            .post(format!("{base}/task"))
                            .header("x-internal-key", KEY)
                            .json(&json!({"kind": "echo", "correlationId": "flood", "payload": {"i": i, "filler": filler}}))
                            .send()
                            .await
                            .expect("POST /task");
                        assert_eq!(response.status(), 201);
                    }
                })
                .await;
        })
    };
    for marker in QUIET_MARKERS..MARKERS {
        tokio::time::sleep(Duration::from_millis(300)).await;
        marker_sent.push(Instant::now());
        send_marker(marker).await;
    }
    flood.await.expect("flood");
    let flood_created_in = flooding.elapsed();

    // Every crowd client saw every marker, promptly.
    let mut seen = vec![0usize; MARKERS];
    let mut worst = vec![Duration::ZERO; MARKERS];
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.iter().any(|n| *n < CROWD) {
        let Ok(Some((marker, at))) = tokio::time::timeout_at(deadline, seen_rx.recv()).await else {
            panic!("markers seen by the crowd: {seen:?} of {CROWD} each");
        };
        seen[marker] += 1;
        worst[marker] = worst[marker].max(at.saturating_duration_since(marker_sent[marker]));
    }
    let quiet_latency = worst[..QUIET_MARKERS]
        .iter()
        .max()
        .copied()
        .unwrap_or_default();
    let flood_latency = worst[QUIET_MARKERS..]
        .iter()
        .max()
        .copied()
        .unwrap_or_default();

    for (i, follower) in follower_counts.into_iter().enumerate() {
        let (frames, last) = follower.await.expect("follower");
        assert_eq!(frames, FLOOD_TASKS * 3, "follower {i} missed flood frames");
        eprintln!(
            "follower {i}: all {frames} flood frames, the last {:.1}s after the flood began",
            last.saturating_duration_since(flooding).as_secs_f64()
        );
    }

    // The slow client is cut off once its sends have been stuck for the server's limit (10 s);
    // then what it can still read ends (close or error) short of the flood.
    let cut_off = wait_for(
        "the client that stopped reading disconnected",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let output = orchestrator.output();
            if output.contains("WebSocket client stopped reading")
                || output.contains("WebSocket client too slow")
            {
                Ok(flooding.elapsed())
            } else {
                Err("still connected".to_owned())
            }
        },
    )
    .await;
    let mut slow_frames = 0usize;
    let mut close_code = None;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match slow.next().await {
                Some(Ok(Message::Text(_))) => slow_frames += 1,
                Some(Ok(Message::Close(frame))) => {
                    close_code = frame.map(|f| u16::from(f.code));
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the client that stopped reading was never disconnected ({slow_frames} frames)"
    );
    assert!(
        slow_frames < FLOOD_TASKS * 3,
        "the slow client got all {slow_frames} frames: it was never cut off"
    );

    sampling.store(false, Ordering::Relaxed);
    sampler.await.expect("sampler");
    let peak = peak.load(Ordering::Relaxed);
    let after = rss_kib(pid);
    // The bound, above the idle process: 64 KiB per client (its task, socket and tungstenite
    // state, about 10 KiB; a client whose socket is full also holds its 16 KiB write buffer and
    // one frame), plus the hub's buffer of WS_CLIENT_BUFFER frames, which a lagging client
    // keeps alive (at most 64 KiB each here). What the slow client did not read is not in it.
    let bound = baseline + (CROWD as u64 + 3) * 64 + CLIENT_BUFFER as u64 * 64;
    assert!(
        peak < bound,
        "orchestrator RSS peaked at {peak} KiB, above {bound} KiB (baseline {baseline} KiB)"
    );
    for reader in &readers {
        reader.abort();
    }
    eprintln!(
        "WebSocket, {:.1}s: {CROWD} clients connected in {:.2}s; RSS {baseline} KiB idle, \
         {with_crowd} KiB with the crowd ({:.1} KiB per client), peak {peak} KiB during the \
         flood (bound {bound} KiB), {after} KiB after; slowest crowd client per marker \
         {worst:?} (the first {QUIET_MARKERS} before the flood); flood of {FLOOD_TASKS} tasks created in \
         {:.1}s; the slow client read {slow_frames} frames before it was cut off (close code \
         {close_code:?}) {:.1}s after the flood began",
        started.elapsed().as_secs_f64(),
        connected_in.as_secs_f64(),
        (with_crowd.saturating_sub(baseline)) as f64 / CROWD as f64,
        flood_created_in.as_secs_f64(),
        cut_off.as_secs_f64(),
    );
    assert!(
        quiet_latency < Duration::from_secs(2),
        "a crowd client waited {quiet_latency:?} for an update with nothing else going on"
    );
    // During the flood markers queue behind its frames (in a debug build the hub turns a
    // 16–33 KiB frame into text in a few ms, and each frame wakes all 1,000 clients), which
    // takes seconds on two shared cores. A slow client that held the others up would hold them
    // for the server's whole send limit (10 s) before it is cut off.
    assert!(
        flood_latency < Duration::from_secs(8),
        "a crowd client waited {flood_latency:?} for an update during the flood"
    );
}

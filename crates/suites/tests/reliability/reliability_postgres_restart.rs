//! Postgres stopped and started again while logging, the orchestrator and echo-agent run and
//! are sent log frames and tasks: both database services report unready while it is down and
//! ready again after, by themselves (same processes); every log frame answered 202 and every
//! task answered 201 is in the database at the end, and every task ends `succeeded`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use autonoma_testkit::free_port;
use serde_json::json;
use sqlx::Connection;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::support::{
    KEY, PrivatePg, base_env, count_of, echo_env, http, orchestrator_env, prebuild, ready_status,
    spawn_healthy, status_counts, take_turn, wait_for,
};

const FRAMES_PER_BATCH: usize = 20;

/// What the senders were told, and what they were refused.
#[derive(Default)]
struct Acknowledged {
    frames: BTreeSet<u64>,
    refused_batches: u64,
    tasks: BTreeSet<u64>,
    refused_tasks: u64,
    /// The slowest answer of either service while the database was down.
    slowest: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_loses_nothing_acknowledged() {
    prebuild(&["logging", "orchestrator", "echo-agent"]);
    let _turn = take_turn().await;
    let started = Instant::now();
    let pg = PrivatePg::start().await;
    let mut admin = sqlx::PgConnection::connect(&pg.url("postgres"))
        .await
        .expect("connecting to the private cluster");
    sqlx::raw_sql("CREATE DATABASE autonoma")
        .execute(&mut admin)
        .await
        .expect("creating the database");
    admin.close().await.expect("closing");
    let database_url = pg.url("autonoma");

    let mut env = orchestrator_env(&database_url, free_port());
    env.push(("MIGRATE_ON_START", "true".to_owned()));
    let mut orchestrator = spawn_healthy("orchestrator", &env).await;
    let orchestrator_url = orchestrator.base_url();
    let mut logging_env = base_env(Some(&database_url));
    logging_env.push(("MIGRATE_ON_START", "true".to_owned()));
    let mut logging = spawn_healthy("logging", &logging_env).await;
    let logging_url = logging.base_url();
    let mut echo = spawn_healthy("echo-agent", &echo_env(&orchestrator_url, free_port())).await;
    let http = http();
    crate::support::wait_registered(&http, &orchestrator_url, "echo-agent").await;

    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let down = Arc::new(AtomicBool::new(false));
    let sending = Arc::new(AtomicBool::new(true));
    let log_sender = {
        let (http, url, acknowledged, down, sending) = (
            http.clone(),
            format!("{logging_url}/log"),
            acknowledged.clone(),
            down.clone(),
            sending.clone(),
        );
        tokio::spawn(async move {
            let mut next = 0u64;
            while sending.load(Ordering::Relaxed) {
                let seqs: Vec<u64> = (next..next + FRAMES_PER_BATCH as u64).collect();
                next += FRAMES_PER_BATCH as u64;
                let frames: Vec<_> = seqs
                    .iter()
                    .map(|seq| json!({"level": "info", "service": "reliability", "message": format!("frame {seq}"), "fields": {"seq": seq}}))
                    .collect();
                let sent_at = Instant::now();
                let answer = http
                    .post(&url)
                    .header("x-internal-key", KEY)
                    .json(&frames)
                    .send()
                    .await;
                let mut acknowledged = acknowledged.lock().await;
                if down.load(Ordering::Relaxed) {
                    acknowledged.slowest = acknowledged.slowest.max(sent_at.elapsed());
                }
                match answer {
                    Ok(response) if response.status() == 202 => acknowledged.frames.extend(seqs),
                    _ => acknowledged.refused_batches += 1,
                }
                drop(acknowledged);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let task_sender = {
        let (http, url, acknowledged, down, sending) = (
            http.clone(),
            format!("{orchestrator_url}/task"),
            acknowledged.clone(),
            down.clone(),
            sending.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0u64;
            while sending.load(Ordering::Relaxed) {
                let sent_at = Instant::now();
                let answer = http
                    .post(&url)
                    .header("x-internal-key", KEY)
                    .json(&json!({"kind": "echo", "payload": {"n": n}, "idempotencyKey": format!("pg-{n}"), "timeoutSecs": 5}))
                    .send()
                    .await;
                let mut acknowledged = acknowledged.lock().await;
                if down.load(Ordering::Relaxed) {
                    acknowledged.slowest = acknowledged.slowest.max(sent_at.elapsed());
                }
                match answer {
                    Ok(response) if response.status() == 201 => {
                        acknowledged.tasks.insert(n);
                    }
                    Ok(response) => {
                        assert_eq!(response.status(), 503, "a task refused for another reason");
                        acknowledged.refused_tasks += 1;
                    }
                    Err(error) => panic!("POST /task failed without an answer: {error}"),
                }
                drop(acknowledged);
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = acknowledged.lock().await.frames.len();
    pg.stop().await;
    down.store(true, Ordering::Relaxed);
    let stopped_at = Instant::now();
    let services = [
        ("orchestrator", &orchestrator_url),
        ("logging", &logging_url),
    ];
    for (name, url) in services {
        wait_for(
            &format!("{name} reports unready"),
            Duration::from_secs(20),
            Duration::from_millis(100),
            || async {
                match ready_status(&http, url).await {
                    Ok(503) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
    let unready_after = stopped_at.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;

    pg.restart().await;
    down.store(false, Ordering::Relaxed);
    let restarted_at = Instant::now();
    for (name, url) in services {
        wait_for(
            &format!("{name} ready again"),
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                match ready_status(&http, url).await {
                    Ok(200) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            },
        )
        .await;
    }
    let ready_after = restarted_at.elapsed();
    // New writes go through again.
    let tasks_at_restart = acknowledged.lock().await.tasks.len();
    wait_for(
        "tasks acknowledged after the restart",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let now = acknowledged.lock().await.tasks.len();
            if now >= tasks_at_restart + 10 {
                Ok(())
            } else {
                Err(format!("{} new", now - tasks_at_restart))
            }
        },
    )
    .await;
    sending.store(false, Ordering::Relaxed);
    log_sender.await.expect("log sender");
    task_sender.await.expect("task sender");
    for (name, process) in [
        ("orchestrator", &mut orchestrator),
        ("logging", &mut logging),
        ("echo-agent", &mut echo),
    ] {
        assert!(
            process.try_wait().expect("status").is_none(),
            "{name} exited: it must recover by itself"
        );
    }

    let acknowledged = acknowledged.lock().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&database_url)
        .await
        .expect("connecting after the restart");
    // The writer flushes what it queued while the database was down.
    let stored: BTreeSet<u64> = wait_for(
        "every acknowledged log frame stored",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let seqs: Vec<i64> = sqlx::query_scalar(
                "SELECT (fields->>'seq')::bigint FROM logs WHERE service = 'reliability'",
            )
            .fetch_all(&pool)
            .await
            .map_err(|e| e.to_string())?;
            let stored: BTreeSet<u64> = seqs.into_iter().map(|s| s as u64).collect();
            let missing = acknowledged.frames.difference(&stored).count();
            if missing == 0 {
                Ok(stored)
            } else {
                Err(format!("{missing} acknowledged frames missing"))
            }
        },
    )
    .await;
    let keys: Vec<String> = sqlx::query_scalar("SELECT idempotency_key FROM tasks")
        .fetch_all(&pool)
        .await
        .expect("reading tasks");
    let keys: BTreeSet<String> = keys.into_iter().collect();
    for n in &acknowledged.tasks {
        assert!(
            keys.contains(&format!("pg-{n}")),
            "task pg-{n} was acknowledged with 201 but is not in the database"
        );
    }
    let counts = wait_for(
        "every task terminal",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let counts = status_counts(&pool).await.map_err(|e| e.to_string())?;
            if count_of(&counts, "queued") + count_of(&counts, "running") == 0 {
                Ok(counts)
            } else {
                Err(format!("{counts:?}"))
            }
        },
    )
    .await;
    assert_eq!(
        count_of(&counts, "succeeded") as usize,
        keys.len(),
        "every stored task succeeded: {counts:?}"
    );
    assert!(
        acknowledged.slowest < Duration::from_secs(10),
        "a request took {:?} while the database was down",
        acknowledged.slowest
    );
    assert!(
        acknowledged.refused_tasks > 0,
        "no task was refused while the database was down"
    );
    eprintln!(
        "Postgres stopped and restarted, {:.1}s: both services unready {:.1}s after the stop, \
         ready {:.1}s after the restart; log frames: {} acknowledged ({before} before the stop), \
         {} batches refused, {} stored; tasks: {} acknowledged, {} refused with 503, {} stored, \
         {counts:?}; slowest answer while down {:?}",
        started.elapsed().as_secs_f64(),
        unready_after.as_secs_f64(),
        ready_after.as_secs_f64(),
        acknowledged.frames.len(),
        acknowledged.refused_batches,
        stored.len(),
        acknowledged.tasks.len(),
        acknowledged.refused_tasks,
        keys.len(),
        acknowledged.slowest,
    );
}

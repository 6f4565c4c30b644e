//! The SQS endpoint (moto) killed and started again on the same port while tasks flow to an
//! echo-agent that takes them from its queue: the orchestrator holds back the attempts it
//! cannot enqueue, the agent recreates its queue (moto forgets every queue when it dies) and
//! resumes, and every task acknowledged ends `succeeded`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use autonoma_testkit::{free_port, test_db};
use serde_json::json;
use tokio::sync::Mutex;
use tokio::time::Instant;
use uuid::Uuid;

use crate::support::{
    KEY, PrivateMoto, count_of, echo_env, http, orchestrator_env, prebuild, spawn_healthy,
    status_counts, take_turn, wait_for, wait_registered,
};

fn aws_env(endpoint: &str) -> [(&'static str, String); 4] {
    [
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_endpoint_killed_and_restarted_loses_no_task() {
    prebuild(&["orchestrator", "echo-agent"]);
    let _turn = take_turn().await;
    let started = Instant::now();
    let mut moto = PrivateMoto::start().await;
    let db = test_db().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut env = orchestrator_env(&db.url, port);
    env.extend(aws_env(&moto.endpoint()));
    let orchestrator = spawn_healthy("orchestrator", &env).await;
    let mut agent_env = echo_env(&base, free_port());
    agent_env.extend(aws_env(&moto.endpoint()));
    agent_env.extend([
        ("AGENT_TRANSPORT", "sqs".to_owned()),
        ("AGENT_QUEUE_NAME", "reliability-echo".to_owned()),
    ]);
    let agent = spawn_healthy("echo-agent", &agent_env).await;
    let http = http();
    wait_registered(&http, &base, "echo-agent").await;

    // Tasks keep coming throughout; each is acknowledged by the orchestrator alone. An SQS
    // attempt's time includes its wait in the queue, and on a loaded machine moto can take
    // seconds to hand out the backlog that built up while it was down, so the timeout leaves
    // room for that; messages moto lost come back when their lease expires (10 s + 1 s).
    let acknowledged = Arc::new(Mutex::new(Vec::<Uuid>::new()));
    let sending = Arc::new(AtomicBool::new(true));
    let sender = {
        let (http, base, acknowledged, sending) = (
            http.clone(),
            base.clone(),
            acknowledged.clone(),
            sending.clone(),
        );
        tokio::spawn(async move {
            let mut n = 0;
            while sending.load(Ordering::Relaxed) {
                let response = http
                    .post(format!("{base}/task"))
                    .header("x-internal-key", KEY)
                    .json(&json!({"kind": "echo", "payload": {"n": n}, "timeoutSecs": 10, "maxAttempts": 5}))
                    .send()
                    .await
                    .expect("POST /task");
                assert_eq!(response.status(), 201, "the orchestrator refused a task");
                let task: serde_json::Value = response.json().await.expect("task");
                let id = Uuid::parse_str(task["id"].as_str().expect("id")).expect("uuid");
                acknowledged.lock().await.push(id);
                n += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    moto.kill();
    let killed_at = Instant::now();
    let at_kill = acknowledged.lock().await.len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    moto.restart().await;
    let restarted_after = killed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    sending.store(false, Ordering::Relaxed);
    sender.await.expect("sender");
    let acknowledged = acknowledged.lock().await.clone();

    let counts = wait_for(
        "every task terminal",
        Duration::from_secs(90),
        Duration::from_millis(250),
        || async {
            let counts = status_counts(&db.pool).await.map_err(|e| e.to_string())?;
            if count_of(&counts, "queued") + count_of(&counts, "running") == 0 {
                Ok(counts)
            } else {
                Err(format!("{counts:?}"))
            }
        },
    )
    .await;
    let recovered_after = killed_at.elapsed();
    let statuses: BTreeMap<Uuid, String> =
        sqlx::query_as::<_, (Uuid, String)>("SELECT id, status FROM tasks")
            .fetch_all(&db.pool)
            .await
            .expect("reading tasks")
            .into_iter()
            .collect();
    for id in &acknowledged {
        assert_eq!(
            statuses.get(id).map(String::as_str),
            Some("succeeded"),
            "task {id} was acknowledged"
        );
    }
    let events: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT event_type, count(*) FROM task_events GROUP BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .expect("counting events")
    .into_iter()
    .collect();
    let most_attempts: i32 = sqlx::query_scalar("SELECT max(attempts) FROM tasks")
        .fetch_one(&db.pool)
        .await
        .expect("attempts");
    assert!(
        events.get("dispatch_deferred").copied().unwrap_or(0) > 0,
        "no attempt was held back while moto was down: {events:?}"
    );
    drop((orchestrator, agent));
    eprintln!(
        "moto killed and restarted, {:.1}s: {} tasks acknowledged ({at_kill} before the kill), \
         all succeeded {:.1}s after the kill (moto back after {:.1}s); {counts:?}; events \
         {events:?}; at most {most_attempts} attempts for a task",
        started.elapsed().as_secs_f64(),
        acknowledged.len(),
        recovered_after.as_secs_f64(),
        restarted_after.as_secs_f64(),
    );
}

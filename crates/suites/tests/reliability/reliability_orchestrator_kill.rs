//! `kill -9` of the orchestrator while 10,000 tasks are being created and dispatched, then a
//! restart on the same port: every task exists once, ends `succeeded`, and every execution
//! beyond the first is explained by at-least-once delivery (an attempt leased by the killed
//! process, recovered when its lease expired, and dispatched again).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use autonoma_testkit::{free_port, test_db};
use serde_json::{Value, json};
use tokio::time::Instant;
use uuid::Uuid;

use crate::support::{
    KEY, count_of, echo_env, http, orchestrator_env, prebuild, spawn_healthy, status_counts,
    take_turn, wait_for, wait_registered,
};

const TASKS: usize = 10_000;
/// Concurrent `POST /task` requests (there is no batch endpoint).
const CREATORS: usize = 32;
/// The kill comes once this many tasks are acknowledged and some are running.
const KILL_AFTER: usize = 3_000;
/// Per attempt; the lease of a killed attempt is this plus `LEASE_GRACE` (1 s).
const TIMEOUT_SECS: i64 = 5;

/// What the creators saw.
#[derive(Default)]
struct Created {
    next: AtomicUsize,
    acknowledged: AtomicUsize,
    /// Answered 200: an earlier attempt of the same request had created it.
    replayed: AtomicUsize,
    /// Requests that failed (connection refused or reset) and were sent again.
    resent: AtomicUsize,
}

/// Creates task `i` with an idempotency key, sending it again until it is acknowledged: a
/// client that loses its answer to a crash cannot tell whether the task was created.
async fn create(
    http: &reqwest::Client,
    base: &str,
    i: usize,
    created: &Created,
    deadline: Instant,
) {
    let body = json!({
        "kind": "echo",
        "payload": {"i": i},
        "idempotencyKey": format!("kill9-{i}"),
        "timeoutSecs": TIMEOUT_SECS,
    });
    loop {
        let sent = http
            .post(format!("{base}/task"))
            .header("x-internal-key", KEY)
            .json(&body)
            .send()
            .await;
        let last = match sent {
            Ok(response) if response.status() == 201 => {
                created.acknowledged.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(response) if response.status() == 200 => {
                created.acknowledged.fetch_add(1, Ordering::Relaxed);
                created.replayed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(response) if response.status().is_server_error() => {
                format!("HTTP {}", response.status())
            }
            Ok(response) => {
                let status = response.status();
                panic!(
                    "task {i} refused with {status}: {}",
                    response.text().await.unwrap_or_default()
                )
            }
            Err(error) => error.to_string(),
        };
        created.resent.fetch_add(1, Ordering::Relaxed);
        assert!(
            Instant::now() < deadline,
            "task {i} never acknowledged: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Executions per task as echo-agent logged them (`echoing`, under the attempt's span).
fn executions(agent_stdout: &str) -> HashMap<Uuid, Vec<i64>> {
    let mut runs: HashMap<Uuid, Vec<i64>> = HashMap::new();
    for line in agent_stdout.lines() {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if entry["fields"]["message"] != "echoing" {
            continue;
        }
        let task = entry["span"]["task_id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .unwrap_or_else(|| panic!("an echoing line without its task: {line}"));
        let attempt = entry["span"]["attempt"].as_i64().unwrap_or_default();
        runs.entry(task).or_default().push(attempt);
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_orchestrator_during_ten_thousand_tasks_loses_none() {
    prebuild(&["orchestrator", "echo-agent"]);
    let _turn = take_turn().await;
    let started = Instant::now();
    let db = test_db().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut env = orchestrator_env(&db.url, port);
    env.push(("LOG_LEVEL", "warn".to_owned()));
    let mut orchestrator = spawn_healthy("orchestrator", &env).await;

    let mut agent_env = echo_env(&base, free_port());
    // Only what the execution count needs: the `echoing` line inside the attempt's span.
    agent_env.push((
        "LOG_LEVEL",
        "warn,echo_agent=info,autonoma_agent_kit=info".to_owned(),
    ));
    let agent = spawn_healthy("echo-agent", &agent_env).await;
    let http = http();
    wait_registered(&http, &base, "echo-agent").await;

    let created = Arc::new(Created::default());
    let deadline = Instant::now() + Duration::from_secs(200);
    let creators: Vec<_> = (0..CREATORS)
        .map(|_| {
            let (http, base, created) = (http.clone(), base.clone(), created.clone());
            tokio::spawn(async move {
                loop {
                    let i = created.next.fetch_add(1, Ordering::Relaxed);
                    if i >= TASKS {
                        return;
                    }
                    create(&http, &base, i, &created, deadline).await;
                }
            })
        })
        .collect();

    // Kill once a good part is acknowledged and attempts are in flight.
    let running_at_kill = wait_for(
        "tasks acknowledged and running",
        Duration::from_secs(90),
        Duration::from_millis(20),
        || async {
            let acknowledged = created.acknowledged.load(Ordering::Relaxed);
            let running: i64 =
                sqlx::query_scalar("SELECT count(*) FROM tasks WHERE status = 'running'")
                    .fetch_one(&db.pool)
                    .await
                    .map_err(|e| e.to_string())?;
            if acknowledged >= KILL_AFTER && running > 0 {
                Ok(running)
            } else {
                Err(format!("{acknowledged} acknowledged, {running} running"))
            }
        },
    )
    .await;
    let killed_pid = orchestrator.pid();
    let created_at_kill = created.acknowledged.load(Ordering::Relaxed);
    orchestrator.kill().expect("kill -9 the orchestrator");
    let killed_at = Instant::now();
    let leased_by_killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasks WHERE status = 'running' AND lease_owner LIKE $1",
    )
    .bind(format!("{killed_pid}-%"))
    .fetch_one(&db.pool)
    .await
    .expect("counting leases");
    let counts_at_kill = status_counts(&db.pool).await.expect("counts");
    eprintln!(
        "killed the orchestrator (pid {killed_pid}) after {:.1}s: {created_at_kill} acknowledged, \
         {running_at_kill} running just before, {leased_by_killed} leases left held, {counts_at_kill:?}",
        started.elapsed().as_secs_f64()
    );

    // A moment down (creators meet refused connections), then the same binary on the same port.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let orchestrator = spawn_healthy("orchestrator", &env).await;
    eprintln!(
        "orchestrator back (pid {}) {:.1}s after the kill",
        orchestrator.pid(),
        killed_at.elapsed().as_secs_f64()
    );

    for creator in creators {
        creator.await.expect("a creator panicked");
    }
    let all_created = started.elapsed();
    let finished = wait_for(
        "every task terminal",
        deadline.saturating_duration_since(Instant::now()),
        Duration::from_millis(250),
        || async {
            let counts = status_counts(&db.pool).await.map_err(|e| e.to_string())?;
            let total: i64 = counts.iter().map(|(_, n)| n).sum();
            let open = count_of(&counts, "queued") + count_of(&counts, "running");
            if total == TASKS as i64 && open == 0 {
                Ok(counts)
            } else {
                Err(format!("{counts:?}"))
            }
        },
    )
    .await;
    let elapsed = started.elapsed();

    // None lost, none doubled: one task per key, each succeeded with its own payload echoed.
    let keys: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT idempotency_key, (payload->>'i')::bigint, (result->'echo'->>'i')::bigint
         FROM tasks ORDER BY (payload->>'i')::bigint",
    )
    .fetch_all(&db.pool)
    .await
    .expect("reading tasks");
    assert_eq!(keys.len(), TASKS);
    for (i, (key, payload_i, echoed_i)) in keys.iter().enumerate() {
        assert_eq!(key, &format!("kill9-{i}"));
        assert_eq!(*payload_i, i as i64);
        assert_eq!(*echoed_i, Some(i as i64), "task kill9-{i} result");
    }
    assert_eq!(
        count_of(&finished, "succeeded"),
        TASKS as i64,
        "every task succeeded: {finished:?}"
    );

    // Every attempt beyond the first must come from a lease the killed process held.
    let events: Vec<(Uuid, String, String, Value)> = sqlx::query_as(
        "SELECT task_id, event_type, actor, changes FROM task_events
         WHERE task_id IN (SELECT task_id FROM task_events WHERE event_type = 'dispatched'
                           GROUP BY task_id HAVING count(*) > 1)
            OR event_type NOT IN ('created', 'dispatched', 'succeeded')
         ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .expect("reading events");
    let mut by_task: BTreeMap<Uuid, Vec<(String, String)>> = BTreeMap::new();
    for (task, kind, actor, _) in &events {
        by_task
            .entry(*task)
            .or_default()
            .push((kind.clone(), actor.clone()));
    }
    let killed_dispatcher = format!("dispatcher:{killed_pid}-");
    for (task, trail) in &by_task {
        let kinds: Vec<&str> = trail.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "created",
                "dispatched",
                "lease_expired",
                "dispatched",
                "succeeded"
            ],
            "task {task}: only a lease lost with the killed process may add an attempt: {trail:?}"
        );
        assert!(
            trail[1].1.starts_with(&killed_dispatcher),
            "task {task}: the first attempt was not the killed process's: {trail:?}"
        );
        assert!(
            !trail[2].1.starts_with(&killed_dispatcher)
                && !trail[3].1.starts_with(&killed_dispatcher),
            "task {task}: recovered by the killed process?: {trail:?}"
        );
    }
    let redispatched = by_task.len();
    assert!(
        redispatched as i64 <= leased_by_killed,
        "{redispatched} tasks dispatched twice, but the killed process held only {leased_by_killed} leases"
    );

    // The agent's own count: a second execution only for a re-dispatched task.
    let runs = executions(&agent.stdout());
    let missing = keys.len() - runs.len();
    assert_eq!(
        missing, 0,
        "{missing} succeeded tasks were never executed by the agent"
    );
    let duplicated: Vec<(&Uuid, &Vec<i64>)> = runs.iter().filter(|(_, r)| r.len() > 1).collect();
    let extra_executions: usize = duplicated.iter().map(|(_, r)| r.len() - 1).sum();
    for (task, attempts) in &duplicated {
        assert!(
            by_task.contains_key(task),
            "task {task} executed {} times ({attempts:?}) without a lease recovered from the killed process",
            attempts.len()
        );
        assert_eq!(
            attempts.len(),
            2,
            "task {task}: at most one attempt is lost per crash"
        );
    }

    eprintln!(
        "kill -9 during {TASKS} tasks: created in {:.1}s, all terminal in {:.1}s; \
         {} requests sent again after the crash ({} of them found their task created), \
         {leased_by_killed} leases held by the killed process, {redispatched} tasks dispatched \
         again after their lease expired, {} executed twice by the agent ({extra_executions} \
         duplicate executions, all explained by at-least-once delivery)",
        all_created.as_secs_f64(),
        elapsed.as_secs_f64(),
        created.resent.load(Ordering::Relaxed),
        created.replayed.load(Ordering::Relaxed),
        duplicated.len(),
    );
}

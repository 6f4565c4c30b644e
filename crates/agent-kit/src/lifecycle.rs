//! The agent's life next to its server: find its queue, register, heartbeat, say goodbye.

use std::time::Duration;

use autonoma_aws::AwsConfig;
use autonoma_aws::aws_sdk_sqs;
use autonoma_aws::aws_sdk_sqs::error::DisplayErrorContext;
use autonoma_aws::aws_sdk_sqs::types::QueueAttributeName;
use autonoma_common::client::InternalClient;
use autonoma_protocol::{AgentIn, HeartbeatIn, Transport};
use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{Agent, AgentConfig, sqs};

/// The draining heartbeat at shutdown is not waited for longer than this.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Setup {
    pub agent: Agent,
    pub config: AgentConfig,
    pub aws: AwsConfig,
    pub public_url: String,
    pub client: InternalClient,
    pub shutdown: CancellationToken,
}

pub(crate) async fn run(setup: Setup) {
    let Setup {
        agent,
        config,
        aws,
        public_url,
        client,
        shutdown,
    } = setup;

    let mut consumer = None;
    let queue_url = match config.agent_transport {
        Transport::Http => None,
        Transport::Sqs => {
            let sqs = autonoma_aws::sqs_client(&aws).await;
            let Some(queue_url) = resolve_queue(&sqs, &config, &shutdown).await else {
                return;
            };
            tracing::info!(queue_url = %queue_url, "consuming the agent's queue");
            consumer = Some(tokio::spawn(sqs::consume(sqs::Consumer {
                agent: agent.clone(),
                sqs,
                queue_url: queue_url.clone(),
                client: client.clone(),
                config: config.clone(),
                shutdown: shutdown.clone(),
            })));
            Some(queue_url)
        }
    };

    let registration = AgentIn {
        name: agent.name().to_owned(),
        base_url: Some(public_url),
        transport: config.agent_transport,
        queue_url,
        kinds: agent.kinds(),
    };
    let mut registered = false;
    while !shutdown.is_cancelled() {
        if !register(&client, &config, &registration, &shutdown).await {
            break;
        }
        registered = true;
        heartbeat_until_forgotten(&agent, &client, &config, &shutdown).await;
    }
    if registered {
        goodbye(&agent, &client, &config).await;
    }
    if let Some(consumer) = consumer
        && let Err(error) = consumer.await
    {
        tracing::error!(error = %error, "the queue consumer failed");
    }
}

/// Backoff for calls repeated until they succeed: from a quarter second up to 10 s.
pub(crate) fn forever_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_jitter()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(10))
        .without_max_times()
        .build()
}

/// Sleeps `delay`; false if shutdown came first.
pub(crate) async fn pause(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = shutdown.cancelled() => false,
    }
}

/// `AGENT_QUEUE_URL`, or the URL of `AGENT_QUEUE_NAME` (created if missing), retried until
/// the SQS endpoint answers. None on shutdown.
async fn resolve_queue(
    sqs: &aws_sdk_sqs::Client,
    config: &AgentConfig,
    shutdown: &CancellationToken,
) -> Option<String> {
    if let Some(url) = &config.agent_queue_url {
        return Some(url.as_str().to_owned());
    }
    let name = config.agent_queue_name.as_deref()?;
    let mut backoff = forever_backoff();
    loop {
        let created = tokio::select! {
            result = create_queue(sqs, name) => result,
            () = shutdown.cancelled() => return None,
        };
        match created {
            Ok(url) => return Some(url),
            Err(error) => tracing::warn!(
                queue = name,
                error = %error,
                "cannot create or find the agent's queue; retrying"
            ),
        }
        if !pause(backoff.next().unwrap_or(Duration::from_secs(10)), shutdown).await {
            return None;
        }
    }
}

/// Creates the queue `name`, or finds it if it exists (CreateQueue is idempotent); its URL.
pub(crate) async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, String> {
    let mut request = sqs.create_queue().queue_name(name);
    if name.ends_with(".fifo") {
        request = request.attributes(QueueAttributeName::FifoQueue, "true");
    }
    match request.send().await {
        Ok(output) => output
            .queue_url
            .ok_or_else(|| "CreateQueue answered without a URL".to_owned()),
        Err(error) => Err(DisplayErrorContext(&error).to_string()),
    }
}

/// Posts the registration until the orchestrator accepts it. False on shutdown.
async fn register(
    client: &InternalClient,
    config: &AgentConfig,
    registration: &AgentIn,
    shutdown: &CancellationToken,
) -> bool {
    let url = config.orchestrator("/agents");
    let mut backoff = forever_backoff();
    let mut failures = 0u32;
    loop {
        let sent = tokio::select! {
            result = client.send(Method::POST, &url, Some(registration)) => result,
            () = shutdown.cancelled() => return false,
        };
        let problem = match sent {
            Ok(response) if response.status().is_success() => {
                tracing::info!(
                    agent = %registration.name,
                    transport = registration.transport.as_str(),
                    kinds = registration.kinds.len(),
                    "registered with the orchestrator"
                );
                return true;
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                format!("{url} answered {status}: {}", truncate(&body, 500))
            }
            Err(error) => error.to_string(),
        };
        failures += 1;
        // Said loudly once, then quietly: the orchestrator may simply not be up yet.
        if failures == 1 || failures.is_multiple_of(20) {
            tracing::warn!(failures, error = %problem, "registration failed; retrying");
        } else {
            tracing::debug!(failures, error = %problem, "registration failed; retrying");
        }
        if !pause(backoff.next().unwrap_or(Duration::from_secs(10)), shutdown).await {
            return false;
        }
    }
}

/// Heartbeats every `HEARTBEAT_INTERVAL` until shutdown, or until the orchestrator answers
/// 404 (it no longer knows the agent, so the caller registers again).
async fn heartbeat_until_forgotten(
    agent: &Agent,
    client: &InternalClient,
    config: &AgentConfig,
    shutdown: &CancellationToken,
) {
    let url = config.orchestrator(&format!("/agents/{}/heartbeat", agent.name()));
    let mut interval = tokio::time::interval(config.heartbeat_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let beat = HeartbeatIn {
            status: Some("ok".into()),
            details: Some(json!({ "running": agent.running() })),
        };
        let sent = tokio::select! {
            result = client.send(Method::POST, &url, Some(&beat)) => result,
            () = shutdown.cancelled() => return,
        };
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) if response.status() == StatusCode::NOT_FOUND => {
                tracing::warn!("the orchestrator does not know this agent; registering again");
                return;
            }
            Ok(response) => {
                tracing::warn!(status = response.status().as_u16(), "heartbeat refused")
            }
            Err(error) => tracing::warn!(error = %error, "heartbeat failed"),
        }
    }
}

/// The last heartbeat, `draining`, best effort.
async fn goodbye(agent: &Agent, client: &InternalClient, config: &AgentConfig) {
    let url = config.orchestrator(&format!("/agents/{}/heartbeat", agent.name()));
    let beat = HeartbeatIn {
        status: Some("draining".into()),
        details: Some(json!({ "running": agent.running() })),
    };
    match tokio::time::timeout(
        GOODBYE_TIMEOUT,
        client.send(Method::POST, &url, Some(&beat)),
    )
    .await
    {
        Ok(Ok(response)) if response.status().is_success() => {
            tracing::info!("told the orchestrator this agent is draining")
        }
        Ok(Ok(response)) => tracing::debug!(
            status = response.status().as_u16(),
            "draining heartbeat refused"
        ),
        Ok(Err(error)) => tracing::debug!(error = %error, "draining heartbeat failed"),
        Err(_) => tracing::debug!("draining heartbeat timed out"),
    }
}

pub(crate) fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

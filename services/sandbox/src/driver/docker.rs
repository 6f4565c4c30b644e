//! [`Driver`] over the Docker Engine API (Docker, or Podman's Docker-compatible API).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ExecConfig, HostConfig, Mount, MountType,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OnceCell, mpsc};
use tokio::time::Instant;
use tokio_util::io::StreamReader;
use tokio_util::sync::CancellationToken;

use super::{
    Chunk, Connection, ContainerSpec, ContainerState, Driver, DriverError, ExecOutcome, ExecSpec,
    Stats,
};

const REQUEST_TIMEOUT_SECS: u64 = 120;
const DEFAULT_PATH: &str = "PATH=/usr/local/bin:/usr/bin:/bin";
const STOP_TIMEOUT_SECS: i32 = 2;
/// Set in the environment of every exec, so the processes it starts can be found and killed
/// even when they leave its process group.
const MARKER_VAR: &str = "AUTONOMA_EXEC";
/// How long killing a command's processes is retried: a fork bomb can take every pid the
/// container has, and the kill needs one.
const KILL_RETRY_FOR: Duration = Duration::from_secs(10);
/// How long the output of a killed command is still read.
const KILL_DRAIN: Duration = Duration::from_secs(5);

/// PID 1: sleeps (reaping orphans while it waits) and exits on SIGTERM, so a stop is
/// immediate.
const INIT_SCRIPT: &str = "trap 'exit 0' TERM INT; while :; do sleep 2147483647 & wait $!; done";

/// Sets `oom` to the OOM-kill counter of the container's memory cgroup (v2 `memory.events`,
/// v1 `memory.oom_control`), `-` when unreadable. Builtins only: it must work when the
/// container has no pid to spare.
const OOM_COUNTER_FN: &str = r#"oom_kills() {
  oom=- v1= v2=
  while IFS=: read -r _ c p; do
    case ",$c," in ,,) v2=$p ;; *,memory,*) v1=$p ;; esac
  done < /proc/self/cgroup
  for f in "/sys/fs/cgroup$v2/memory.events" "/sys/fs/cgroup/memory$v1/memory.oom_control" \
      /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
    [ -r "$f" ] || continue
    while read -r k n; do
      if [ "$k" = oom_kill ]; then oom=$n; return 0; fi
    done < "$f"
  done
}
"#;

/// `$0` the exec's token, `$1` the command. Writes a header line `<token> <oom kills>
/// <pgid>` to stderr, then becomes the command as the leader of its own process group (runc
/// already makes an exec a session leader; otherwise `setsid`, which keeps the pid when the
/// caller is not a group leader).
const WRAPPER_SCRIPT: &str = r#"oom_kills
set -f
read -r s < /proc/$$/stat
s=${s##*) }
set -- "$1" $s
if [ "$4" = "$$" ]; then
  echo "$0 $oom $$" >&2
  exec /bin/sh -c "$1"
elif command -v setsid > /dev/null 2>&1; then
  echo "$0 $oom $$" >&2
  exec setsid /bin/sh -c "$1"
fi
echo "$0 $oom -" >&2
exec /bin/sh -c "$1"
"#;

/// `$1` the process group of a command (`-` when unknown), `$2` its marker. Kills the group,
/// then every process still carrying the marker in its environment (and its group), until
/// none is left.
const KILL_SCRIPT: &str = r#"g=$1 m=$2 i=0
set -f
while [ $i -lt 20 ]; do
  case $g in ''|-|0|1) ;; *) kill -KILL -- "-$g" 2> /dev/null ;; esac
  l=$(grep -lF -- "$m" /proc/[0-9]*/environ 2> /dev/null)
  r=$?
  if [ -z "$l" ]; then
    [ $r -eq 1 ] || [ $i -ge 2 ] && exit 0
  fi
  for f in $l; do
    p=${f#/proc/}
    p=${p%/environ}
    s=
    { read -r s < "/proc/$p/stat"; } 2> /dev/null
    s=${s##*) }
    set -- $s
    case ${3:-} in ''|0|1) ;; *) kill -KILL -- "-$3" 2> /dev/null ;; esac
    kill -KILL "$p" 2> /dev/null
  done
  i=$((i + 1))
  sleep 0.1 2> /dev/null || sleep 1
done
exit 1
"#;

#[derive(Debug, Clone)]
enum Target {
    Unix(String),
    Http(String),
}

/// What the driver learns about the engine on first contact.
struct Engine {
    docker: Docker,
    podman: bool,
}

/// A [`Driver`] talking to a Docker-compatible engine. The first call connects and
/// negotiates the API version; until that succeeds every call tries again.
pub struct DockerDriver {
    host: String,
    target: Target,
    engine: OnceCell<Engine>,
}

impl std::fmt::Debug for DockerDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerDriver")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl DockerDriver {
    /// `docker_host` is `unix:///path/to/socket`, or `tcp://host:port` / `http://host:port`
    /// for a remote engine. Nothing is contacted yet.
    pub fn connect(docker_host: &str) -> Result<Self, DriverError> {
        let target = if let Some(path) = docker_host.strip_prefix("unix://") {
            Target::Unix(path.to_owned())
        } else if docker_host.starts_with('/') {
            Target::Unix(docker_host.to_owned())
        } else if docker_host.starts_with("tcp://") || docker_host.starts_with("http://") {
            Target::Http(docker_host.to_owned())
        } else {
            return Err(DriverError::Unreachable(format!(
                "unsupported container engine address {docker_host}: expected unix:///path, \
                 tcp://host:port or http://host:port"
            )));
        };
        Ok(Self {
            host: docker_host.to_owned(),
            target,
            engine: OnceCell::new(),
        })
    }

    async fn engine(&self) -> Result<&Engine, DriverError> {
        self.engine
            .get_or_try_init(|| async {
                let docker = match &self.target {
                    Target::Unix(path) => Docker::connect_with_unix(
                        path,
                        REQUEST_TIMEOUT_SECS,
                        bollard::API_DEFAULT_VERSION,
                    ),
                    Target::Http(addr) => Docker::connect_with_http(
                        addr,
                        REQUEST_TIMEOUT_SECS,
                        bollard::API_DEFAULT_VERSION,
                    ),
                }
                .map_err(|err| self.error(err))?;
                let docker = docker
                    .negotiate_version()
                    .await
                    .map_err(|err| self.error(err))?;
                let version = docker.version().await.map_err(|err| self.error(err))?;
                let podman = version
                    .components
                    .iter()
                    .flatten()
                    .any(|component| component.name.to_ascii_lowercase().contains("podman"));
                Ok(Engine { docker, podman })
            })
            .await
    }

    /// Maps an error that is not specific to one call.
    fn error(&self, err: BollardError) -> DriverError {
        match err {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => DriverError::Engine(format!("{} (HTTP {status_code})", message.trim())),
            BollardError::RequestTimeoutError => DriverError::Unreachable(format!(
                "the container engine at {} did not answer within {REQUEST_TIMEOUT_SECS} s",
                self.host
            )),
            BollardError::SocketNotFoundError(_) => DriverError::Unreachable(format!(
                "cannot reach the container engine at {}: No such file or directory",
                self.host
            )),
            BollardError::HyperLegacyError { .. }
            | BollardError::HttpClientError { .. }
            | BollardError::HyperResponseError { .. }
            | BollardError::IOError { .. } => DriverError::Unreachable(format!(
                "cannot reach the container engine at {}: {}",
                self.host,
                root_cause(&err)
            )),
            other => DriverError::Engine(other.to_string()),
        }
    }

    /// Maps an error of a call about container `id`: 404 is [`DriverError::NotFound`], 409
    /// (an exec in a stopped container) [`DriverError::NotRunning`].
    fn container_error(&self, err: BollardError, id: &str) -> DriverError {
        match status(&err) {
            Some(404) => DriverError::NotFound { id: id.to_owned() },
            Some(409) => DriverError::NotRunning { id: id.to_owned() },
            _ => self.error(err),
        }
    }

    fn host_config(&self, spec: &ContainerSpec, podman: bool) -> HostConfig {
        let positive = |value: i64| (value > 0).then_some(value);
        let tmpfs = spec.read_only_root.then(|| {
            // runc 1.1 gives a tmpfs the mode of the directory it covers, so a 1777 mode is
            // not enough when the image's /tmp is not: hand it to the user as well.
            let mut options = format!("rw,exec,nosuid,nodev,size={},mode=1777", spec.tmpfs_bytes);
            if podman {
                options.push_str(",U");
            } else if let Some((uid, gid)) = numeric_user(&spec.user) {
                options.push_str(&format!(",uid={uid},gid={gid}"));
            }
            HashMap::from([("/tmp".to_owned(), options)])
        });
        HostConfig {
            mounts: Some(vec![Mount {
                target: Some("/workspace".to_owned()),
                source: Some(spec.workspace.to_string_lossy().into_owned()),
                typ: Some(MountType::BIND),
                read_only: Some(false),
                ..Default::default()
            }]),
            cap_drop: Some(vec!["ALL".to_owned()]),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            privileged: Some(false),
            memory: positive(spec.memory_bytes),
            // Equal to the memory limit: no swap, so a hog is OOM-killed instead of swapping.
            memory_swap: positive(spec.memory_bytes),
            nano_cpus: positive(spec.nano_cpus),
            pids_limit: positive(spec.pids_limit),
            network_mode: Some(spec.network.clone().unwrap_or_else(|| "none".to_owned())),
            readonly_rootfs: Some(spec.read_only_root),
            tmpfs,
            ..Default::default()
        }
    }

    /// Runs a helper script as a plain exec and returns its exit code and stdout.
    async fn run_script(
        &self,
        engine: &Engine,
        id: &str,
        script: &str,
        args: &[&str],
    ) -> Result<(Option<i64>, String), DriverError> {
        let mut cmd = vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
        cmd.extend(args.iter().map(|arg| (*arg).to_owned()));
        let exec = engine
            .docker
            .create_exec(
                id,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd),
                    ..Default::default()
                },
            )
            .await
            .map_err(|err| self.container_error(err, id))?;
        let mut stdout = Vec::new();
        match engine
            .docker
            .start_exec(&exec.id, None::<StartExecOptions>)
            .await
            .map_err(|err| self.container_error(err, id))?
        {
            StartExecResults::Attached { mut output, .. } => {
                while let Some(item) = output.next().await {
                    match item.map_err(|err| self.error(err))? {
                        LogOutput::StdOut { message } => stdout.extend_from_slice(&message),
                        LogOutput::StdErr { message } => tracing::debug!(
                            container = id,
                            stderr = %String::from_utf8_lossy(&message),
                            "helper exec wrote to stderr"
                        ),
                        _ => {}
                    }
                }
            }
            StartExecResults::Detached => {}
        }
        let code = self.exit_code(engine, &exec.id).await?;
        Ok((code, String::from_utf8_lossy(&stdout).into_owned()))
    }

    /// The exit code of a finished exec; the engine may take a moment to record it.
    async fn exit_code(&self, engine: &Engine, exec_id: &str) -> Result<Option<i64>, DriverError> {
        for _ in 0..100 {
            let inspected = engine
                .docker
                .inspect_exec(exec_id)
                .await
                .map_err(|err| self.error(err))?;
            if inspected.running != Some(true) {
                return Ok(inspected.exit_code);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(None)
    }

    /// Kills the process group `pgid` and every process carrying `marker`; retried while the
    /// container cannot start the exec that does it.
    async fn kill_processes(
        &self,
        engine: &Engine,
        id: &str,
        pgid: Option<i64>,
        marker: &str,
    ) -> bool {
        let pgid = pgid.map_or_else(|| "-".to_owned(), |pgid| pgid.to_string());
        let give_up = Instant::now() + KILL_RETRY_FOR;
        loop {
            match self
                .run_script(engine, id, KILL_SCRIPT, &["autonoma-kill", &pgid, marker])
                .await
            {
                Ok((Some(0), _)) => return true,
                Err(DriverError::NotFound { .. } | DriverError::NotRunning { .. }) => return true,
                Ok((code, _)) => {
                    tracing::debug!(
                        container = id,
                        ?code,
                        "killing a command's processes failed"
                    );
                }
                Err(err) => {
                    tracing::debug!(container = id, %err, "killing a command's processes failed");
                }
            }
            if Instant::now() >= give_up {
                tracing::warn!(container = id, "could not kill a command's processes");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether the container's memory cgroup OOM-killed something since the counter read
    /// `before`.
    async fn oom_killed_since(&self, engine: &Engine, id: &str, before: Option<u64>) -> bool {
        if let Some(before) = before {
            let script = format!("{OOM_COUNTER_FN}oom_kills; echo \"$oom\"");
            match self
                .run_script(engine, id, &script, &["autonoma-oom"])
                .await
            {
                Ok((Some(0), out)) => {
                    if let Ok(after) = out.trim().parse::<u64>() {
                        return after > before;
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::debug!(container = id, %err, "reading the OOM counter"),
            }
        }
        // The container itself may be what died.
        matches!(self.inspect(id).await, Ok(Some(state)) if state.oom_killed)
    }
}

#[async_trait]
impl Driver for DockerDriver {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn ping(&self) -> Result<String, DriverError> {
        let engine = self.engine().await?;
        let version = engine
            .docker
            .version()
            .await
            .map_err(|err| self.error(err))?;
        let (name, number) = version
            .components
            .iter()
            .flatten()
            .find(|component| {
                let name = component.name.to_ascii_lowercase();
                name.contains("engine") || name.contains("podman")
            })
            .map(|component| (component.name.clone(), component.version.clone()))
            .unwrap_or_else(|| {
                (
                    "Docker Engine".to_owned(),
                    version.version.clone().unwrap_or_default(),
                )
            });
        let name = if name == "Engine" {
            "Docker Engine".to_owned()
        } else {
            name
        };
        Ok(match version.api_version {
            Some(api) => format!("{name} {number} (API {api})"),
            None => format!("{name} {number}"),
        })
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String, DriverError> {
        if !spec.workspace.is_absolute() {
            return Err(DriverError::Engine(format!(
                "the workspace {} is not an absolute path",
                spec.workspace.display()
            )));
        }
        let engine = self.engine().await?;
        let mut env = spec.env.clone();
        if !env.iter().any(|var| var.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH.to_owned());
        }
        let config = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: Some(vec![
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                INIT_SCRIPT.to_owned(),
            ]),
            cmd: Some(Vec::new()),
            user: Some(spec.user.clone()),
            working_dir: Some("/workspace".to_owned()),
            env: Some(env),
            labels: Some(spec.labels.clone()),
            stop_timeout: Some(i64::from(STOP_TIMEOUT_SECS)),
            host_config: Some(self.host_config(spec, engine.podman)),
            ..Default::default()
        };
        let created = engine
            .docker
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::new()
                        .name(&spec.name)
                        .build(),
                ),
                config,
            )
            .await
            .map_err(|err| match &err {
                BollardError::DockerResponseServerError {
                    status_code: 404,
                    message,
                } if !message.to_ascii_lowercase().contains("network") => {
                    DriverError::ImageMissing {
                        image: spec.image.clone(),
                    }
                }
                _ => self.error(err),
            })?;
        if let Err(err) = engine.docker.start_container(&created.id, None).await {
            let err = self.error(err);
            if let Err(cleanup) = self.remove(&created.id).await {
                tracing::warn!(container = created.id, %cleanup, "removing a container that did not start");
            }
            return Err(err);
        }
        Ok(created.id)
    }

    async fn exec(
        &self,
        id: &str,
        spec: ExecSpec,
        output: mpsc::Sender<Chunk>,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, DriverError> {
        let engine = self.engine().await?;
        let started = Instant::now();
        let token = token();
        let marker = format!("{MARKER_VAR}={token}");
        let mut env = spec.env;
        env.push(marker.clone());
        let exec = engine
            .docker
            .create_exec(
                id,
                ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    env: Some(env),
                    working_dir: Some(spec.cwd),
                    cmd: Some(vec![
                        "/bin/sh".to_owned(),
                        "-c".to_owned(),
                        format!("{OOM_COUNTER_FN}{WRAPPER_SCRIPT}"),
                        token.clone(),
                        spec.cmd,
                    ]),
                    ..Default::default()
                },
            )
            .await
            .map_err(|err| self.container_error(err, id))?;
        let stream = match engine
            .docker
            .start_exec(&exec.id, None::<StartExecOptions>)
            .await
            .map_err(|err| self.container_error(err, id))?
        {
            StartExecResults::Attached { output, .. } => output,
            StartExecResults::Detached => {
                return Err(DriverError::Engine("the exec started detached".to_owned()));
            }
        };

        let mut pump = Pump::new(stream, output, token);
        let deadline = spec.timeout.map(|timeout| started + timeout);
        let end = tokio::select! {
            biased;
            result = pump.run() => End::Exited(result),
            () = cancel.cancelled() => End::Cancelled,
            () = sleep_until(deadline) => End::TimedOut,
        };
        let (timed_out, killed) = match end {
            End::Exited(Ok(())) => (false, false),
            End::Exited(Err(err)) => {
                // Without its output the command cannot be followed: do not leave it behind.
                self.kill_processes(engine, id, pump.pgid(), &marker).await;
                return Err(self.container_error(err, id));
            }
            End::Cancelled => (false, true),
            End::TimedOut => (true, true),
        };
        if killed {
            self.kill_processes(engine, id, pump.pgid(), &marker).await;
            match tokio::time::timeout(KILL_DRAIN, pump.run()).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::debug!(container = id, %err, "reading a killed command's output")
                }
                Err(_) => tracing::warn!(container = id, "a killed command's output did not end"),
            }
        }
        let exit_code = match self.exit_code(engine, &exec.id).await {
            Ok(code) => code,
            Err(err) if killed => {
                tracing::debug!(container = id, %err, "inspecting a killed exec");
                None
            }
            Err(err) => return Err(err),
        };
        let oom_killed = !killed
            && exit_code == Some(137)
            && self
                .oom_killed_since(engine, id, pump.header.oom_kills())
                .await;
        Ok(ExecOutcome {
            exit_code,
            timed_out,
            killed,
            oom_killed,
            duration: started.elapsed(),
        })
    }

    async fn connect(&self, id: &str, port: u16) -> Result<Box<dyn Connection>, DriverError> {
        let engine = self.engine().await?;
        let exec = engine
            .docker
            .create_exec(
                id,
                ExecConfig {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(vec![
                        "nc".to_owned(),
                        "127.0.0.1".to_owned(),
                        port.to_string(),
                    ]),
                    ..Default::default()
                },
            )
            .await
            .map_err(|err| self.container_error(err, id))?;
        match engine
            .docker
            .start_exec(&exec.id, None::<StartExecOptions>)
            .await
            .map_err(|err| self.container_error(err, id))?
        {
            StartExecResults::Attached { output, input } => {
                let container = id.to_owned();
                let stdout = output.filter_map(move |item| {
                    futures::future::ready(match item {
                        Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                            Some(Ok(message))
                        }
                        Ok(LogOutput::StdErr { message }) => {
                            tracing::debug!(
                                container,
                                port,
                                stderr = %String::from_utf8_lossy(&message).trim_end(),
                                "port forwarder"
                            );
                            None
                        }
                        Ok(LogOutput::StdIn { .. }) => None,
                        Err(err) => Some(Err(io::Error::other(err))),
                    })
                });
                Ok(Box::new(ExecConnection {
                    reader: StreamReader::new(stdout.boxed()),
                    writer: input,
                }))
            }
            StartExecResults::Detached => {
                Err(DriverError::Engine("the exec started detached".to_owned()))
            }
        }
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerState>, DriverError> {
        let engine = self.engine().await?;
        match engine.docker.inspect_container(id, None).await {
            Ok(inspected) => Ok(Some(container_state(inspected))),
            Err(err) if status(&err) == Some(404) => Ok(None),
            Err(err) => Err(self.error(err)),
        }
    }

    async fn stats(&self, id: &str) -> Result<Stats, DriverError> {
        let engine = self.engine().await?;
        let sample = engine
            .docker
            .stats(
                id,
                Some(
                    StatsOptionsBuilder::new()
                        .stream(false)
                        .one_shot(true)
                        .build(),
                ),
            )
            .next()
            .await
            .ok_or_else(|| DriverError::Engine(format!("no stats for container {id}")))?
            .map_err(|err| self.container_error(err, id))?;
        let memory = sample.memory_stats.unwrap_or_default();
        // Like `docker stats`: page cache the kernel can drop is not counted.
        let inactive_file = memory.stats.as_ref().and_then(|stats| {
            stats
                .get("inactive_file")
                .or_else(|| stats.get("total_inactive_file"))
                .copied()
        });
        let usage = memory.usage.unwrap_or(0);
        Ok(Stats {
            memory_bytes: usage.saturating_sub(inactive_file.unwrap_or(0)),
            memory_limit: memory.limit.unwrap_or(0),
            pids: sample.pids_stats.and_then(|pids| pids.current).unwrap_or(0),
            cpu_total_ns: sample
                .cpu_stats
                .and_then(|cpu| cpu.cpu_usage)
                .and_then(|usage| usage.total_usage)
                .unwrap_or(0),
        })
    }

    async fn stop(&self, id: &str) -> Result<(), DriverError> {
        let engine = self.engine().await?;
        match engine
            .docker
            .stop_container(
                id,
                Some(
                    StopContainerOptionsBuilder::new()
                        .t(STOP_TIMEOUT_SECS)
                        .build(),
                ),
            )
            .await
        {
            Ok(()) => Ok(()),
            // Already stopped.
            Err(err) if status(&err) == Some(304) => Ok(()),
            Err(err) => Err(self.container_error(err, id)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), DriverError> {
        let engine = self.engine().await?;
        match engine
            .docker
            .remove_container(
                id,
                Some(
                    RemoveContainerOptionsBuilder::new()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(err) if status(&err) == Some(404) => Ok(()),
            // Docker: a removal of the container is already in progress.
            Err(err) if status(&err) == Some(409) => Ok(()),
            Err(err) => Err(self.error(err)),
        }
    }

    async fn list(&self, label: &str) -> Result<Vec<ContainerState>, DriverError> {
        let engine = self.engine().await?;
        let filters = HashMap::from([("label", vec![label])]);
        let summaries = engine
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|err| self.error(err))?;
        let ids: Vec<String> = summaries
            .into_iter()
            .filter_map(|summary| summary.id)
            .collect();
        let states: Vec<Result<Option<ContainerState>, DriverError>> = futures::stream::iter(ids)
            .map(|id| async move { self.inspect(&id).await })
            .buffered(8)
            .collect()
            .await;
        let mut found = Vec::with_capacity(states.len());
        for state in states {
            // A container removed since the listing is just gone.
            if let Some(state) = state? {
                found.push(state);
            }
        }
        Ok(found)
    }
}

enum End {
    Exited(Result<(), BollardError>),
    Cancelled,
    TimedOut,
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => futures::future::pending().await,
    }
}

/// The wrapper's header line, the first line of the exec's stderr.
enum Header {
    Pending(Vec<u8>),
    Read {
        oom_kills: Option<u64>,
        pgid: Option<i64>,
    },
    Absent,
}

impl Header {
    fn oom_kills(&self) -> Option<u64> {
        match self {
            Header::Read { oom_kills, .. } => *oom_kills,
            _ => None,
        }
    }
}

/// Moves an exec's output to the receiver. Cancel-safe: it can be dropped at any await and
/// run again without losing output.
struct Pump {
    stream: BoxStream<'static, Result<LogOutput, BollardError>>,
    output: Option<mpsc::Sender<Chunk>>,
    pending: VecDeque<Chunk>,
    header: Header,
    token: String,
}

impl Pump {
    fn new(
        stream: impl Stream<Item = Result<LogOutput, BollardError>> + Send + 'static,
        output: mpsc::Sender<Chunk>,
        token: String,
    ) -> Self {
        Self {
            stream: stream.boxed(),
            output: Some(output),
            pending: VecDeque::new(),
            header: Header::Pending(Vec::new()),
            token,
        }
    }

    fn pgid(&self) -> Option<i64> {
        match self.header {
            Header::Read { pgid, .. } => pgid,
            _ => None,
        }
    }

    async fn run(&mut self) -> Result<(), BollardError> {
        loop {
            while !self.pending.is_empty() {
                // Sent only once there is room, so nothing is lost if this future is dropped
                // while waiting.
                let sent = match &self.output {
                    Some(output) => match output.reserve().await {
                        Ok(permit) => {
                            if let Some(chunk) = self.pending.pop_front() {
                                permit.send(chunk);
                            }
                            true
                        }
                        Err(_) => false,
                    },
                    None => false,
                };
                if !sent {
                    self.output = None;
                    self.pending.clear();
                }
            }
            match self.stream.next().await {
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    self.pending.push_back(Chunk::Stdout(message));
                }
                Some(Ok(LogOutput::StdErr { message })) => self.stderr(message),
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(err)) => return Err(err),
                None => {
                    if let Header::Pending(buffered) = &mut self.header {
                        let buffered = std::mem::take(buffered);
                        self.header = Header::Absent;
                        if !buffered.is_empty() {
                            self.pending.push_back(Chunk::Stderr(buffered.into()));
                        }
                    }
                    if self.pending.is_empty() {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn stderr(&mut self, message: Bytes) {
        let Header::Pending(buffered) = &mut self.header else {
            self.pending.push_back(Chunk::Stderr(message));
            return;
        };
        buffered.extend_from_slice(&message);
        let Some(newline) = buffered.iter().position(|&byte| byte == b'\n') else {
            if buffered.len() > 512 {
                let buffered = std::mem::take(buffered);
                self.header = Header::Absent;
                self.pending.push_back(Chunk::Stderr(buffered.into()));
            }
            return;
        };
        let mut rest = std::mem::take(buffered);
        let line: Vec<u8> = rest.drain(..=newline).collect();
        let line = String::from_utf8_lossy(&line);
        let mut fields = line.split_whitespace();
        if fields.next() == Some(self.token.as_str()) {
            self.header = Header::Read {
                oom_kills: fields.next().and_then(|n| n.parse().ok()),
                pgid: fields
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&pgid| pgid > 1),
            };
        } else {
            // Not the wrapper's (it did not run): all of it is the command's.
            self.header = Header::Absent;
            rest.splice(0..0, line.bytes());
        }
        if !rest.is_empty() {
            self.pending.push_back(Chunk::Stderr(rest.into()));
        }
    }
}

/// The forwarder's stdout as the read half, its stdin as the write half.
struct ExecConnection {
    reader: StreamReader<BoxStream<'static, io::Result<Bytes>>, Bytes>,
    writer: Pin<Box<dyn AsyncWrite + Send>>,
}

impl AsyncRead for ExecConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for ExecConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writer.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer.as_mut().poll_shutdown(cx)
    }
}

fn container_state(inspected: ContainerInspectResponse) -> ContainerState {
    let state = inspected.state.unwrap_or_default();
    let running = state.running.unwrap_or(false);
    ContainerState {
        id: inspected.id.unwrap_or_default(),
        name: inspected
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned(),
        running,
        oom_killed: state.oom_killed.unwrap_or(false),
        exit_code: if running { None } else { state.exit_code },
        labels: inspected
            .config
            .and_then(|config| config.labels)
            .unwrap_or_default(),
    }
}

fn status(err: &BollardError) -> Option<u16> {
    match err {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The innermost cause, e.g. "No such file or directory" for a missing socket.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let text = cause.to_string();
    match text.split_once(" (os error") {
        Some((reason, _)) => reason.to_owned(),
        None => text,
    }
}

fn numeric_user(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

/// A unique, unguessable-enough name for one exec.
fn token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(count);
    hasher.write_u32(std::process::id());
    if let Ok(now) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    format!("autonoma-{:016x}{count:x}", hasher.finish())
}

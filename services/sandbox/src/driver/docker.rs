//! [`Driver`] over the Docker Engine API (Docker, or Podman's Docker-compatible API).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

use super::runner::{Ended, RUNNER_SCRIPT, Runner, RunnerPump};
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
/// How long an exec whose output has ended may take to report its exit code.
const EXIT_CODE_WAIT: Duration = Duration::from_secs(10);
/// How long a port forwarder may outlive its connection before it is killed.
const FORWARDER_GRACE: Duration = Duration::from_secs(2);

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
/// caller is not a group leader). The raised OOM score makes the kernel kill commands rather
/// than PID 1, which it otherwise picks when a second OOM follows the first before the
/// victim's memory is freed, stopping the container.
const WRAPPER_SCRIPT: &str = r#"{ echo 500 > /proc/$$/oom_score_adj; } 2> /dev/null
oom_kills
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
/// none is left. Not `grep -F`: busybox's stops at the first NUL of `environ`.
const KILL_SCRIPT: &str = r#"g=$1 m=$2 i=0
while [ $i -lt 20 ]; do
  case $g in ''|-|0|1) ;; *) kill -KILL -- "-$g" 2> /dev/null ;; esac
  l=$(grep -l -- "$m" /proc/[0-9]*/environ 2> /dev/null)
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

/// A [`Driver`] talking to a Docker-compatible engine. The first call connects and
/// negotiates the API version; until that succeeds every call tries again.
pub struct DockerDriver {
    host: Arc<str>,
    target: Target,
    engine: OnceCell<Engine>,
    /// Idle warm runners by container, and the containers one is being started for.
    runners: Arc<Mutex<HashMap<String, Vec<Runner>>>>,
    warming: Arc<Mutex<HashSet<String>>>,
}

/// Idle runners kept per container: enough for a few calls at once to skip the engine's exec.
const IDLE_RUNNERS: usize = 2;

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
            host: docker_host.into(),
            target,
            engine: OnceCell::new(),
            runners: Arc::default(),
            warming: Arc::default(),
        })
    }

    async fn engine(&self) -> Result<&Engine, DriverError> {
        self.engine
            .get_or_try_init(|| async {
                let error = |err| engine_error(&self.host, err);
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
                .map_err(error)?;
                let docker = docker.negotiate_version().await.map_err(error)?;
                let version = docker.version().await.map_err(error)?;
                let podman = version
                    .components
                    .iter()
                    .flatten()
                    .any(|component| component.name.to_ascii_lowercase().contains("podman"));
                Ok(Engine {
                    docker,
                    host: self.host.clone(),
                    podman,
                })
            })
            .await
    }
}

/// The connected engine.
#[derive(Clone)]
struct Engine {
    docker: Docker,
    host: Arc<str>,
    podman: bool,
}

impl Engine {
    fn error(&self, err: BollardError) -> DriverError {
        engine_error(&self.host, err)
    }

    /// Maps an error of a call about container `id`: 404 is [`DriverError::NotFound`]; an exec
    /// in a stopped container is [`DriverError::NotRunning`] (Docker: 409; Podman: 500
    /// "container state improper").
    fn container_error(&self, err: BollardError, id: &str) -> DriverError {
        match &err {
            BollardError::DockerResponseServerError {
                status_code: 404, ..
            } => DriverError::NotFound { id: id.to_owned() },
            BollardError::DockerResponseServerError {
                status_code: 409, ..
            } => DriverError::NotRunning { id: id.to_owned() },
            BollardError::DockerResponseServerError { message, .. }
                if message.contains("state improper") || message.contains("not running") =>
            {
                DriverError::NotRunning { id: id.to_owned() }
            }
            _ => self.error(err),
        }
    }

    fn host_config(&self, spec: &ContainerSpec) -> HostConfig {
        let positive = |value: i64| (value > 0).then_some(value);
        let tmpfs = spec.read_only_root.then(|| {
            // runc 1.1 gives a tmpfs the mode of the directory it covers, so mode 1777 is not
            // enough when the image's /tmp is not 1777: hand it to the user as well.
            let mut options = format!("rw,exec,nosuid,nodev,size={},mode=1777", spec.tmpfs_bytes);
            if self.podman {
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

    async fn inspect(&self, id: &str) -> Result<Option<ContainerState>, DriverError> {
        match self.docker.inspect_container(id, None).await {
            Ok(inspected) => Ok(Some(container_state(inspected))),
            Err(err) if status(&err) == Some(404) => Ok(None),
            Err(err) => Err(self.error(err)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), DriverError> {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(err) if status(&err) == Some(404) => Ok(()),
            // Docker: a removal of the container is already in progress.
            Err(err) if status(&err) == Some(409) => Ok(()),
            Err(err) => Err(self.error(err)),
        }
    }

    /// Runs a helper script as a plain exec and returns its exit code and stdout.
    async fn run_script(
        &self,
        id: &str,
        script: &str,
        args: &[&str],
    ) -> Result<(Option<i64>, String), DriverError> {
        let mut cmd = vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];
        cmd.extend(args.iter().map(|arg| (*arg).to_owned()));
        let exec = self
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
        let started = self
            .docker
            .start_exec(&exec.id, None::<StartExecOptions>)
            .await
            .map_err(|err| self.container_error(err, id))?;
        if let StartExecResults::Attached { mut output, .. } = started {
            while let Some(item) = output.next().await {
                match item.map_err(|err| self.error(err))? {
                    LogOutput::StdOut { message } => stdout.extend_from_slice(&message),
                    LogOutput::StdErr { message } => tracing::debug!(
                        container = id,
                        stderr = %String::from_utf8_lossy(&message).trim_end(),
                        "helper exec"
                    ),
                    _ => {}
                }
            }
        }
        let code = self.exit_code(&exec.id).await?;
        Ok((code, String::from_utf8_lossy(&stdout).into_owned()))
    }

    /// The exit code of a finished exec; the engine may take a moment to record it.
    async fn exit_code(&self, exec_id: &str) -> Result<Option<i64>, DriverError> {
        let give_up = Instant::now() + EXIT_CODE_WAIT;
        let mut pause = Duration::from_millis(5);
        loop {
            let inspected = self
                .docker
                .inspect_exec(exec_id)
                .await
                .map_err(|err| self.error(err))?;
            if inspected.running != Some(true) {
                return Ok(inspected.exit_code);
            }
            if Instant::now() >= give_up {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Kills the process group `pgid` and every process carrying `marker`; retried while the
    /// container cannot start the exec that does it.
    async fn kill_processes(&self, id: &str, pgid: Option<i64>, marker: &str) -> bool {
        let pgid = pgid.map_or_else(|| "-".to_owned(), |pgid| pgid.to_string());
        let give_up = Instant::now() + KILL_RETRY_FOR;
        loop {
            match self
                .run_script(id, KILL_SCRIPT, &["autonoma-kill", &pgid, marker])
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

    /// Whether the container's memory cgroup OOM-killed a process since its counter read
    /// `before`.
    async fn oom_killed_since(&self, id: &str, before: Option<u64>) -> bool {
        if let Some(before) = before {
            let script = format!("{OOM_COUNTER_FN}oom_kills; echo \"$oom\"");
            match self.run_script(id, &script, &["autonoma-oom"]).await {
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
            .map_err(|err| engine.error(err))?;
        let component = version.components.iter().flatten().find(|component| {
            let name = component.name.to_ascii_lowercase();
            name.contains("engine") || name.contains("podman")
        });
        let (name, number) = match component {
            // Docker calls its component just "Engine".
            Some(component) if component.name == "Engine" => {
                ("Docker Engine".to_owned(), component.version.clone())
            }
            Some(component) => (component.name.clone(), component.version.clone()),
            None => (
                "Docker Engine".to_owned(),
                version.version.clone().unwrap_or_default(),
            ),
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
            host_config: Some(engine.host_config(spec)),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let created = engine
            .docker
            .create_container(Some(options), config)
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
                _ => engine.error(err),
            })?;
        if let Err(err) = engine.docker.start_container(&created.id, None).await {
            let err = engine.error(err);
            if let Err(cleanup) = engine.remove(&created.id).await {
                tracing::warn!(container = created.id, %cleanup, "removing a container that did not start");
            }
            return Err(err);
        }
        // The first command should not wait for an engine exec either.
        self.warm(engine, &created.id);
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
        if cancel.is_cancelled() {
            return Ok(ExecOutcome {
                exit_code: None,
                timed_out: false,
                killed: true,
                oom_killed: false,
                duration: started.elapsed(),
            });
        }
        if spec.env.is_empty() {
            if let Some(runner) = self.idle_runner(id) {
                return self
                    .exec_on_runner(engine, id, runner, spec, output, cancel, started)
                    .await;
            }
            self.warm(engine, id);
        }
        self.exec_via_engine(engine, id, spec, output, cancel, started)
            .await
    }

    async fn connect(&self, id: &str, port: u16) -> Result<Box<dyn Connection>, DriverError> {
        let engine = self.engine().await?;
        let marker = format!("{MARKER_VAR}={}", token());
        let exec = engine
            .docker
            .create_exec(
                id,
                ExecConfig {
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    env: Some(vec![marker.clone()]),
                    cmd: Some(vec![
                        "nc".to_owned(),
                        "127.0.0.1".to_owned(),
                        port.to_string(),
                    ]),
                    ..Default::default()
                },
            )
            .await
            .map_err(|err| engine.container_error(err, id))?;
        let (output, input) = match engine
            .docker
            .start_exec(&exec.id, None::<StartExecOptions>)
            .await
            .map_err(|err| engine.container_error(err, id))?
        {
            StartExecResults::Attached { output, input } => (output, input),
            StartExecResults::Detached => {
                return Err(DriverError::Engine("the exec started detached".to_owned()));
            }
        };
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
            forwarder: Some(Forwarder {
                engine: engine.clone(),
                container: id.to_owned(),
                exec_id: exec.id,
                marker,
            }),
        }))
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerState>, DriverError> {
        self.engine().await?.inspect(id).await
    }

    async fn stats(&self, id: &str) -> Result<Stats, DriverError> {
        let engine = self.engine().await?;
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let sample = engine.docker.stats(id, Some(options)).next().await;
        let sample = match sample {
            Some(sample) => sample.map_err(|err| engine.container_error(err, id))?,
            // Podman answers with nothing for a stopped container.
            None => {
                return Err(match engine.inspect(id).await? {
                    None => DriverError::NotFound { id: id.to_owned() },
                    Some(state) if !state.running => DriverError::NotRunning { id: id.to_owned() },
                    Some(_) => DriverError::Engine(format!("no stats for container {id}")),
                });
            }
        };
        let memory = sample.memory_stats.unwrap_or_default();
        // Like `docker stats`: page cache the kernel can drop is not counted.
        let inactive_file = memory.stats.as_ref().and_then(|stats| {
            stats
                .get("inactive_file")
                .or_else(|| stats.get("total_inactive_file"))
                .copied()
        });
        Ok(Stats {
            memory_bytes: memory
                .usage
                .unwrap_or(0)
                .saturating_sub(inactive_file.unwrap_or(0)),
            memory_limit: memory.limit.unwrap_or(0),
            pids: sample.pids_stats.and_then(|pids| pids.current).unwrap_or(0),
            cpu_total_ns: sample
                .cpu_stats
                .and_then(|cpu| cpu.cpu_usage)
                .and_then(|usage| usage.total_usage)
                .unwrap_or(0),
        })
    }

    async fn pause(&self, id: &str) -> Result<(), DriverError> {
        let engine = self.engine().await?;
        engine
            .docker
            .pause_container(id)
            .await
            .map_err(|err| engine.container_error(err, id))
    }

    async fn unpause(&self, id: &str) -> Result<(), DriverError> {
        let engine = self.engine().await?;
        engine
            .docker
            .unpause_container(id)
            .await
            .map_err(|err| engine.container_error(err, id))
    }

    async fn stop(&self, id: &str) -> Result<(), DriverError> {
        let engine = self.engine().await?;
        let options = StopContainerOptionsBuilder::new()
            .t(STOP_TIMEOUT_SECS)
            .build();
        match engine.docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // Already stopped.
            Err(err) if status(&err) == Some(304) => Ok(()),
            Err(err) => Err(engine.container_error(err, id)),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), DriverError> {
        if let Ok(mut runners) = self.runners.lock() {
            runners.remove(id);
        }
        self.engine().await?.remove(id).await
    }

    async fn list(&self, label: &str) -> Result<Vec<ContainerState>, DriverError> {
        let engine = self.engine().await?;
        let filters = HashMap::from([("label", vec![label])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = engine
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|err| engine.error(err))?;
        let ids: Vec<String> = summaries
            .into_iter()
            .filter_map(|summary| summary.id)
            .collect();
        let states: Vec<Result<Option<ContainerState>, DriverError>> = futures::stream::iter(ids)
            .map(|id| async move { engine.inspect(&id).await })
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

/// Kills an exec's processes when the call running it is dropped before it ends, as its
/// timeout is then no longer enforced.
struct KillOnDrop(Option<(Engine, String, String)>);

impl KillOnDrop {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some((engine, id, marker)) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { engine.kill_processes(&id, None, &marker).await });
        }
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
            stream: stream.fuse().boxed(),
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
        let text = String::from_utf8_lossy(&line);
        let mut fields = text.split_whitespace();
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
            rest.splice(0..0, line);
        }
        if !rest.is_empty() {
            self.pending.push_back(Chunk::Stderr(rest.into()));
        }
    }
}

impl DockerDriver {
    /// [`Driver::exec`] through an engine exec of its own.
    async fn exec_via_engine(
        &self,
        engine: &Engine,
        id: &str,
        spec: ExecSpec,
        output: mpsc::Sender<Chunk>,
        cancel: CancellationToken,
        started: Instant,
    ) -> Result<ExecOutcome, DriverError> {
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
            .map_err(|err| engine.container_error(err, id))?;
        let stream = match engine
            .docker
            .start_exec(&exec.id, None::<StartExecOptions>)
            .await
            .map_err(|err| engine.container_error(err, id))?
        {
            StartExecResults::Attached { output, .. } => output,
            StartExecResults::Detached => {
                return Err(DriverError::Engine("the exec started detached".to_owned()));
            }
        };

        let mut guard = KillOnDrop(Some((engine.clone(), id.to_owned(), marker.clone())));
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
                engine.kill_processes(id, pump.pgid(), &marker).await;
                guard.disarm();
                return Err(engine.container_error(err, id));
            }
            End::Cancelled => (false, true),
            End::TimedOut => (true, true),
        };
        if killed {
            engine.kill_processes(id, pump.pgid(), &marker).await;
        }
        guard.disarm();
        if killed {
            let mut drained = tokio::time::timeout(KILL_DRAIN, pump.run()).await;
            if drained.is_err() {
                // The receiver is not keeping up: the engine only finishes the exec once its
                // output is read, so read it without passing it on.
                pump.output = None;
                drained = tokio::time::timeout(KILL_DRAIN, pump.run()).await;
            }
            match drained {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::debug!(container = id, %err, "reading a killed command's output");
                }
                Err(_) => tracing::warn!(container = id, "a killed command's output did not end"),
            }
        }
        let exit_code = match engine.exit_code(&exec.id).await {
            Ok(code) => code,
            Err(err) if killed => {
                tracing::debug!(container = id, %err, "inspecting a killed exec");
                None
            }
            Err(err) => return Err(err),
        };
        let oom_killed = !killed
            && exit_code == Some(137)
            && engine.oom_killed_since(id, pump.header.oom_kills()).await;
        Ok(ExecOutcome {
            exit_code,
            timed_out,
            killed,
            oom_killed,
            duration: started.elapsed(),
        })
    }

    fn idle_runner(&self, id: &str) -> Option<Runner> {
        self.runners.lock().ok()?.get_mut(id)?.pop()
    }

    fn park_runner(&self, id: &str, runner: Runner) {
        if let Ok(mut runners) = self.runners.lock() {
            let idle = runners.entry(id.to_owned()).or_default();
            if idle.len() < IDLE_RUNNERS {
                idle.push(runner);
            }
        }
    }

    /// Starts a runner for the container in the background, unless one is being started.
    fn warm(&self, engine: &Engine, id: &str) {
        let Ok(mut warming) = self.warming.lock() else {
            return;
        };
        if !warming.insert(id.to_owned()) {
            return;
        }
        let (engine, id) = (engine.clone(), id.to_owned());
        let (runners, warming) = (self.runners.clone(), self.warming.clone());
        tokio::spawn(async move {
            match start_runner(&engine, &id).await {
                Ok(runner) => {
                    if let Ok(mut runners) = runners.lock() {
                        let idle = runners.entry(id.clone()).or_default();
                        if idle.len() < IDLE_RUNNERS {
                            idle.push(runner);
                        }
                    }
                }
                Err(error) => tracing::debug!(container = id, %error, "starting a runner"),
            }
            if let Ok(mut warming) = warming.lock() {
                warming.remove(&id);
            }
        });
    }

    /// [`Driver::exec`] on a warm runner: the same outcome, without an engine exec unless the
    /// command has to be killed or may have been OOM-killed.
    #[allow(clippy::too_many_arguments)]
    async fn exec_on_runner(
        &self,
        engine: &Engine,
        id: &str,
        mut runner: Runner,
        spec: ExecSpec,
        output: mpsc::Sender<Chunk>,
        cancel: CancellationToken,
        started: Instant,
    ) -> Result<ExecOutcome, DriverError> {
        let token = token();
        let marker = format!("{MARKER_VAR}={token}");
        if let Err(error) = runner.send(&token, &spec.cwd, &spec.cmd).await {
            // A runner whose container restarted or whose shell died: run it the slow way.
            tracing::debug!(container = id, %error, "a runner refused a command");
            return self
                .exec_via_engine(engine, id, spec, output, cancel, started)
                .await;
        }
        let mut guard = KillOnDrop(Some((engine.clone(), id.to_owned(), marker.clone())));
        let mut pump = RunnerPump::new(token, output);
        let deadline = spec.timeout.map(|timeout| started + timeout);
        let end = tokio::select! {
            biased;
            result = pump.run(&mut runner) => Some(result),
            () = cancel.cancelled() => None,
            () = sleep_until(deadline) => None,
        };
        let timed_out = end.is_none() && !cancel.is_cancelled();
        let killed = end.is_none();
        let end = match end {
            Some(end) => end,
            None => {
                engine.kill_processes(id, pump.pgid, &marker).await;
                let mut drained = tokio::time::timeout(KILL_DRAIN, pump.run(&mut runner)).await;
                if drained.is_err() {
                    // The receiver is not keeping up: read the rest without passing it on.
                    pump.sink = None;
                    drained = tokio::time::timeout(KILL_DRAIN, pump.run(&mut runner)).await;
                }
                drained.unwrap_or(Ok(Ended::RunnerGone))
            }
        };
        guard.disarm();
        let exit_code = match end {
            Ok(Ended::Exited(status)) => {
                self.park_runner(id, runner);
                Some(status)
            }
            // The runner had died before it took the command (its processes were killed):
            // nothing ran, so run it the slow way.
            Ok(Ended::RunnerGone) if !killed && !pump.started => {
                let Some(output) = pump.sink.take() else {
                    return Err(DriverError::Engine("the runner ended".to_owned()));
                };
                return self
                    .exec_via_engine(engine, id, spec, output, cancel, started)
                    .await;
            }
            Ok(Ended::RunnerGone) => None,
            Err(err) if killed => {
                tracing::debug!(container = id, %err, "reading a killed command's output");
                None
            }
            Err(err) => {
                engine.kill_processes(id, pump.pgid, &marker).await;
                return Err(engine.container_error(err, id));
            }
        };
        let oom_killed = !killed
            && matches!(exit_code, Some(137) | None)
            && engine.oom_killed_since(id, pump.oom_kills).await;
        Ok(ExecOutcome {
            exit_code,
            timed_out,
            killed,
            oom_killed,
            duration: started.elapsed(),
        })
    }
}

/// A shell in the container that runs commands sent to its stdin ([`RUNNER_SCRIPT`]).
async fn start_runner(engine: &Engine, id: &str) -> Result<Runner, DriverError> {
    let exec = engine
        .docker
        .create_exec(
            id,
            ExecConfig {
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                working_dir: Some("/".to_owned()),
                cmd: Some(vec![
                    "/bin/sh".to_owned(),
                    "-c".to_owned(),
                    RUNNER_SCRIPT.to_owned(),
                    "autonoma-runner".to_owned(),
                    format!("{OOM_COUNTER_FN}{WRAPPER_SCRIPT}"),
                ]),
                ..Default::default()
            },
        )
        .await
        .map_err(|err| engine.container_error(err, id))?;
    match engine
        .docker
        .start_exec(&exec.id, None::<StartExecOptions>)
        .await
        .map_err(|err| engine.container_error(err, id))?
    {
        StartExecResults::Attached { output, input } => Ok(Runner {
            input,
            output: output.boxed(),
        }),
        StartExecResults::Detached => Err(DriverError::Engine(
            "the runner started detached".to_owned(),
        )),
    }
}

/// The forwarder's stdout as the read half, its stdin as the write half.
struct ExecConnection {
    reader: StreamReader<BoxStream<'static, io::Result<Bytes>>, Bytes>,
    writer: Pin<Box<dyn AsyncWrite + Send>>,
    forwarder: Option<Forwarder>,
}

impl Drop for ExecConnection {
    fn drop(&mut self) {
        if let Some(forwarder) = self.forwarder.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(forwarder.reap());
        }
    }
}

/// The exec behind a connection.
struct Forwarder {
    engine: Engine,
    container: String,
    exec_id: String,
    marker: String,
}

impl Forwarder {
    /// Closing the connection closes the forwarder's stdin, which ends it unless the server
    /// keeps its side open: then it is killed.
    async fn reap(self) {
        tokio::time::sleep(FORWARDER_GRACE).await;
        match self.engine.docker.inspect_exec(&self.exec_id).await {
            Ok(exec) if exec.running == Some(true) => {
                self.engine
                    .kill_processes(&self.container, None, &self.marker)
                    .await;
            }
            Ok(_) => {}
            Err(err) => tracing::debug!(container = self.container, %err, "inspecting a forwarder"),
        }
    }
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

/// Maps an error that is not specific to one container.
fn engine_error(host: &str, err: BollardError) -> DriverError {
    match err {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => DriverError::Engine(format!("{} (HTTP {status_code})", message.trim())),
        BollardError::RequestTimeoutError => DriverError::Unreachable(format!(
            "the container engine at {host} did not answer within {REQUEST_TIMEOUT_SECS} s"
        )),
        // bollard checks that the socket exists before connecting.
        BollardError::SocketNotFoundError(_) => DriverError::Unreachable(format!(
            "cannot reach the container engine at {host}: No such file or directory"
        )),
        BollardError::HyperLegacyError { .. }
        | BollardError::HttpClientError { .. }
        | BollardError::HyperResponseError { .. }
        | BollardError::IOError { .. } => DriverError::Unreachable(format!(
            "cannot reach the container engine at {host}: {}",
            root_cause(&err)
        )),
        other => DriverError::Engine(other.to_string()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(items: Vec<LogOutput>) -> impl Stream<Item = Result<LogOutput, BollardError>> {
        futures::stream::iter(items.into_iter().map(Ok))
    }

    fn out(text: &str) -> LogOutput {
        LogOutput::StdOut {
            message: Bytes::copy_from_slice(text.as_bytes()),
        }
    }

    fn err(text: &str) -> LogOutput {
        LogOutput::StdErr {
            message: Bytes::copy_from_slice(text.as_bytes()),
        }
    }

    async fn pumped(items: Vec<LogOutput>) -> (Vec<Chunk>, Pump) {
        let (tx, mut rx) = mpsc::channel(1);
        let mut pump = Pump::new(frames(items), tx, "tok".to_owned());
        let collect = tokio::spawn(async move {
            let mut chunks = Vec::new();
            while let Some(chunk) = rx.recv().await {
                chunks.push(chunk);
            }
            chunks
        });
        pump.run().await.expect("pumping");
        pump.output = None;
        (collect.await.expect("collecting"), pump)
    }

    fn stderr_of(chunks: &[Chunk]) -> String {
        chunks
            .iter()
            .filter_map(|chunk| match chunk {
                Chunk::Stderr(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
                Chunk::Stdout(_) => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn the_header_is_taken_off_stderr_even_split_or_joined() {
        let (chunks, pump) = pumped(vec![
            out("a\n"),
            err("tok 3 4"),
            err("2\nwarn"),
            err("ing\n"),
        ])
        .await;
        assert_eq!(chunks[0], Chunk::Stdout("a\n".into()));
        assert_eq!(stderr_of(&chunks), "warning\n");
        assert_eq!(pump.header.oom_kills(), Some(3));
        assert_eq!(pump.pgid(), Some(42));

        let (chunks, pump) = pumped(vec![err("tok - 7\n")]).await;
        assert!(chunks.is_empty(), "{chunks:?}");
        assert_eq!(pump.header.oom_kills(), None);
        assert_eq!(pump.pgid(), Some(7));
    }

    #[tokio::test]
    async fn stderr_without_the_header_is_all_passed_on() {
        let (chunks, pump) = pumped(vec![err("sh: not found\nmore\n")]).await;
        assert_eq!(stderr_of(&chunks), "sh: not found\nmore\n");
        assert_eq!(pump.pgid(), None);

        let (chunks, _) = pumped(vec![err("no newline")]).await;
        assert_eq!(stderr_of(&chunks), "no newline");

        let (chunks, _) = pumped(vec![err("tokens 1 2\n")]).await;
        assert_eq!(stderr_of(&chunks), "tokens 1 2\n");

        let binary = LogOutput::StdErr {
            message: Bytes::from_static(b"\xff\xfe\n"),
        };
        let (chunks, _) = pumped(vec![binary]).await;
        assert_eq!(
            chunks,
            vec![Chunk::Stderr(Bytes::from_static(b"\xff\xfe\n"))]
        );
    }

    #[tokio::test]
    async fn a_dropped_receiver_does_not_stop_the_pump() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut pump = Pump::new(frames(vec![out("a"), out("b")]), tx, "tok".to_owned());
        pump.run().await.expect("pumping");
        assert!(pump.output.is_none());
    }

    #[test]
    fn users_and_causes() {
        assert_eq!(numeric_user("1000:1001"), Some((1000, 1001)));
        assert_eq!(numeric_user("1000"), Some((1000, 1000)));
        assert_eq!(numeric_user("sandbox"), None);
        let err = io::Error::from_raw_os_error(2);
        assert_eq!(root_cause(&err), "No such file or directory");
        assert_ne!(token(), token());
    }
}

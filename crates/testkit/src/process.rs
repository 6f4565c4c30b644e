//! Service binaries run as real OS processes, isolated from the test's own environment.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long to let the output readers drain the pipes after the process exits.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// A service binary running as a child process. Dropping it kills the process (SIGKILL).
#[derive(Debug)]
pub struct ServiceProcess {
    name: String,
    child: Child,
    port: u16,
    captured: Arc<Mutex<Captured>>,
    readers: Vec<JoinHandle<()>>,
    /// Working directory, fresh so no stray `.env` or other file is picked up.
    _cwd: tempfile::TempDir,
}

#[derive(Debug, Default)]
struct Captured {
    /// stdout and stderr interleaved line by line, as they arrived.
    combined: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

impl ServiceProcess {
    /// Starts `bin` with only `PATH` and `env` in its environment, plus `PORT` (a free port)
    /// and `HOST=127.0.0.1` unless `env` sets them, in an empty temporary working directory.
    /// Its output is captured and echoed to stderr, each line prefixed with the binary's name.
    pub fn spawn(bin: &Path, env: &[(&str, String)]) -> Result<Self> {
        Self::spawn_with_args(bin, &[], env)
    }

    /// [`ServiceProcess::spawn`] with command-line arguments.
    pub fn spawn_with_args(bin: &Path, args: &[&str], env: &[(&str, String)]) -> Result<Self> {
        let name = bin.file_name().map_or_else(
            || bin.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        let cwd = tempfile::Builder::new()
            .prefix("autonoma-service-")
            .tempdir()
            .context("creating a working directory for the service")?;
        let lookup = |key: &str| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v);

        let mut cmd = Command::new(bin);
        cmd.args(args).env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.envs(env.iter().map(|(key, value)| (key, value)));
        let port = match lookup("PORT") {
            Some(port) => port
                .parse()
                .with_context(|| format!("PORT={port} is not a port number"))?,
            None => {
                let port = autonoma_localpg::free_port()?;
                cmd.env("PORT", port.to_string());
                port
            }
        };
        if lookup("HOST").is_none() {
            cmd.env("HOST", "127.0.0.1");
        }
        cmd.current_dir(cwd.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();

        // Built before the readers so that a failure below still kills the process.
        let mut process = ServiceProcess {
            name,
            child,
            port,
            captured: Arc::default(),
            readers: Vec::new(),
            _cwd: cwd,
        };
        if let Some(stdout) = stdout {
            let reader = process.spawn_reader(stdout, Stream::Stdout)?;
            process.readers.push(reader);
        }
        if let Some(stderr) = stderr {
            let reader = process.spawn_reader(stderr, Stream::Stderr)?;
            process.readers.push(reader);
        }
        Ok(process)
    }

    fn spawn_reader(
        &self,
        stream: impl Read + Send + 'static,
        which: Stream,
    ) -> Result<JoinHandle<()>> {
        let name = self.name.clone();
        let captured = Arc::clone(&self.captured);
        thread::Builder::new()
            .name(format!("{name}-output"))
            .spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let mut text = String::from_utf8_lossy(&line).into_owned();
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                    eprint!("[{name}] {text}");
                    let mut captured = lock(&captured);
                    captured.combined.push_str(&text);
                    match which {
                        Stream::Stdout => captured.stdout.extend_from_slice(&line),
                        Stream::Stderr => captured.stderr.extend_from_slice(&line),
                    }
                }
            })
            .context("spawning an output reader thread")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `base_url` joined with `path` (which should start with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote so far, stdout and stderr interleaved by line.
    pub fn output(&self) -> String {
        lock(&self.captured).combined.clone()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&lock(&self.captured).stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&lock(&self.captured).stderr).into_owned()
    }

    /// Polls `GET /health` until it answers 200. Fails early, with the output so far, if the
    /// process exits first.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building an HTTP client")?;
        let url = self.url("/health");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                self.drain_output().await;
                bail!(
                    "{} exited ({status}) before becoming healthy; output:\n{}",
                    self.name,
                    self.output()
                );
            }
            let last = match client.get(&url).send().await {
                Ok(response) if response.status() == reqwest::StatusCode::OK => return Ok(()),
                Ok(response) => format!("HTTP {}", response.status()),
                Err(err) => err.to_string(),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{} did not answer 200 on {url} within {timeout:?} (last: {last}); output:\n{}",
                    self.name,
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("checking on {}", self.name))
    }

    /// Asks the process to shut down gracefully (SIGTERM).
    pub fn terminate(&self) -> Result<()> {
        self.signal(Signal::SIGTERM)
    }

    /// Kills the process (SIGKILL) and reaps it, e.g. to simulate a crash.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        self.signal(Signal::SIGKILL)?;
        self.child
            .wait()
            .with_context(|| format!("waiting for {}", self.name))
    }

    fn signal(&self, sig: Signal) -> Result<()> {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).context("pid out of range")?);
        match signal::kill(pid, sig) {
            // An exited but unreaped process still holds its pid, so ESRCH means already gone.
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(err) => Err(err).with_context(|| format!("sending {sig} to {}", self.name)),
        }
    }

    /// Waits for the process to exit on its own; fails (leaving it running) after `timeout`.
    /// Output written before the exit is in [`ServiceProcess::output`] once this returns.
    pub async fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                self.drain_output().await;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not exit within {timeout:?}; output so far:\n{}",
                    self.name,
                    self.output()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Lets the readers reach the end of the pipes. A grandchild that inherited them could keep
    /// them open forever, hence the bound.
    async fn drain_output(&self) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while Instant::now() < deadline && !self.readers.iter().all(JoinHandle::is_finished) {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a binary that should exit by itself (e.g. a service given invalid configuration), with
/// the same environment and working-directory treatment as [`ServiceProcess::spawn`]. Kills it
/// and fails if it is still running after `timeout`.
pub async fn run_to_exit(bin: &Path, env: &[(&str, String)], timeout: Duration) -> Result<Output> {
    run_to_exit_with_args(bin, &[], env, timeout).await
}

/// [`run_to_exit`] with command-line arguments.
pub async fn run_to_exit_with_args(
    bin: &Path,
    args: &[&str],
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<Output> {
    let mut process = ServiceProcess::spawn_with_args(bin, args, env)?;
    let status = process.wait(timeout).await?;
    let captured = lock(&process.captured);
    Ok(Output {
        status,
        stdout: captured.stdout.clone(),
        stderr: captured.stderr.clone(),
    })
}

/// The buffers stay usable even if a reader thread panicked mid-update.
fn lock(captured: &Mutex<Captured>) -> MutexGuard<'_, Captured> {
    captured.lock().unwrap_or_else(PoisonError::into_inner)
}

//! Warm runners: a shell kept running in a container (one engine exec, started ahead of
//! time) that runs one command after another from lines on its stdin. An engine exec costs
//! tens of milliseconds before the command even starts (Podman: ~100 ms); a command on a warm
//! runner costs a few forks. Each command still runs under the exec wrapper, so it has its own
//! process group, marker and header, and is killed the same way; the runner only replaces how
//! it is started and how its end is seen: the runner writes `\x1e<token>\n` to stdout and
//! `\x1e<token> <status>\n` to stderr once the command has exited.

use std::pin::Pin;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::Chunk;

/// `$1` the exec wrapper. Reads `<token> <base64 cwd> <base64 command>` lines and runs each
/// command, in the background so the runner itself never holds the command's process group.
pub const RUNNER_SCRIPT: &str = r#"w=$1
while IFS=' ' read -r t c m; do
  (
    d=$(printf %s "$c" | base64 -d) && cd "$d" || exit 126
    AUTONOMA_EXEC=$t
    export AUTONOMA_EXEC
    exec /bin/sh -c "$w" "$t" "$(printf %s "$m" | base64 -d)"
  ) < /dev/null &
  wait $!
  s=$?
  printf '\036%s\n' "$t"
  printf '\036%s %s\n' "$t" "$s" >&2
done
"#;

/// A runner waiting for its next command.
pub struct Runner {
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
    pub output: BoxStream<'static, Result<LogOutput, BollardError>>,
}

/// How a command on a runner ended.
pub enum Ended {
    /// Both end markers arrived: the exit status, and whether the runner can run another.
    Exited(i64),
    /// The runner's output ended first (it died): it cannot be used again.
    RunnerGone,
}

impl Runner {
    pub async fn send(&mut self, token: &str, cwd: &str, cmd: &str) -> std::io::Result<()> {
        let line = format!(
            "{token} {} {}\n",
            BASE64.encode(cwd.as_bytes()),
            BASE64.encode(cmd.as_bytes())
        );
        self.input.write_all(line.as_bytes()).await?;
        self.input.flush().await
    }
}

/// Splits a runner's output into the command's chunks, its header and its end.
pub struct RunnerPump {
    token: String,
    stdout: Scan,
    stderr: Scan,
    /// Bytes of stderr before the header line is complete.
    header: Option<Vec<u8>>,
    /// The header's fields after the token: OOM kills and process group.
    pub oom_kills: Option<u64>,
    pub pgid: Option<i64>,
    /// Once the receiver is gone, output is read and dropped.
    pub sink: Option<mpsc::Sender<Chunk>>,
    /// Anything of the command arrived: it ran.
    pub started: bool,
}

impl RunnerPump {
    pub fn new(token: String, sink: mpsc::Sender<Chunk>) -> Self {
        Self {
            stdout: Scan::new(format!("\x1e{token}\n").into_bytes()),
            stderr: Scan::new(format!("\x1e{token} ").into_bytes()),
            token,
            header: Some(Vec::new()),
            oom_kills: None,
            pgid: None,
            sink: Some(sink),
            started: false,
        }
    }

    /// Reads until both end markers (or the end of the runner). Cancel-safe between chunks:
    /// what was read is kept in `self`.
    pub async fn run(&mut self, runner: &mut Runner) -> Result<Ended, BollardError> {
        loop {
            if self.stdout.done
                && let Some(status) = self.stderr.status()
            {
                return Ok(Ended::Exited(status));
            }
            match runner.output.next().await {
                Some(Ok(LogOutput::StdOut { message } | LogOutput::Console { message })) => {
                    self.started = true;
                    let out = self.stdout.feed(&message);
                    self.emit(out.map(Chunk::Stdout)).await;
                }
                Some(Ok(LogOutput::StdErr { message })) => {
                    self.started = true;
                    let message = match self.take_header(message) {
                        Some(rest) => rest,
                        None => continue,
                    };
                    let out = self.stderr.feed(&message);
                    self.emit(out.map(Chunk::Stderr)).await;
                }
                Some(Ok(LogOutput::StdIn { .. })) => {}
                Some(Err(err)) => return Err(err),
                None => return Ok(Ended::RunnerGone),
            }
        }
    }

    /// Takes the wrapper's header line off the start of stderr; `None` while it is incomplete.
    fn take_header(&mut self, message: Bytes) -> Option<Bytes> {
        let Some(buffered) = &mut self.header else {
            return Some(message);
        };
        buffered.extend_from_slice(&message);
        let newline = buffered.iter().position(|&b| b == b'\n');
        let Some(newline) = newline else {
            if buffered.len() > 512 {
                return self.header.take().map(Bytes::from);
            }
            return None;
        };
        let mut rest = self.header.take().unwrap_or_default();
        let line: Vec<u8> = rest.drain(..=newline).collect();
        let text = String::from_utf8_lossy(&line);
        let mut fields = text.split_whitespace();
        if fields.next() == Some(self.token.as_str()) {
            self.oom_kills = fields.next().and_then(|n| n.parse().ok());
            self.pgid = fields
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|&pgid| pgid > 1);
        } else {
            // The wrapper did not run (e.g. `cd` failed): all of it is the command's.
            rest.splice(0..0, line);
        }
        Some(Bytes::from(rest))
    }

    async fn emit(&mut self, chunk: Option<Chunk>) {
        let Some(chunk) = chunk else { return };
        if let Some(sink) = &self.sink
            && sink.send(chunk).await.is_err()
        {
            self.sink = None;
        }
    }
}

/// Finds an end marker in a stream of chunks, passing on everything before it and holding
/// back only what could be the marker's beginning.
struct Scan {
    marker: Vec<u8>,
    held: Vec<u8>,
    done: bool,
    /// After the stderr marker: the status digits up to the newline.
    after: Option<Vec<u8>>,
}

impl Scan {
    fn new(marker: Vec<u8>) -> Self {
        Self {
            marker,
            held: Vec::new(),
            done: false,
            after: None,
        }
    }

    /// The bytes of the command in `bytes` (with what was held back), if any.
    fn feed(&mut self, bytes: &[u8]) -> Option<Bytes> {
        if let Some(after) = &mut self.after {
            after.extend_from_slice(bytes);
            return None;
        }
        if self.done {
            // Output after the end: a background process of the command; not this call's.
            return None;
        }
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(bytes);
        if let Some(at) = find(&data, &self.marker) {
            self.done = true;
            self.after = Some(data[at + self.marker.len()..].to_vec());
            return non_empty(&data[..at]);
        }
        // Hold back the longest tail that is a beginning of the marker.
        let keep = (1..self.marker.len().min(data.len() + 1))
            .rev()
            .find(|&n| data.ends_with(&self.marker[..n]))
            .unwrap_or(0);
        self.held = data.split_off(data.len() - keep);
        non_empty(&data)
    }

    /// The status after the stderr marker, once its line is complete.
    fn status(&self) -> Option<i64> {
        let after = self.after.as_ref()?;
        let end = after.iter().position(|&b| b == b'\n')?;
        std::str::from_utf8(&after[..end]).ok()?.trim().parse().ok()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn non_empty(bytes: &[u8]) -> Option<Bytes> {
    (!bytes.is_empty()).then(|| Bytes::copy_from_slice(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_split_across_chunks_are_found_and_removed() {
        let mut scan = Scan::new(b"\x1etok\n".to_vec());
        let mut out = Vec::new();
        for piece in [&b"hello\x1e"[..], b"t", b"ok\nlate"] {
            if let Some(bytes) = scan.feed(piece) {
                out.extend_from_slice(&bytes);
            }
        }
        assert_eq!(out, b"hello");
        assert!(scan.done);
    }

    #[test]
    fn a_lone_record_separator_is_output() {
        let mut scan = Scan::new(b"\x1etok\n".to_vec());
        let mut out = Vec::new();
        for piece in [&b"a\x1ex"[..], b"\x1et", b"x\n"] {
            if let Some(bytes) = scan.feed(piece) {
                out.extend_from_slice(&bytes);
            }
        }
        assert_eq!(out, b"a\x1ex\x1etx\n");
        assert!(!scan.done);
    }

    #[test]
    fn the_status_follows_the_stderr_marker() {
        let mut scan = Scan::new(b"\x1etok ".to_vec());
        assert_eq!(scan.feed(b"err\n\x1etok 1").as_deref(), Some(&b"err\n"[..]));
        assert_eq!(scan.status(), None);
        assert_eq!(scan.feed(b"37\n"), None);
        assert_eq!(scan.status(), Some(137));
    }
}

//! The official Python MCP client (the queue gateway's test driver, `TEST_MCP_PYTHON`) over
//! streamable HTTP with an internal key as bearer token; every line it prints, and whatever it
//! writes to stderr, is kept as evidence.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

use super::run::Recorder;

const LINE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Client {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<ChildStderr>,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: u64,
    recorder: Recorder,
}

impl Client {
    pub async fn connect(name: &str, url: &str, key: &str, recorder: &Recorder) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../services/queue-gateway/tests/mcp_client.py"
        );
        let mut child = tokio::process::Command::new(autonoma_testkit::mcp_python())
            .arg(script)
            .arg(url)
            .arg(key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the MCP client");
        let stdin = child.stdin.take();
        let stderr = child.stderr.take();
        let stdout = child.stdout.take().expect("stdout");
        let mut client = Client {
            name: name.to_owned(),
            child,
            stdin,
            stderr,
            lines: BufReader::new(stdout).lines(),
            next_id: 0,
            recorder: recorder.clone(),
        };
        let ready = client.line().await;
        assert_eq!(ready["event"], "ready", "{}: {ready}", client.name);
        client
    }

    async fn line(&mut self) -> Value {
        let line = tokio::time::timeout(LINE_TIMEOUT, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{}: the MCP client did not answer in time", self.name))
            .expect("read the MCP client");
        let Some(line) = line else {
            let stderr = self.stderr_text().await;
            panic!("{}: the MCP client exited:\n{stderr}", self.name);
        };
        self.recorder
            .keep(format!("{} MCP client output", self.name), line.clone());
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", self.name));
        assert_ne!(value["event"], "error", "{}: {}", self.name, value["error"]);
        value
    }

    /// Calls `tool` and returns its result (`content`, `structuredContent`, `isError`).
    pub async fn call(&mut self, tool: &str, args: Value) -> Value {
        self.send(json!({"op": "call", "tool": tool, "args": args, "progress": true}))
            .await
    }

    pub async fn list_tools(&mut self) -> Value {
        self.send(json!({"op": "list_tools"})).await
    }

    async fn send(&mut self, mut command: Value) -> Value {
        self.next_id += 1;
        command["id"] = json!(self.next_id);
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .as_mut()
            .expect("the client is open")
            .write_all(line.as_bytes())
            .await
            .expect("write to the MCP client");
        loop {
            let line = self.line().await;
            if line["event"] == "result" && line["id"] == self.next_id {
                return line["result"].clone();
            }
        }
    }

    async fn stderr_text(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), stderr.read_to_string(&mut text))
                .await;
        }
        text
    }

    /// Closes the client (it exits when its stdin closes) and keeps what it wrote to stderr.
    pub async fn close(mut self) {
        drop(self.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
        let stderr = self.stderr_text().await;
        self.recorder
            .keep(format!("{} MCP client stderr", self.name), stderr);
    }
}

//! Each session's log: lines from its dev server and commands, and a line per tool call, kept
//! in a bounded ring (replayed to a stream that opens late) and broadcast to open streams.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use utoipa::ToSchema;

use crate::output::Redactor;

/// Lines kept for replay.
pub const RING_LINES: usize = 1000;
/// Longest line; the rest is cut with a marker.
pub const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
    /// A tool call and its outcome.
    Tool,
    /// What the sandbox itself reports: OOM kills, a dev server ending, reaping.
    System,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogLine {
    /// Position in the session's log, from 1.
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub ts: OffsetDateTime,
    pub stream: Stream,
    pub line: String,
}

pub struct LogHub {
    state: Mutex<Ring>,
    live: broadcast::Sender<LogLine>,
    redactor: Redactor,
}

struct Ring {
    next: u64,
    lines: VecDeque<LogLine>,
    /// Bytes of an unfinished line, per output stream.
    partial: [Vec<u8>; 2],
}

impl LogHub {
    /// Every line is redacted before it is kept or sent.
    pub fn new(redactor: Redactor) -> Self {
        Self {
            state: Mutex::new(Ring {
                next: 1,
                lines: VecDeque::new(),
                partial: [Vec::new(), Vec::new()],
            }),
            live: broadcast::channel(RING_LINES).0,
            redactor,
        }
    }

    /// Appends one whole line.
    pub fn line(&self, stream: Stream, line: &str) {
        let Ok(mut ring) = self.state.lock() else {
            return;
        };
        self.push(&mut ring, stream, line);
    }

    /// Appends output bytes, split into lines; an unfinished last line
    /// waits for the rest, or for [`LogHub::flush`].
    pub fn output(&self, stream: Stream, bytes: &[u8]) {
        let Ok(mut ring) = self.state.lock() else {
            return;
        };
        let slot = usize::from(stream == Stream::Stderr);
        let mut pending = std::mem::take(&mut ring.partial[slot]);
        pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = String::from_utf8_lossy(&pending[start..start + end]).into_owned();
            self.push(&mut ring, stream, line.trim_end_matches('\r'));
            start += end + 1;
        }
        let mut rest = pending.split_off(start);
        if rest.len() > MAX_LINE {
            let line = String::from_utf8_lossy(&rest).into_owned();
            self.push(&mut ring, stream, &line);
            rest.clear();
        }
        ring.partial[slot] = rest;
    }

    /// Emits unfinished lines.
    pub fn flush(&self) {
        let Ok(mut ring) = self.state.lock() else {
            return;
        };
        for (slot, stream) in [(0, Stream::Stdout), (1, Stream::Stderr)] {
            let rest = std::mem::take(&mut ring.partial[slot]);
            if !rest.is_empty() {
                let line = String::from_utf8_lossy(&rest).into_owned();
                self.push(&mut ring, stream, &line);
            }
        }
    }

    fn push(&self, ring: &mut Ring, stream: Stream, line: &str) {
        let mut text = self.redactor.redact(line);
        if text.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str(" …[line truncated]");
        }
        let entry = LogLine {
            seq: ring.next,
            ts: OffsetDateTime::now_utc(),
            stream,
            line: text,
        };
        ring.next += 1;
        if ring.lines.len() == RING_LINES {
            ring.lines.pop_front();
        }
        ring.lines.push_back(entry.clone());
        let _ = self.live.send(entry);
    }

    /// The kept lines after `after`, and a receiver of every later line. Taken under the
    /// ring's lock, so nothing falls between the two.
    pub fn subscribe(&self, after: u64) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        match self.state.lock() {
            Ok(ring) => {
                let backlog = ring.lines.iter().filter(|l| l.seq > after).cloned();
                (backlog.collect(), self.live.subscribe())
            }
            Err(_) => (Vec::new(), self.live.subscribe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines_across_chunks() {
        let hub = LogHub::new(Redactor::new([]));
        hub.output(Stream::Stdout, b"one\ntw");
        hub.output(Stream::Stderr, b"err\n");
        hub.output(Stream::Stdout, b"o\r\nthree");
        hub.flush();
        let (lines, _) = hub.subscribe(0);
        let got: Vec<_> = lines.iter().map(|l| (l.stream, l.line.as_str())).collect();
        assert_eq!(
            got,
            [
                (Stream::Stdout, "one"),
                (Stream::Stderr, "err"),
                (Stream::Stdout, "two"),
                (Stream::Stdout, "three"),
            ]
        );
        assert_eq!(hub.subscribe(2).0.len(), 2);
    }

    #[test]
    fn the_ring_is_bounded() {
        let hub = LogHub::new(Redactor::new([]));
        for i in 0..(RING_LINES + 5) {
            hub.line(Stream::System, &i.to_string());
        }
        let (lines, _) = hub.subscribe(0);
        assert_eq!(lines.len(), RING_LINES);
        assert_eq!(lines[0].line, "5");
    }
}

//! What the steps of running operations print, line by line as they print it, for the CLI that
//! follows an operation on the root-only control socket (`strackt deploy`, `strackt history
//! --operation ID --follow`).
//!
//! Owns a bounded window of output lines per operation, kept in memory only, and the output
//! counters of each running step. Every line is masked by the same [`Redactor`] rules as the
//! operations log before it is kept, and only whole lines are masked and kept (a partial line
//! waits for its newline or the end of the step), so a secret is never cut in two and missed.
//! Must not be served over HTTP: a build's output can hold anything (README "Who can read
//! what"); HTTP shows a running step's counters only, through its `detail`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::state::Redactor;

/// Lines kept per operation (the newest); a follower that falls further behind is told how
/// many it missed.
const KEEP_LINES: usize = 2000;
/// Longest line kept, in bytes (cut after masking, so the cut cannot split a secret).
const MAX_LINE: usize = 4096;
/// A partial line longer than this is taken as a line: above the largest secret strackt
/// masks (64 KiB), so even then no secret is split.
const MAX_PENDING: usize = 128 * 1024;
/// How long the lines of a finished operation stay for a follower to read its last lines.
const KEEP_FINISHED: Duration = Duration::from_secs(120);

/// One line of output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// Its number in the operation's output (from 1).
    pub n: u64,
    /// The step that printed it (its index in the operation's steps).
    pub step: usize,
    /// The line, masked, without its newline.
    pub text: String,
}

/// The lines after a follower's last one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputView {
    /// In order.
    pub lines: Vec<Line>,
    /// Lines the follower missed: no longer kept.
    pub skipped: u64,
}

#[derive(Debug, Default)]
struct OpLines {
    lines: VecDeque<Line>,
    /// Lines so far.
    count: u64,
    finished: Option<Instant>,
}

/// The output of running operations.
#[derive(Debug)]
pub struct Outputs {
    ops: Mutex<BTreeMap<i64, OpLines>>,
    redact: Mutex<Redactor>,
}

impl Outputs {
    /// Output masked with `redact` (the operations log's sources).
    pub fn new(redact: Redactor) -> Arc<Outputs> {
        Arc::new(Outputs {
            ops: Mutex::new(BTreeMap::new()),
            redact: Mutex::new(redact),
        })
    }

    /// Where step `step` of operation `op` writes its output; `counters` gets its line and
    /// byte counts (the step's live line).
    pub(crate) fn step(
        self: &Arc<Self>,
        op: i64,
        step: usize,
        counters: Arc<Mutex<String>>,
    ) -> StepOutput {
        // The secrets are re-read once per step: a step runs with the values read at its start.
        self.redact
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .prepare();
        StepOutput {
            outputs: self.clone(),
            op,
            step,
            counters,
            lines: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Operation `op` ended: its lines stay a little for followers, then go.
    pub(crate) fn finish(&self, op: i64) {
        let mut ops = self.ops.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(o) = ops.get_mut(&op) {
            o.finished = Some(Instant::now());
        }
        ops.retain(|_, o| o.finished.is_none_or(|t| t.elapsed() < KEEP_FINISHED));
    }

    /// The lines of operation `op` after line `after`.
    pub fn after(&self, op: i64, after: u64) -> OutputView {
        let ops = self.ops.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(o) = ops.get(&op) else {
            return OutputView::default();
        };
        let first = o.lines.front().map_or(o.count + 1, |l| l.n);
        OutputView {
            lines: o.lines.iter().filter(|l| l.n > after).cloned().collect(),
            skipped: first.saturating_sub(after + 1),
        }
    }

    fn push(&self, op: i64, step: usize, raw: &[&[u8]]) {
        let texts: Vec<String> = {
            let redact = self.redact.lock().unwrap_or_else(PoisonError::into_inner);
            raw.iter()
                .map(|l| {
                    let text = String::from_utf8_lossy(l);
                    let masked = redact.apply_known(text.trim_end_matches(['\n', '\r']));
                    cut(masked)
                })
                .collect()
        };
        let mut ops = self.ops.lock().unwrap_or_else(PoisonError::into_inner);
        let o = ops.entry(op).or_default();
        for text in texts {
            o.count += 1;
            o.lines.push_back(Line {
                n: o.count,
                step,
                text,
            });
            if o.lines.len() > KEEP_LINES {
                o.lines.pop_front();
            }
        }
    }
}

/// `text` cut to [`MAX_LINE`] bytes (at a character boundary).
fn cut(mut text: String) -> String {
    if text.len() > MAX_LINE {
        let mut at = MAX_LINE;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push_str(" […]");
    }
    text
}

/// Where one step's commands write what they print.
#[derive(Debug)]
pub struct StepOutput {
    outputs: Arc<Outputs>,
    op: i64,
    step: usize,
    counters: Arc<Mutex<String>>,
    lines: AtomicU64,
    bytes: AtomicU64,
}

impl StepOutput {
    /// A reader of one output stream of a command (stdout or stderr: each keeps its own
    /// partial line, so the two never mix inside a line).
    pub fn stream(self: &Arc<Self>) -> Stream {
        Stream {
            out: self.clone(),
            pending: Vec::new(),
        }
    }

    fn push(&self, raw: &[&[u8]]) {
        if raw.is_empty() {
            return;
        }
        let bytes: usize = raw.iter().map(|l| l.len()).sum();
        let lines = self.lines.fetch_add(raw.len() as u64, Ordering::Relaxed) + raw.len() as u64;
        let bytes = self.bytes.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
        self.outputs.push(self.op, self.step, raw);
        // Only the counts: this line is the step's `detail`, which HTTP serves.
        *self.counters.lock().unwrap_or_else(PoisonError::into_inner) =
            format!("output: {lines} lines, {bytes} bytes");
    }
}

/// One output stream of a command, cut into lines.
#[derive(Debug)]
pub struct Stream {
    out: Arc<StepOutput>,
    pending: Vec<u8>,
}

impl Stream {
    /// Take `chunk` as read: every line it completes is kept.
    pub fn feed(&mut self, chunk: &[u8]) {
        self.pending.extend_from_slice(chunk);
        let Some(last) = self.pending.iter().rposition(|b| *b == b'\n') else {
            if self.pending.len() > MAX_PENDING {
                self.end();
            }
            return;
        };
        let rest = self.pending.split_off(last + 1);
        let done = std::mem::replace(&mut self.pending, rest);
        let lines: Vec<&[u8]> = done.split_inclusive(|b| *b == b'\n').collect();
        self.out.push(&lines);
    }

    /// The stream ended: a last line without its newline is kept too.
    pub fn end(&mut self) {
        let rest = std::mem::take(&mut self.pending);
        if !rest.is_empty() {
            self.out.push(&[&rest]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_kept_whole_masked_and_counted_and_a_follower_reads_on() {
        let redact = Redactor::default();
        redact.add_values(["sesame-42"]);
        let outputs = Outputs::new(redact);
        let counters = Arc::new(Mutex::new(String::new()));
        let out = Arc::new(outputs.step(7, 3, counters.clone()));
        let (mut stdout, mut stderr) = (out.stream(), out.stream());
        stdout.feed(b"one\ntw");
        stderr.feed(b"err: pass=ses");
        assert_eq!(outputs.after(7, 0).lines.len(), 1, "only whole lines");
        stdout.feed(b"o\n");
        stderr.feed(b"ame-42\n");
        stdout.feed(b"no newline");
        stdout.end();
        let view = outputs.after(7, 0);
        let texts: Vec<&str> = view.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["one", "two", "err: pass=***", "no newline"]);
        assert!(view.lines.iter().all(|l| l.step == 3));
        assert_eq!(
            *counters.lock().expect("counters"),
            "output: 4 lines, 38 bytes"
        );
        let next = outputs.after(7, 2);
        assert_eq!(next.lines.first().map(|l| l.n), Some(3));
        assert_eq!(next.skipped, 0);
        assert_eq!(outputs.after(8, 0), OutputView::default());
    }

    #[test]
    fn the_window_is_bounded_and_a_late_follower_is_told_what_it_missed() {
        let outputs = Outputs::new(Redactor::default());
        let out = Arc::new(outputs.step(1, 0, Arc::new(Mutex::new(String::new()))));
        let mut s = out.stream();
        for i in 0..KEEP_LINES + 10 {
            s.feed(format!("line {i}\n").as_bytes());
        }
        s.feed(&vec![b'x'; MAX_PENDING + 1]);
        let view = outputs.after(1, 0);
        assert_eq!(view.lines.len(), KEEP_LINES);
        assert_eq!(view.skipped, 11);
        let long = view.lines.last().expect("the long line");
        assert!(long.text.len() < MAX_LINE + 10 && long.text.ends_with("[…]"));
        outputs.finish(1);
        assert_eq!(outputs.after(1, 0).lines.len(), KEEP_LINES, "kept a while");
    }
}

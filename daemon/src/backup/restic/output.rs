//! What restic says: the snapshots and summaries it prints as JSON, the progress of a running
//! `restic backup --json` (and when it last moved), sizes for people, and restic's failures
//! turned into what the user should do.
//!
//! Owns reading restic's output; it must not run restic (that is `mod.rs`'s `Repo`).

use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::super::error::BackupError;
use crate::deploy::preflight::last_line;
use crate::host::processes::{Chunk, Stream};

/// A snapshot as restic lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Full id.
    pub id: String,
    /// Short id.
    #[serde(default)]
    pub short_id: String,
    /// When (RFC 3339).
    pub time: String,
    /// Server.
    #[serde(default)]
    pub hostname: String,
    /// Paths (for a streamed dump: the file name).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Tags (`strackt`, `app=…`, `run=…`, `trigger=…`, `kind=…`).
    #[serde(default)]
    pub tags: Vec<String>,
}

impl Snapshot {
    /// The value of tag `key=…` (the first, if there are several).
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags_of(key).next()
    }

    /// Every value of tag `key=…`.
    pub fn tags_of<'a, 'k>(&'a self, key: &'k str) -> impl Iterator<Item = &'a str> + use<'a, 'k> {
        self.tags
            .iter()
            .filter_map(move |t| t.strip_prefix(key)?.strip_prefix('='))
    }
}

/// What one `restic backup` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The snapshot written.
    #[serde(default)]
    pub snapshot_id: String,
    /// Bytes read from the source.
    #[serde(default)]
    pub total_bytes_processed: u64,
    /// Bytes added to the repository (after deduplication and compression).
    #[serde(default)]
    pub data_added: u64,
    /// Files read.
    #[serde(default)]
    pub total_files_processed: u64,
}

/// What `restic backup --json` said so far: its summary, and when its progress last moved.
pub(super) struct Reading<'a> {
    live: &'a Mutex<String>,
    pending: Vec<u8>,
    pub(super) summary: Option<Summary>,
    counters: Option<[u64; 4]>,
    pub(super) last_change: Instant,
}

impl Reading<'_> {
    pub(super) fn new(live: &Mutex<String>) -> Reading<'_> {
        Reading {
            live,
            pending: Vec::new(),
            summary: None,
            counters: None,
            last_change: Instant::now(),
        }
    }

    /// Take a chunk of restic's output: each JSON line of stdout it completes.
    pub(super) fn feed(&mut self, chunk: &Chunk) {
        if chunk.stream != Stream::Stdout {
            return;
        }
        self.pending.extend_from_slice(&chunk.bytes);
        while let Some(at) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=at).collect();
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&line) else {
                continue;
            };
            match v["message_type"].as_str() {
                Some("status") => {
                    // Scanning (totals growing), unchanged files (files_done) and reading
                    // (bytes_done) are all progress; only a frozen status is not.
                    let done = v["bytes_done"].as_u64().unwrap_or(0);
                    let counters = ["bytes_done", "files_done", "total_files", "total_bytes"]
                        .map(|k| v[k].as_u64().unwrap_or(0));
                    if self.counters != Some(counters) {
                        self.counters = Some(counters);
                        self.last_change = Instant::now();
                    }
                    let pct = v["percent_done"]
                        .as_f64()
                        .map(|p| format!(", {:.0}%", p * 100.0))
                        .unwrap_or_default();
                    *self
                        .live
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        format!("{} read{pct}", bytes(done));
                }
                Some("summary") => self.summary = serde_json::from_value::<Summary>(v).ok(),
                _ => {}
            }
        }
    }
}

/// A human size.
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.2} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        n => format!("{n} B"),
    }
}

/// Turn restic's words into what the user should do.
pub fn explain(location: &str, output: &str) -> BackupError {
    const UNREACHABLE: &[&str] = &[
        "connection refused",
        "no such host",
        "dial tcp",
        "i/o timeout",
        "did not finish within",
        "stopped: no progress",
    ];
    let low = output.to_lowercase();
    let line_with = |words: &[&str]| {
        output
            .lines()
            .map(str::trim)
            .find(|l| words.iter().any(|w| l.to_lowercase().contains(w)))
            .unwrap_or_else(|| last_line(output))
            .to_string()
    };
    // Order matters: restic adds "Is there a repository…?" to a connection failure too.
    let location = location.to_string();
    if low.contains("wrong password") || low.contains("no key found") {
        BackupError::WrongKey { location }
    } else if UNREACHABLE.iter().any(|w| low.contains(w)) {
        BackupError::Unreachable {
            location,
            line: line_with(UNREACHABLE),
        }
    } else if low.contains("is there a repository at the following location")
        || low.contains("unable to open config file")
    {
        BackupError::NoRepository { location }
    } else if low.contains("already locked") {
        // Told by the whole output: restic 0.17 says it on a line of its own, without
        // "Fatal:", and the line shown is the one any other failure would show.
        BackupError::Locked {
            location,
            line: line_with(&["fatal", "error"]),
        }
    } else {
        BackupError::Restic {
            location,
            line: line_with(&["fatal", "error"]),
        }
    }
}

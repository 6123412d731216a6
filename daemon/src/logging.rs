//! Where strackt's log lines go: straight to journald (with priorities and fields) when systemd
//! connected stderr to the journal, plain text otherwise — colour only on a terminal and never
//! with `NO_COLOR`.
//!
//! Owns the tracing subscriber (an operation's log line is `ops::Operation::journal`).

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Whether stderr is the journal stream systemd gave this process (`JOURNAL_STREAM` is
/// `<device>:<inode>` of it; a child with a redirected stderr inherits the variable, so compare).
fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let Ok((own_dev, own_ino)) = crate::host::usage::own_stderr_identity() else {
        return false;
    };
    dev.parse() == Ok(own_dev) && ino.parse() == Ok(own_ino)
}

/// Install the subscriber for this process. `STRACKT_LOG` filters (default `info`).
pub fn init() {
    let filter = || EnvFilter::try_from_env("STRACKT_LOG").unwrap_or_else(|_| "info".into());
    if stderr_is_journal() {
        if let Ok(journald) = tracing_journald::layer() {
            // Fields as they are named (OPERATION_ID, not F_OPERATION_ID): they are ours.
            let journald = journald
                .with_field_prefix(None)
                .with_syslog_identifier("strackt".into());
            tracing_subscriber::registry()
                .with(filter())
                .with(journald)
                .init();
            return;
        }
    }
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    // journald (when it gets stderr after all) adds timestamps; keep lines short.
    tracing_subscriber::fmt()
        .without_time()
        .with_target(false)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .with_env_filter(filter())
        .init();
}

//! The control-socket client: requests, and following operations as they run.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use anyhow::{bail, Context};

use crate::api::{ControlRequest, ControlResponse};
use crate::daemon::Paths;
use crate::ops::{Operation, Outcome, StepOutcome};

pub(super) fn operation_command(
    paths: &Paths,
    req: &ControlRequest,
    json: bool,
) -> anyhow::Result<i32> {
    let op: Operation = match request(paths, req)? {
        Ok(v) => serde_json::from_value(v)?,
        Err(e) => {
            bail!("{e}");
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&op)?);
    } else {
        print_operation(&op, true);
    }
    Ok(if op.outcome == Outcome::Success { 0 } else { 1 })
}

/// Start an operation (deploy, backup, verify, restore) and follow it (see [`watch`]).
pub(super) fn follow(paths: &Paths, start: &ControlRequest, json: bool) -> anyhow::Result<i32> {
    let started: serde_json::Value = match request(paths, start)? {
        Ok(v) => v,
        Err(e) => {
            bail!("{e}");
        }
    };
    let id = started["operation"]
        .as_i64()
        .context("the daemon's answer has no operation id")?;
    let kind = match start {
        ControlRequest::Deploy { .. } => "deploy",
        ControlRequest::Restore { .. } => "restore",
        ControlRequest::Rebuild(_) => "rebuild",
        ControlRequest::BackupVerify { .. } => "verify",
        _ => "backup",
    };
    if !json {
        println!("{kind} #{id} started (also at /operations/{id})");
    }
    watch(paths, id, kind, json)
}

/// Follow operation `id` until it ends: each step is printed when it starts and when it ends,
/// with its duration, and between the two each line its commands print, as they print it
/// (masked like the stored output); a failed step that printed nothing live shows the end of
/// its stored output. Exit 0 when it succeeded.
pub(super) fn watch(paths: &Paths, id: i64, kind: &str, json: bool) -> anyhow::Result<i32> {
    let mut shown: Vec<(String, StepOutcome)> = Vec::new();
    // The last output line printed, and the steps that printed live.
    let mut after = 0u64;
    let mut printed: std::collections::BTreeSet<usize> = std::collections::BTreeSet::new();
    loop {
        let ops: Vec<Operation> = data(request(
            paths,
            &ControlRequest::History {
                operation: Some(id),
            },
        )?)?;
        let op = ops
            .into_iter()
            .next()
            .with_context(|| format!("no operation {id} in the operations log"))?;
        if !json {
            // Asked after the steps: every line of a step recorded as ended is in it.
            let out: crate::ops::live::OutputView = data(request(
                paths,
                &ControlRequest::Output {
                    operation: id,
                    after,
                },
            )?)?;
            if out.skipped > 0 {
                println!(
                    "      | … {} lines not shown (printed too fast)",
                    out.skipped
                );
            }
            let mut lines = out.lines.into_iter().peekable();
            for (i, s) in op.steps.iter().enumerate() {
                let key = (s.action.clone(), s.outcome);
                let seen = shown.get(i);
                let prints = lines.peek().is_some_and(|l| l.step == i);
                if seen.is_none() && (s.outcome == StepOutcome::Running || prints) {
                    println!("  …  {:<14} {}", s.action, s.target);
                }
                while let Some(line) = lines.next_if(|l| l.step == i) {
                    println!("      | {}", line.text);
                    printed.insert(i);
                    after = line.n;
                }
                if s.outcome != StepOutcome::Running && seen != Some(&key) {
                    let secs = s.duration_ms.unwrap_or(0) as f64 / 1000.0;
                    let mark = if s.outcome == StepOutcome::Ok {
                        "ok"
                    } else {
                        "FAILED"
                    };
                    println!("  {mark:<6} {:<14} {secs:.1}s  {}", s.action, s.detail);
                    if s.outcome == StepOutcome::Failed && !printed.contains(&i) {
                        let text = s.output.as_deref().unwrap_or("");
                        let tail: Vec<&str> = text.lines().rev().take(20).collect();
                        for line in tail.into_iter().rev() {
                            println!("      | {line}");
                        }
                    }
                }
                if i < shown.len() {
                    shown[i] = key;
                } else {
                    shown.push(key);
                }
            }
            // Lines of a step not in the record read above wait for the next round.
        }
        if op.outcome != Outcome::Running {
            if json {
                println!("{}", serde_json::to_string_pretty(&op)?);
            } else if op.outcome == Outcome::Success {
                println!(
                    "{} in {:.1}s",
                    op.summary,
                    op.duration_ms.unwrap_or(0) as f64 / 1000.0
                );
            } else {
                println!(
                    "{kind} #{id} failed: {}",
                    op.reason.as_deref().unwrap_or("?")
                );
                if kind == "deploy" {
                    println!("the live release was not changed");
                }
            }
            return Ok(if op.outcome == Outcome::Success { 0 } else { 1 });
        }
        // Two local requests on the control socket: cheap, and the user sees a line or the
        // end at most 50 ms after the daemon has it.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub(super) fn print_operation(op: &Operation, steps: bool) {
    let gen = op
        .generation
        .map(|g| format!(" generation {g}"))
        .unwrap_or_default();
    println!(
        "#{} {} ({}){gen}: {} in {} ms — {}",
        op.id,
        op.kind,
        op.trigger,
        op.outcome,
        op.duration_ms.unwrap_or(0),
        op.summary
    );
    if let Some(r) = &op.reason {
        println!("    reason: {r}");
    }
    if steps {
        for s in &op.steps {
            let drift = if s.drift { " [drift]" } else { "" };
            println!(
                "    {:<8} {:<14} {}{drift}  {}",
                s.outcome, s.action, s.target, s.detail
            );
            // Step output (redacted when stored) is shown here, to root only: HTTP omits it.
            for line in s.output.as_deref().unwrap_or("").lines() {
                println!("      | {line}");
            }
        }
    }
}

pub(super) fn data<T: serde::de::DeserializeOwned>(
    r: Result<serde_json::Value, String>,
) -> anyhow::Result<T> {
    match r {
        Ok(v) => Ok(serde_json::from_value(v)?),
        Err(e) => bail!("{e}"),
    }
}

/// Send one request to the daemon; `Ok(Err(..))` is the daemon's refusal.
pub(super) fn request(
    paths: &Paths,
    req: &ControlRequest,
) -> anyhow::Result<Result<serde_json::Value, String>> {
    let mut stream = UnixStream::connect(&paths.socket).with_context(|| {
        format!(
            "connecting to the strackt daemon at {} (is strackt.service running? are you root?)",
            paths.socket.display()
        )
    })?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    stream.write_all(&line).context("sending the request")?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .context("reading the daemon's answer")?;
    if answer.trim().is_empty() {
        bail!("the strackt daemon closed the connection without answering (it stopped or crashed mid-request); see `journalctl -u strackt` and `strackt history`");
    }
    let resp: ControlResponse =
        serde_json::from_str(&answer).context("the daemon's answer is not valid JSON")?;
    Ok(if resp.ok {
        Ok(resp.data)
    } else {
        Err(resp.error.unwrap_or_else(|| "unknown error".into()))
    })
}

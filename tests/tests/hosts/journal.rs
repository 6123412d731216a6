//! strackt in the journal as an operator reads it: every operation that changed something or
//! failed is one line with its priority (`journalctl -p err` shows the failures) and the fields
//! `OPERATION_ID`, `KIND`, `TRIGGER`, `GENERATION`; no terminal colour codes. (`APP` on an app's
//! operations is checked by the deploy test.)

use strackt_integration::{ensure, with_host, Host, Res};

use crate::HEADER;

/// strackt's journal entries as JSON objects, at `priority` or more urgent.
fn entries(h: &Host, priority: &str) -> Res<Vec<serde_json::Value>> {
    h.sh_ok(&format!(
        "journalctl -u strackt.service -t strackt -p {priority} -o json --no-pager"
    ))?
    .lines()
    .map(|l| Ok(serde_json::from_str(l)?))
    .collect()
}

fn field<'a>(entry: &'a serde_json::Value, name: &str) -> &'a str {
    entry[name].as_str().unwrap_or("")
}

#[test]
fn operations_are_journal_entries_with_priorities_and_fields() -> Res {
    with_host("journal", |h| {
        h.install(&format!(
            "{HEADER}files:\n  /etc/motd: {{ content: \"one\\n\" }}\n"
        ))?;
        h.apply_ok()?;
        h.put_definition(&format!(
            "{HEADER}files:\n  /etc/motd: {{ content: \"two\\n\" }}\nservices:\n  broken: {{ exec: /usr/bin/false }}\n"
        ))?;
        let out = h.apply()?;
        ensure(!out.success(), || {
            format!("the broken apply succeeded: {out}")
        })?;
        let failed = h
            .history()?
            .into_iter()
            .find(|op| op.outcome != "success")
            .ok_or("no failed operation in the history")?;

        let errors = entries(h, "err")?;
        let logged = errors
            .iter()
            .find(|e| field(e, "OPERATION_ID") == failed.id.to_string())
            .ok_or_else(|| {
                format!(
                    "`journalctl -p err` has no entry for operation {}: {errors:#?}",
                    failed.id
                )
            })?;
        ensure(
            field(logged, "PRIORITY") == "3"
                && field(logged, "KIND") == "apply"
                && field(logged, "TRIGGER") == "cli"
                && field(logged, "MESSAGE").contains("broken"),
            || format!("the failure's journal entry: {logged:#}"),
        )?;

        // The successful first apply: a notice with the generation it made.
        let notices = entries(h, "notice")?;
        ensure(
            notices.iter().any(|e| {
                field(e, "PRIORITY") == "5"
                    && field(e, "KIND") == "apply"
                    && field(e, "GENERATION") == "1"
            }),
            || format!("no notice for generation 1: {notices:#?}"),
        )?;
        let text = h.sh_ok("journalctl -u strackt.service -o cat --no-pager")?;
        ensure(!text.contains('\u{1b}'), || {
            format!("terminal escape codes in the journal: {text:?}")
        })?;
        Ok(())
    })
}

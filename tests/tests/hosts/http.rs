//! 9. The HTTP API inside the host answers JSON that parses, and /metrics counts what happened.

use strackt_integration::{ensure, ensure_eq, with_host, Generation, Host, Operation, Res, Status};

use crate::HEADER;

fn definition(motd: &str, hello_exec: &str) -> String {
    format!("{HEADER}files:\n  /etc/motd: {{ content: \"{motd}\\n\" }}\nservices:\n  hello:\n    exec: {hello_exec}\n")
}

fn get_json<T: serde::de::DeserializeOwned>(h: &Host, path: &str) -> Res<T> {
    let (code, body) = h.http_get(path)?;
    ensure_eq(code, 200, &format!("HTTP status of GET {path} ({body})"))?;
    serde_json::from_str(&body).map_err(|e| format!("GET {path}: {e} in {body:?}").into())
}

/// The value of a counter (summed over its label sets), from Prometheus text.
fn metric(text: &str, name: &str) -> Res<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    if values.is_empty() {
        return Err(format!("no sample of {name} in /metrics:\n{text}").into());
    }
    Ok(values.iter().sum())
}

fn metrics(h: &Host) -> Res<String> {
    let (code, text) = h.http_get("/metrics")?;
    ensure_eq(code, 200, "HTTP status of GET /metrics")?;
    Ok(text)
}

#[test]
fn http_endpoints_answer_and_count() -> Res {
    with_host("http", |h| {
        h.install(&definition("one", "/usr/bin/sleep infinity"))?;
        h.apply_ok()?;

        let (code, body) = h.http_get("/healthz")?;
        ensure_eq((code, body.trim()), (200, "ok"), "GET /healthz")?;

        let status: Status = get_json(h, "/status")?;
        ensure_eq(
            status.current_generation,
            h.status()?.current_generation,
            "current_generation of GET /status vs the CLI",
        )?;
        ensure(!status.digest.is_empty(), || {
            "GET /status has an empty digest".into()
        })?;
        let gens: Vec<Generation> = get_json(h, "/generations")?;
        let cli: Vec<u64> = h.generations()?.iter().map(|g| g.id).collect();
        ensure_eq(
            gens.iter().map(|g| g.id).collect::<Vec<_>>(),
            cli,
            "ids of GET /generations vs the CLI",
        )?;
        let ops: Vec<Operation> = get_json(h, "/operations")?;
        let newest = ops
            .first()
            .ok_or("GET /operations is empty after an apply")?;
        let one: Operation = get_json(h, &format!("/operations/{}", newest.id))?;
        ensure_eq(one.id, newest.id, "id of GET /operations/{id}")?;
        let cli: Vec<Operation> = h
            .strackt(&["history", "--operation", &newest.id.to_string(), "--json"])?
            .json_ok()?;
        ensure(cli.len() == 1 && cli[0].id == newest.id, || {
            format!("`strackt history --operation {}`: {cli:#?}", newest.id)
        })?;
        let (code, _) = h.http_get("/operations/999999")?;
        ensure_eq(code, 404, "HTTP status of GET /operations/999999")?;

        let text = metrics(h)?;
        for name in [
            "strackt_passes_total",
            "strackt_pass_failures_total",
            "strackt_rollbacks_total",
            "strackt_drift_repairs_total",
        ] {
            metric(&text, name)?;
        }
        ensure(
            text.lines()
                .any(|l| l.starts_with("strackt_pass_duration_seconds")),
            || format!("no strackt_pass_duration_seconds in /metrics:\n{text}"),
        )?;
        let passes = metric(&text, "strackt_passes_total")?;
        ensure(passes >= 1.0, || {
            format!("strackt_passes_total = {passes} after an apply")
        })?;

        // Drift repaired -> counted.
        let before = metric(&metrics(h)?, "strackt_drift_repairs_total")?;
        h.sh_ok("echo hand-edit > /etc/motd")?;
        h.apply_ok()?;
        let after = metric(&metrics(h)?, "strackt_drift_repairs_total")?;
        ensure(after > before, || {
            format!("strackt_drift_repairs_total {before} -> {after} over a drift repair")
        })?;

        // A rollback from the CLI -> counted.
        h.put_definition(&definition("two", "/usr/bin/sleep infinity"))?;
        h.apply_ok()?;
        let before = metric(&metrics(h)?, "strackt_rollbacks_total")?;
        h.strackt(&["rollback"])?.ok()?;
        let after = metric(&metrics(h)?, "strackt_rollbacks_total")?;
        ensure(after > before, || {
            format!("strackt_rollbacks_total {before} -> {after} over `strackt rollback`")
        })?;

        // A failed pass -> counted.
        let (passes_before, failures_before) = {
            let t = metrics(h)?;
            (
                metric(&t, "strackt_passes_total")?,
                metric(&t, "strackt_pass_failures_total")?,
            )
        };
        h.put_definition(&definition("three", "/bin/false"))?;
        ensure(!h.apply()?.success(), || {
            "apply of a failing service succeeded".into()
        })?;
        let t = metrics(h)?;
        let (passes, failures) = (
            metric(&t, "strackt_passes_total")?,
            metric(&t, "strackt_pass_failures_total")?,
        );
        ensure(failures > failures_before, || {
            format!(
                "strackt_pass_failures_total {failures_before} -> {failures} over a failed pass"
            )
        })?;
        ensure(passes > passes_before, || {
            format!("strackt_passes_total {passes_before} -> {passes} over a failed pass")
        })?;
        Ok(())
    })
}

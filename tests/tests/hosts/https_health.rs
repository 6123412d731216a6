//! `health: { http: "https://…" }` verifies the service's certificate against the system's trust
//! store (`/etc/ssl/certs/ca-certificates.crt`, where `update-ca-certificates` puts a local CA): a trusted
//! certificate passes, an untrusted one fails the check and the change is rolled back.

use strackt_integration::{ensure, with_app_host, Host, Res};

use crate::HEADER;

/// A certificate for 127.0.0.1 at `/etc/tls/<name>.{crt,key}`, issued by its own CA
/// (`/etc/tls/<name>-ca.crt`): end-entity certificates are what servers present.
fn certificate(h: &Host, name: &str) -> Res {
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    h.sh_ok(&format!(
        "set -e; mkdir -p /etc/tls && cd /etc/tls
         openssl req -x509 {ec} -days 30 -subj /CN={name}-ca -keyout {name}-ca.key -out {name}-ca.crt 2>/dev/null
         openssl req {ec} -subj /CN=127.0.0.1 -keyout {name}.key -out {name}.csr 2>/dev/null
         printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > {name}.ext
         openssl x509 -req -in {name}.csr -CA {name}-ca.crt -CAkey {name}-ca.key -CAcreateserial -days 30 -extfile {name}.ext -out {name}.crt 2>/dev/null"
    ))?;
    Ok(())
}

fn definition(name: &str) -> String {
    format!(
        r#"{HEADER}services:
  tls:
    exec: /usr/bin/openssl s_server -quiet -accept 8443 -cert /etc/tls/{name}.crt -key /etc/tls/{name}.key -www
    health: {{ http: "https://127.0.0.1:8443/", within: 10s }}
"#
    )
}

#[test]
fn https_health_checks_trust_the_system_store_and_nothing_else() -> Res {
    with_app_host("https", |h| {
        certificate(h, "trusted")?;
        certificate(h, "stranger")?;
        // What `update-ca-certificates` writes (the base image has no ca-certificates package).
        h.sh_ok("mkdir -p /etc/ssl/certs && cat /etc/tls/trusted-ca.crt >> /etc/ssl/certs/ca-certificates.crt")?;

        h.install(&definition("trusted"))?;
        let out = h.apply()?;
        ensure(out.success(), || {
            format!("a service with a trusted certificate failed its https health check: {out}")
        })?;
        let good = h.active_generation()?;

        h.put_definition(&definition("stranger"))?;
        let out = h.apply()?;
        ensure(
            !out.success() && out.text().contains("https://127.0.0.1:8443/"),
            || format!("an untrusted certificate passed the https health check: {out}"),
        )?;
        ensure(h.active_generation()? == good, || {
            "the untrusted change was not rolled back".into()
        })?;
        Ok(())
    })
}

//! strackt on real systemd hosts: every test boots its own disposable Debian 12 server
//! (testhost), installs the binary under test and `systemd/strackt.service` the way the README
//! tells a user to, and checks what a user of the host would see.
//!
//! Run by `tests/run` (which builds the binary and the testhost base first); alone:
//! `cargo build --bin strackt && cargo test -p strackt-integration --test hosts -- --test-threads=3`

mod accounts;
mod apt_repo;
mod attack_appdata;
mod attack_endpoint;
mod attack_files;
mod backup;
mod broken;
mod changes;
mod check_refusals;
mod confirm;
mod crash;
mod dashboard;
mod databases;
mod deploy;
mod deploy_db;
mod deploy_live;
mod deploy_proxy;
mod drift;
mod edit;
mod export;
mod failure;
mod firewall;
mod first_apply;
mod hold;
mod http;
mod https_health;
mod journal;
mod lean;
mod metrics;
mod ownership;
mod package;
mod package_users;
mod packages;
mod phases;
mod proxy_ops;
mod rebuild;
mod receiver;
mod record_problem;
mod records;
mod restart;
mod restore_commit;
mod rollback;
mod settings;
mod updates;
mod versioned;
mod watchdog;

use strackt_integration::{ensure, Host, Res};

/// A definition's header: the timer far away, so only the test triggers passes.
pub const HEADER: &str = "version: 1\nstrackt:\n  interval: 1h\n";

/// The main PID of `unit`, which must be running.
pub fn running_pid(host: &Host, unit: &str) -> Res<u32> {
    let pid = host.main_pid(unit)?;
    ensure(pid != 0, || {
        format!(
            "{unit} has no main PID (is-active: {:?})",
            host.is_active(unit)
        )
    })?;
    Ok(pid)
}

/// `KEY=VALUE` entries of the environment of a process inside the host.
pub fn environ(host: &Host, pid: u32) -> Res<Vec<String>> {
    let raw = host.sh_ok(&format!("tr '\\0' '\\n' < /proc/{pid}/environ"))?;
    Ok(raw.lines().map(str::to_string).collect())
}

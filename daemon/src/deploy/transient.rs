//! A unit strackt rendered as text ([`super::units::render`]) turned into the properties of a
//! systemd transient unit (pure): the validation boot starts its socket + service pair with one
//! `StartTransientUnit` call instead of writing files and reloading systemd, which is most of
//! what a validation boot cost under load.
//!
//! The live units and the validation units come from the same text, so the release is
//! validated with exactly the settings it goes live with: every `Key=` the renderer writes
//! must be known here, and an unknown one is an error (a deploy that fails loudly at its
//! validation boot), never a setting silently left out. This module does no I/O.

use super::DeployError;
use crate::host::systemd::{Properties, Value};

/// The properties of unit `name` rendered as `text`. Transient units are collected by systemd
/// as soon as they are inactive, failed or not, so nothing of a validation boot outlives it.
///
/// # Errors
/// A setting with no transient equivalent here, or a value systemd would not parse.
pub(crate) fn properties(name: &str, text: &str) -> Result<Properties, DeployError> {
    let mut props: Properties = vec![("CollectMode".into(), "inactive-or-failed".into())];
    let mut listen: Vec<(String, String)> = Vec::new();
    let mut section = String::new();
    let own_service = name
        .strip_suffix(".socket")
        .map(|base| format!("{base}.service"));
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        // `[Install]` is for enabling a unit file; a transient unit is started directly.
        if section == "Install" {
            continue;
        }
        let (key, raw) = line
            .split_once('=')
            .ok_or_else(|| refuse(format!("{name}: line {line:?} is not KEY=VALUE")))?;
        // The renderer doubles `%` for systemd's specifiers; properties are taken literally.
        let value = raw.replace("%%", "%");
        let text = || Value::from(value.clone());
        let words = || {
            Value::from(
                value
                    .split_whitespace()
                    .map(String::from)
                    .collect::<Vec<_>>(),
            )
        };
        let (prop, v) = match key {
            "Description" | "Type" | "User" | "Group" | "WorkingDirectory" | "Restart" => {
                (key, text())
            }
            "Requires" | "Wants" | "After" | "Before" | "BindsTo" => (key, words()),
            "ListenStream" => {
                listen.push(("Stream".into(), value));
                continue;
            }
            // A socket activates the service of its own name; that is the only pairing the
            // renderer writes, and a transient socket cannot name another.
            "Service" if own_service.as_deref() == Some(value.as_str()) => continue,
            "EnvironmentFile" => {
                let (optional, path) = match value.strip_prefix('-') {
                    Some(p) => (true, p.to_string()),
                    None => (false, value.clone()),
                };
                ("EnvironmentFiles", Value::from(vec![(path, optional)]))
            }
            "ExecStart" => ("ExecStartEx", Value::from(vec![exec_command(&value)?])),
            "KillSignal" => {
                let signal: nix::sys::signal::Signal = value
                    .parse()
                    .map_err(|_| refuse(format!("{name}: KillSignal={value} is not a signal name")))?;
                ("KillSignal", Value::from(signal as i32))
            }
            "TimeoutStopSec" => {
                let d = humantime::parse_duration(&value)
                    .map_err(|e| refuse(format!("{name}: TimeoutStopSec={value}: {e}")))?;
                ("TimeoutStopUSec", Value::from(d.as_micros() as u64))
            }
            other => {
                return Err(refuse(format!(
                    "{name}: the setting {other}= has no transient equivalent in strackt's validation boot"
                )))
            }
        };
        props.push((prop.to_string(), v));
    }
    if !listen.is_empty() {
        props.push(("Listen".into(), Value::from(listen)));
    }
    Ok(props)
}

/// An `ExecStart=` command line as `ExecStartEx` takes it: (path, argv, flags). Words are
/// split the way systemd splits them in a unit file (whitespace; `"…"` and `'…'` quoting; C
/// escapes), and the prefixes `@ - : + !` become argv[0] and flags. `$VAR` stays as written:
/// systemd expands it when it starts the command, for a transient unit as for a file.
///
/// # Errors
/// An unterminated quote or escape, an empty command, or several commands (`;`).
pub(crate) fn exec_command(line: &str) -> Result<(String, Vec<String>, Vec<String>), DeployError> {
    let mut words = split_words(line)?;
    if words.iter().any(|w| w == ";") {
        return Err(refuse(format!(
            "ExecStart={line}: `;` separates commands, which a service of Type=simple cannot have"
        )));
    }
    if words.is_empty() {
        return Err(refuse("ExecStart= is empty".into()));
    }
    let first = words.remove(0);
    let mut flags = Vec::new();
    let mut own_argv0 = false;
    let mut rest = first.as_str();
    while let Some(c) = rest.chars().next() {
        let flag = match c {
            '@' => {
                own_argv0 = true;
                None
            }
            '-' => Some("ignore-failure"),
            ':' => Some("no-env-expand"),
            '+' => Some("privileged"),
            '!' => Some("ambient"),
            _ => break,
        };
        flags.extend(flag.map(String::from));
        rest = &rest[c.len_utf8()..];
    }
    // `!!` means "ambient" only where ambient capabilities are unsupported; on any kernel
    // strackt supports that is the same as `!`.
    flags.dedup();
    let path = rest.to_string();
    if path.is_empty() {
        return Err(refuse(format!("ExecStart={line}: no program")));
    }
    let argv = if own_argv0 {
        // `@PATH ARGV0 ARGS…`: the second word is what the program sees as its name.
        if words.is_empty() {
            return Err(refuse(format!(
                "ExecStart={line}: `@` needs the program's argv[0]"
            )));
        }
        words
    } else {
        std::iter::once(path.clone()).chain(words).collect()
    };
    Ok((path, argv, flags))
}

/// Split `line` into words like systemd's `extract_first_word` with unquoting and C
/// unescaping: a quote may start or end anywhere in a word, and `\` escapes work inside and
/// outside quotes.
fn split_words(line: &str) -> Result<Vec<String>, DeployError> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (Some(q), c) if c == q => quote = None,
            (_, '\\') => {
                let unescaped = unescape(&mut chars)
                    .ok_or_else(|| refuse(format!("ExecStart={line}: bad escape sequence")))?;
                word.get_or_insert_with(String::new).push(unescaped);
            }
            (_, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    if quote.is_some() {
        return Err(refuse(format!("ExecStart={line}: unterminated quote")));
    }
    words.extend(word);
    Ok(words)
}

/// A line no transient unit takes, with what and where.
fn refuse(why: String) -> DeployError {
    DeployError::UnitSetting(why)
}

/// The character a `\` escape stands for (systemd's `cunescape_one`); `chars` is after the
/// backslash.
fn unescape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<char> {
    let hex = |n: usize, chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        let digits: String = (0..n).filter_map(|_| chars.next()).collect();
        (digits.len() == n)
            .then(|| u32::from_str_radix(&digits, 16).ok())
            .flatten()
            .and_then(char::from_u32)
    };
    match chars.next()? {
        'a' => Some('\u{7}'),
        'b' => Some('\u{8}'),
        'f' => Some('\u{c}'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\u{b}'),
        's' => Some(' '),
        'x' => hex(2, chars),
        'u' => hex(4, chars),
        'U' => hex(8, chars),
        d @ '0'..='7' => {
            let mut value = d.to_digit(8)?;
            for _ in 0..2 {
                value = value * 8 + chars.next()?.to_digit(8)?;
            }
            char::from_u32(value).filter(|c| *c != '\0')
        }
        c @ ('\\' | '"' | '\'' | ' ' | '\t') => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::units;

    fn exec(line: &str) -> (String, Vec<String>, Vec<String>) {
        exec_command(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn command_lines_split_as_systemd_splits_them() {
        let s = |v: &[&str]| v.iter().map(|w| (*w).to_string()).collect::<Vec<_>>();
        assert_eq!(
            exec("python3 app.py --port 8000"),
            (
                "python3".into(),
                s(&["python3", "app.py", "--port", "8000"]),
                vec![]
            )
        );
        assert_eq!(
            exec(r#"/bin/sh -c "echo 'a b'; exec app" x\x41\ y"#),
            (
                "/bin/sh".into(),
                s(&["/bin/sh", "-c", "echo 'a b'; exec app", "xA y"]),
                vec![]
            )
        );
        assert_eq!(exec("run $PORT ${HOME}").1, s(&["run", "$PORT", "${HOME}"]));
        assert_eq!(
            exec("-@/usr/bin/app app-name --x"),
            (
                "/usr/bin/app".into(),
                s(&["app-name", "--x"]),
                s(&["ignore-failure"])
            )
        );
        assert_eq!(exec("+:app").2, s(&["privileged", "no-env-expand"]));
        for bad in ["", "app \"open", "app ; other", "app \\q", "@app"] {
            assert!(exec_command(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_rendered_units_become_transient_properties_with_nothing_left_out() {
        let spec: crate::definition::AppSpec = serde_json::from_value(serde_json::json!({
            "repo": "/srv/git/shop.git", "path": "/srv/shop", "user": "shop",
            "requires": ["postgresql.service"],
            "service": {"exec": "python3 app.py --width 100%", "listen": "127.0.0.1:8000"}
        }))
        .expect("spec");
        let pair = units::render(
            "shop",
            &spec,
            "strackt-validate-shop-3",
            "127.0.0.1:41000",
            std::path::Path::new("/srv/shop/releases/3"),
            std::path::Path::new("/var/lib/strackt/apps/shop/releases/3/env"),
        );
        let socket = properties(&pair.socket, &pair.socket_text).expect("socket");
        let keys = |p: &Properties| p.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&socket), ["CollectMode", "Description", "Listen"]);
        assert_eq!(
            socket[2].1,
            Value::from(vec![("Stream".to_string(), "127.0.0.1:41000".to_string())])
        );
        let service = properties(&pair.service, &pair.service_text).expect("service");
        assert_eq!(
            keys(&service),
            [
                "CollectMode",
                "Description",
                "Requires",
                "After",
                "Type",
                "User",
                "WorkingDirectory",
                "EnvironmentFiles",
                "ExecStartEx",
                "Restart",
                "KillSignal",
                "TimeoutStopUSec"
            ]
        );
        let get = |k: &str| {
            service
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .expect(k)
        };
        assert_eq!(
            get("ExecStartEx"),
            Value::from(vec![exec("python3 app.py --width 100%")])
        );
        assert_eq!(get("KillSignal"), Value::from(15i32));
        assert_eq!(get("TimeoutStopUSec"), Value::from(30_000_000u64));
        assert_eq!(
            get("After"),
            Value::from(vec![
                "strackt-validate-shop-3.socket".to_string(),
                "postgresql.service".to_string()
            ])
        );
        // A setting the renderer may write one day but this module does not know fails loudly.
        let err = properties("x.service", "[Service]\nLimitNOFILE=10\n").expect_err("unknown");
        assert!(matches!(&err, DeployError::UnitSetting(_)), "{err:?}");
        assert!(err.to_string().contains("LimitNOFILE="), "{err}");
        assert!(properties("x.socket", "[Socket]\nService=other.service\n").is_err());
    }
}

//! state/spelled — one spelling per value for the enums strackt stores and shows (a
//! generation's state, a release's, an operation's and a step's outcome): the same string in
//! the state database, JSON, the CLI's columns and the dashboard, so a record written by an
//! older strackt reads back as the value it was.
//!
//! Owns the macro only; must not know what any value means.

/// `spelled!(Type, "what it is", { Variant => "spelling", … })` gives a plain enum `ALL`,
/// `as_str`, `parse`, `Display` (padded, for columns), SQLite text both ways and maud markup,
/// all through `as_str`. Its serde form is declared on the enum (`rename_all = "kebab-case"`)
/// and pinned by each enum's test. A spelling this strackt does not know is a database it
/// cannot read, said so with the value, rather than a record shown as something it is not.
macro_rules! spelled {
    ($t:ident, $what:literal, { $($v:ident => $s:literal),+ $(,)? }) => {
        impl $t {
            /// Every value, in declaration order.
            pub const ALL: &'static [$t] = &[$($t::$v),+];

            /// The stored and shown spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($t::$v => $s),+
                }
            }

            /// The value spelled `s`.
            pub fn parse(s: &str) -> Option<$t> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, not `write_str`: the CLI lays columns out with `{:<11}`.
                f.pad(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $t {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let s = value.as_str()?;
                <$t>::parse(s).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!("unknown {} {s:?}", $what).into(),
                    )
                })
            }
        }

        impl maud::Render for $t {
            fn render_to(&self, buffer: &mut String) {
                buffer.push_str(self.as_str());
            }
        }
    };
}

pub(crate) use spelled;

//! Where a PostgreSQL database is and how the client programs reach it: a server named by a
//! connection URL (`pg_dump`, `psql` and `pg_restore` run here), or a container that runs them
//! inside itself (through the Docker exec API). The password is kept apart from everything else:
//! it is taken out of the URL, never put on a command line, and handed to the programs only
//! through `PGPASSWORD` in their environment.

use std::{fmt, time::Duration};

use url::Url;

/// How long the client programs wait for a server that does not answer (libpq's
/// `connect_timeout`), unless the caller says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0:?} is not a PostgreSQL URL ({1}); write postgres://user@host:port/database")]
    BadUrl(String, url::ParseError),
    #[error("{0:?} is not a PostgreSQL URL: the scheme must be postgres:// or postgresql://")]
    Scheme(String),
    #[error("{0:?} names no database; write postgres://user@host:port/database")]
    NoDatabase(String),
    #[error("database name {0:?} is empty or holds a NUL character")]
    BadName(String),
}

/// A database and the way to reach it.
#[derive(Clone, PartialEq)]
pub struct Target {
    pub place: Place,
    /// The password for `PGPASSWORD`, if any (from the URL or a `password` option).
    pub password: Option<String>,
    pub connect_timeout: Duration,
}

#[derive(Clone, PartialEq)]
pub enum Place {
    /// A server reached from this host; the URL holds no password.
    Server { url: Url },
    /// Programs run inside this container, connecting to its local server.
    Container {
        name: String,
        database: String,
        user: String,
    },
}

impl Target {
    /// A server named by `url`, e.g. `postgres://app:secret@db:5432/app`. A password in the URL
    /// (or a `password=` query parameter) is taken out; `password` given apart wins over it.
    pub fn server(url: &str, password: Option<String>) -> Result<Target, TargetError> {
        let mut parsed = Url::parse(url).map_err(|e| TargetError::BadUrl(redact_url(url), e))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(TargetError::Scheme(redact_url(url)));
        }
        let mut from_url = parsed.password().map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        });
        let _ = parsed.set_password(None);
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        if pairs.iter().any(|(k, _)| k == "password") {
            let mut kept = Vec::new();
            for (key, value) in pairs {
                if key == "password" {
                    from_url = Some(value);
                } else {
                    kept.push((key, value));
                }
            }
            parsed.set_query(None);
            if !kept.is_empty() {
                parsed.query_pairs_mut().extend_pairs(kept);
            }
        }
        let target = Target {
            place: Place::Server { url: parsed },
            password: password.or(from_url).filter(|p| !p.is_empty()),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        };
        if target.database().is_empty() {
            return Err(TargetError::NoDatabase(redact_url(url)));
        }
        Ok(target)
    }

    /// Database `database` as `user` inside container `name`.
    pub fn container(
        name: &str,
        database: &str,
        user: &str,
        password: Option<String>,
    ) -> Result<Target, TargetError> {
        check_name(database)?;
        Ok(Target {
            place: Place::Container {
                name: name.to_string(),
                database: database.to_string(),
                user: user.to_string(),
            },
            password: password.filter(|p| !p.is_empty()),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// The database this target names.
    pub fn database(&self) -> String {
        match &self.place {
            Place::Server { url } => {
                let path = url.path().trim_start_matches('/');
                percent_encoding::percent_decode_str(path)
                    .decode_utf8_lossy()
                    .into_owned()
            }
            Place::Container { database, .. } => database.clone(),
        }
    }

    /// The same server or container, another database on it.
    pub fn with_database(&self, database: &str) -> Target {
        let mut target = self.clone();
        match &mut target.place {
            Place::Server { url } => {
                let encoded: String =
                    percent_encoding::utf8_percent_encode(database, PATH_SEGMENT).collect();
                url.set_path(&format!("/{encoded}"));
            }
            Place::Container { database: db, .. } => *db = database.to_string(),
        }
        target
    }

    /// The container the programs run in, or None to run them here.
    pub fn container_name(&self) -> Option<&str> {
        match &self.place {
            Place::Server { .. } => None,
            Place::Container { name, .. } => Some(name),
        }
    }

    /// The arguments that point `pg_dump`, `psql` or `pg_restore` at the database.
    pub fn connection_args(&self) -> Vec<String> {
        let mut args = match &self.place {
            Place::Server { url } => vec![format!("--dbname={url}")],
            Place::Container { database, user, .. } => {
                vec![format!("--username={user}"), format!("--dbname={database}")]
            }
        };
        // Never prompt for a password: there is no one to answer, and the prompt would hang.
        args.push("--no-password".to_string());
        args
    }

    /// The environment of the client programs: the password and the connect timeout.
    pub fn environment(&self) -> Vec<(String, String)> {
        let seconds = self.connect_timeout.as_secs().max(2);
        let mut env = vec![("PGCONNECT_TIMEOUT".to_string(), seconds.to_string())];
        if let Some(password) = &self.password {
            env.push(("PGPASSWORD".to_string(), password.clone()));
        }
        env
    }

    /// The secrets this target holds, to register for masking: the password as given and as
    /// it would appear percent-encoded in a URL.
    pub fn secrets(&self) -> Vec<String> {
        let Some(password) = &self.password else {
            return Vec::new();
        };
        let encoded: String = percent_encoding::utf8_percent_encode(password, USERINFO).collect();
        vec![password.clone(), encoded]
    }
}

/// Names the target without its password: `postgres://app@db:5432/app`, or
/// `container app-db (database app as postgres)`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            Place::Server { url } => write!(f, "{url}"),
            Place::Container {
                name,
                database,
                user,
            } => write!(f, "container {name} (database {database} as {user})"),
        }
    }
}

/// `url` with any password replaced, for error messages about a URL that did not parse.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

pub fn check_name(database: &str) -> Result<(), TargetError> {
    if database.is_empty() || database.contains('\0') {
        return Err(TargetError::BadName(database.to_string()));
    }
    Ok(())
}

/// `name` as an SQL identifier: `"my ""odd"" db"`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as an SQL string literal (standard_conforming_strings, on since PostgreSQL 9.1).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

const USERINFO: &percent_encoding::AsciiSet = &PATH_SEGMENT
    .add(b':')
    .add(b'@')
    .add(b'[')
    .add(b']')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'=')
    .add(b';')
    .add(b'&')
    .add(b'+')
    .add(b',')
    .add(b'$')
    .add(b'!')
    .add(b'\'')
    .add(b'(')
    .add(b')')
    .add(b'*');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_leaves_the_url() {
        let target = Target::server("postgres://app:s%40cret@db:5432/shop", None).unwrap();
        assert_eq!(target.password.as_deref(), Some("s@cret"));
        assert_eq!(target.to_string(), "postgres://app@db:5432/shop");
        assert_eq!(target.database(), "shop");
        assert_eq!(
            target.connection_args(),
            ["--dbname=postgres://app@db:5432/shop", "--no-password"]
        );
        assert!(target.secrets().contains(&"s%40cret".to_string()));
        let env = target.environment();
        assert!(env.contains(&("PGPASSWORD".to_string(), "s@cret".to_string())));
    }

    #[test]
    fn password_parameter_and_option() {
        let target = Target::server(
            "postgresql://app@db/shop?sslmode=disable&password=pw12",
            None,
        )
        .unwrap();
        assert_eq!(target.password.as_deref(), Some("pw12"));
        assert_eq!(
            target.to_string(),
            "postgresql://app@db/shop?sslmode=disable"
        );
        let target = Target::server("postgres://app:old1@db/shop", Some("new1".into())).unwrap();
        assert_eq!(target.password.as_deref(), Some("new1"));
    }

    #[test]
    fn other_database_same_server() {
        let target = Target::server("postgres://app:pw@db:5432/shop?x=1", None).unwrap();
        let other = target.with_database("post gres");
        assert_eq!(other.to_string(), "postgres://app@db:5432/post%20gres?x=1");
        assert_eq!(other.database(), "post gres");
    }

    #[test]
    fn bad_urls_are_named_without_password() {
        let error = Target::server("mysql://u:hunter22@h/db", None)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("scheme"), "{error}");
        assert!(!error.contains("hunter22"), "{error}");
        let error = Target::server("postgres://u:hunter22@h", None)
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("names no database"), "{error}");
        assert!(!error.contains("hunter22"), "{error}");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}

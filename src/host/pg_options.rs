//! The option maps of `pg::*` read into typed requests. Every key is checked: an unknown key (a
//! typo like `fromat`) or a value of the wrong type is an error naming the function, the key and
//! what was expected, raised before anything runs. Passwords met here (a `password` option or one
//! inside a URL) are registered for masking at once, before any message could show them.

use std::{path::PathBuf, time::Duration};

use rhai::{Dynamic, Map};

use super::{HostResult, fail};
use crate::{
    context::Context,
    pgbackups,
    pgdump::{DEFAULT_GZIP_LEVEL, DumpRequest, Format},
    pgrestore::{RestoreRequest, scratch_name},
    pgtarget::Target,
};

/// The keys that say where the database is; every function that reaches one accepts them.
const TARGET_KEYS: [&str; 6] = [
    "url",
    "password",
    "container",
    "db",
    "user",
    "connect_timeout",
];

/// An option map being read: each key is looked up once, and unknown keys are refused.
pub struct Options {
    function: &'static str,
    map: Map,
}

impl Options {
    pub fn new(function: &'static str, map: Map, known: &[&str]) -> HostResult<Options> {
        let mut unknown: Vec<&str> = map
            .keys()
            .map(|k| k.as_str())
            .filter(|k| !known.contains(k))
            .collect();
        if let Some(first) = unknown.pop() {
            return Err(fail(format!(
                "{function}: unknown option `{first}`; the options are: {}",
                known.join(", ")
            )));
        }
        Ok(Options { function, map })
    }

    fn get(&self, key: &str) -> Option<&Dynamic> {
        self.map.get(key).filter(|v| !v.is_unit())
    }

    fn wrong(&self, key: &str, want: &str, value: &Dynamic) -> Box<rhai::EvalAltResult> {
        fail(format!(
            "{}: option `{key}` must be {want}, not {}",
            self.function,
            value.type_name()
        ))
    }

    pub fn string(&self, key: &str) -> HostResult<Option<String>> {
        self.get(key)
            .map(|v| {
                v.clone()
                    .into_string()
                    .map_err(|_| self.wrong(key, "a string", v))
            })
            .transpose()
    }

    pub fn required(&self, key: &str, what: &str) -> HostResult<String> {
        self.string(key)?.ok_or_else(|| {
            fail(format!(
                "{}: option `{key}` ({what}) is missing",
                self.function
            ))
        })
    }

    pub fn bool(&self, key: &str) -> HostResult<Option<bool>> {
        self.get(key)
            .map(|v| v.as_bool().map_err(|_| self.wrong(key, "true or false", v)))
            .transpose()
    }

    pub fn int(&self, key: &str) -> HostResult<Option<i64>> {
        self.get(key)
            .map(|v| v.as_int().map_err(|_| self.wrong(key, "an integer", v)))
            .transpose()
    }

    pub fn strings(&self, key: &str) -> HostResult<Vec<String>> {
        let Some(value) = self.get(key) else {
            return Ok(Vec::new());
        };
        let array = value
            .clone()
            .into_array()
            .map_err(|_| self.wrong(key, "an array of strings", value))?;
        array
            .into_iter()
            .map(|item| {
                let shown = item.clone();
                item.into_string()
                    .map_err(|_| self.wrong(key, "an array of strings", &shown))
            })
            .collect()
    }

    /// Milliseconds as a duration; must be positive.
    pub fn millis(&self, key: &str) -> HostResult<Option<Duration>> {
        match self.int(key)? {
            None => Ok(None),
            Some(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms as u64))),
            Some(ms) => Err(fail(format!(
                "{}: option `{key}` is in milliseconds and must be > 0, not {ms}",
                self.function
            ))),
        }
    }

    /// The database these options name: `url` (with an optional `password`), or `container` with
    /// `db` and `user` (default `postgres`). Its password is registered for masking.
    pub fn target(&self, context: &Context) -> HostResult<Target> {
        let password = self.string("password")?;
        if let Some(password) = &password {
            context.secrets.add(password);
        }
        let url = self.string("url")?;
        if let Some(url) = &url
            && let Some(raw) = crate::pgtarget::url_password_as_written(url)
        {
            context.secrets.add(raw);
        }
        let container = self.string("container")?;
        let mut target = match (url, container) {
            (Some(url), None) => {
                if let Some(key) = ["db", "user"].into_iter().find(|k| self.get(k).is_some()) {
                    return Err(fail(format!(
                        "{}: option `{key}` goes with `container`; with `url` the URL names the \
                         database and user",
                        self.function
                    )));
                }
                Target::server(&url, password)
            }
            (None, Some(container)) => {
                let db = self.required("db", "the database in the container")?;
                let user = self.string("user")?.unwrap_or_else(|| "postgres".into());
                Target::container(&container, &db, &user, password)
            }
            (Some(_), Some(_)) => {
                return Err(fail(format!(
                    "{}: give either `url` or `container`, not both",
                    self.function
                )));
            }
            (None, None) => {
                return Err(fail(format!(
                    "{}: say where the database is: `url` (postgres://user@host:port/db) or \
                     `container` with `db`",
                    self.function
                )));
            }
        }
        .map_err(|e| fail(format!("{}: {e}", self.function)))?;
        for secret in target.secrets() {
            context.secrets.add(&secret);
        }
        if let Some(timeout) = self.millis("connect_timeout")? {
            target.connect_timeout = timeout;
        }
        Ok(target)
    }
}

/// The keys of `pg::dump`.
pub const DUMP_KEYS: [&str; 10] = [
    "url",
    "password",
    "container",
    "db",
    "user",
    "connect_timeout",
    "to",
    "format",
    "gzip",
    "args",
];

/// A dump request from `pg::dump`'s options. `to` may name a directory: the file is then named by
/// the backup convention (see [`pgbackups`]).
pub fn dump_request(context: &Context, map: Map) -> HostResult<DumpRequest> {
    let options = Options::new("pg::dump", map, &DUMP_KEYS)?;
    let target = options.target(context)?;
    let format = match options.string("format")? {
        None => Format::Plain,
        Some(name) => Format::parse(&name).ok_or_else(|| {
            fail(format!(
                "pg::dump: format {name:?} is not one of plain, custom"
            ))
        })?,
    };
    let to = options.required("to", "the backup file, or a directory")?;
    let gzip = match options.get("gzip") {
        None => (format == Format::Plain && to.ends_with(".gz")).then_some(DEFAULT_GZIP_LEVEL),
        Some(value) => match (value.as_bool(), value.as_int()) {
            (Ok(on), _) => on.then_some(DEFAULT_GZIP_LEVEL),
            (_, Ok(level @ 1..=9)) => Some(level as u32),
            _ => {
                return Err(fail(format!(
                    "pg::dump: option `gzip` must be true, false or a level 1–9, not {value}"
                )));
            }
        },
    };
    if to.ends_with('/') && !std::path::Path::new(&to).is_dir() {
        return Err(fail(format!("pg::dump: directory {to} does not exist")));
    }
    let mut to = PathBuf::from(to);
    if to.is_dir() {
        let name = pgbackups::file_name(
            &target.database(),
            format,
            gzip.is_some(),
            jiff::Timestamp::now(),
        )
        .map_err(|e| fail(format!("pg::dump: {e}")))?;
        to.push(name);
    }
    Ok(DumpRequest {
        target,
        to,
        format,
        gzip,
        extra_args: options.strings("args")?,
    })
}

/// The keys of `pg::restore`.
pub const RESTORE_KEYS: [&str; 10] = [
    "url",
    "password",
    "container",
    "db",
    "user",
    "connect_timeout",
    "from",
    "sha256",
    "terminate_sessions",
    "maintenance_db",
];

pub fn restore_request(context: &Context, map: Map) -> HostResult<RestoreRequest> {
    let options = Options::new("pg::restore", map, &RESTORE_KEYS)?;
    let target = options.target(context)?;
    let scratch = scratch_name(&target.database());
    Ok(RestoreRequest {
        from: options.required("from", "the dump file")?.into(),
        sha256: options.string("sha256")?,
        terminate_sessions: options.bool("terminate_sessions")?.unwrap_or(false),
        maintenance_db: options
            .string("maintenance_db")?
            .unwrap_or_else(|| "postgres".into()),
        scratch,
        target,
    })
}

/// A target from `pg::isready`/`pg::query`'s first argument: a URL, or a map of target options.
pub fn target_of(context: &Context, function: &'static str, value: Dynamic) -> HostResult<Target> {
    let map = if value.is_string() {
        let mut map = Map::new();
        map.insert("url".into(), value);
        map
    } else {
        value.try_cast::<Map>().ok_or_else(|| {
            fail(format!(
                "{function}: the target is a URL string or a map such as #{{url: …}} or \
                 #{{container: …, db: …}}"
            ))
        })?
    };
    Options::new(function, map, &TARGET_KEYS)?.target(context)
}

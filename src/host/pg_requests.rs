//! The option maps of `pg::*` read into typed requests, with the shared reader of
//! [`super::options`]: an unknown key (a typo like `fromat`) or a value of the wrong type is an
//! error naming the function, the key and what was expected, raised before anything runs.
//! Passwords met here (a `password` option or one inside a URL) are registered for masking at
//! once, before any message could show them.

use std::path::PathBuf;

use rhai::{Dynamic, Map};

use super::{HostResult, fail, options::Options};
use crate::{
    context::Context,
    pg::backups,
    pg::dump::{DEFAULT_GZIP_LEVEL, DumpRequest, Format},
    pg::restore::{RestoreRequest, scratch_name},
    pg::target::Target,
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

/// The keys of a function that reaches a database: the target's and its own.
fn keys(own: &[&'static str]) -> Vec<&'static str> {
    [&TARGET_KEYS[..], own].concat()
}

/// The database these options name: `url` (with an optional `password`), or `container` with
/// `db` and `user` (default `postgres`). Its password is registered for masking.
fn target(options: &Options, context: &Context) -> HostResult<Target> {
    let password = options.string("password")?;
    if let Some(password) = &password {
        context.secrets.add(password);
    }
    let url = options.string("url")?;
    if let Some(url) = &url
        && let Some(raw) = crate::pg::target::url_password_as_written(url)
    {
        context.secrets.add(raw);
    }
    let container = options.string("container")?;
    let mut target = match (url, container) {
        (Some(url), None) => {
            if let Some(key) = ["db", "user"].into_iter().find(|k| options.has(k)) {
                return Err(options.error(format!(
                    "option `{key}` goes with `container`; with `url` the URL names the \
                     database and user"
                )));
            }
            Target::server(&url, password)
        }
        (None, Some(container)) => {
            let db = options.required("db", "the database in the container")?;
            let user = options.string("user")?.unwrap_or_else(|| "postgres".into());
            Target::container(&container, &db, &user, password)
        }
        (Some(_), Some(_)) => {
            return Err(options.error("give either `url` or `container`, not both"));
        }
        (None, None) => {
            return Err(options.error(
                "say where the database is: `url` (postgres://user@host:port/db) or \
                 `container` with `db`",
            ));
        }
    }
    .map_err(|e| options.error(e))?;
    for secret in target.secrets() {
        context.secrets.add(&secret);
    }
    if let Some(timeout) = options.positive_millis("connect_timeout")? {
        target.connect_timeout = timeout;
    }
    Ok(target)
}

/// A dump request from `pg::dump`'s options. `to` may name a directory: the file is then named by
/// the backup convention (see [`pgbackups`]).
pub fn dump_request(context: &Context, map: Map) -> HostResult<DumpRequest> {
    let options = Options::new("pg::dump", map, &keys(&["to", "format", "gzip", "args"]))?;
    let target = target(&options, context)?;
    let format = match options.string("format")? {
        None => Format::Plain,
        Some(name) => Format::parse(&name)
            .ok_or_else(|| options.error(format!("format {name:?} is not one of plain, custom")))?,
    };
    let to = options.required("to", "the backup file, or a directory")?;
    let gzip = match options.value("gzip") {
        None => (format == Format::Plain && to.ends_with(".gz")).then_some(DEFAULT_GZIP_LEVEL),
        Some(value) => match (value.as_bool(), value.as_int()) {
            (Ok(on), _) => on.then_some(DEFAULT_GZIP_LEVEL),
            (_, Ok(level @ 1..=9)) => Some(level as u32),
            _ => return Err(options.invalid("gzip", "true, false or a level 1–9", value)),
        },
    };
    if to.ends_with('/') && !std::path::Path::new(&to).is_dir() {
        return Err(options.error(format!("directory {to} does not exist")));
    }
    let mut to = PathBuf::from(to);
    if to.is_dir() {
        let name = backups::file_name(
            &target.database(),
            format,
            gzip.is_some(),
            jiff::Timestamp::now(),
        )
        .map_err(|e| options.error(e))?;
        to.push(name);
    }
    Ok(DumpRequest {
        target,
        to,
        format,
        gzip,
        extra_args: options.strings("args")?.unwrap_or_default(),
    })
}

pub fn restore_request(context: &Context, map: Map) -> HostResult<RestoreRequest> {
    let own = ["from", "sha256", "terminate_sessions", "maintenance_db"];
    let options = Options::new("pg::restore", map, &keys(&own))?;
    let target = target(&options, context)?;
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
    target(&Options::new(function, map, &TARGET_KEYS)?, context)
}

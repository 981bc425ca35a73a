//! What cutover remembers between runs, in the state directory (`--state-dir`,
//! `$CUTOVER_STATE_DIR`, default `deploy/`):
//!
//! * `.current-environment`: the active environment, the name and a newline, exactly as the old
//!   bash scripts wrote and read it, so both can share a deployment during the cutover. It is
//!   the whole record of which environment is meant to serve: the moment it was written (its
//!   modification time, set by the rename that replaces it) is when that environment became
//!   active, so the name and its "since" are one record, changed by one write, and no crash can
//!   leave a name beside the time of another.
//! * `cutover-state.json`: every other key, one JSON object.
//!
//! Both are replaced atomically (temp file, fsync, rename, see [`crate::journal::atomic`]): a crash at any
//! instant leaves the old value or the new one. Writers hold the run lock, so a read-modify-write
//! of the JSON object never loses another run's key.

use std::{
    io::{self, Read},
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde_json::{Map, Value};

/// The active environment's file, shared with the old scripts.
pub const ACTIVE_FILE: &str = ".current-environment";
/// Every other key.
pub const STATE_FILE: &str = "cutover-state.json";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{path} is not a JSON object of state keys ({message}); fix or remove it")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path} holds {found:?}, which is not an environment name; fix or remove it")]
    CorruptActive { path: PathBuf, found: String },
    #[error("{name:?} is not a valid {what}: {why}")]
    Invalid {
        what: &'static str,
        name: String,
        why: &'static str,
    },
}

/// The active environment as recorded: its name and when it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    pub env: String,
    pub since: SystemTime,
}

/// The state files of one state directory.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn new(dir: &Path) -> StateStore {
        StateStore {
            dir: dir.to_path_buf(),
        }
    }

    pub fn active_path(&self) -> PathBuf {
        self.dir.join(ACTIVE_FILE)
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The active environment, or `None` when none was recorded yet.
    pub fn active(&self) -> Result<Option<String>, StateError> {
        Ok(self.active_record()?.map(|active| active.env))
    }

    /// The active environment and when it was recorded, read together from one open file (so
    /// a rename in between cannot pair one write's name with another's time), or `None`.
    pub fn active_record(&self) -> Result<Option<Active>, StateError> {
        let path = self.active_path();
        let read_error = |source| StateError::Read {
            path: path.clone(),
            source,
        };
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(read_error(source)),
        };
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(read_error)?;
        let since = file
            .metadata()
            .and_then(|m| m.modified())
            .map_err(read_error)?;
        let name = text.trim();
        if name.is_empty() {
            return Ok(None);
        }
        check_name("environment name", name).map_err(|_| StateError::CorruptActive {
            path: path.clone(),
            found: name.to_string(),
        })?;
        Ok(Some(Active {
            env: name.to_string(),
            since,
        }))
    }

    /// Records `env` as the active environment since now, in one atomic write of
    /// `.current-environment` (its name and, by the write's own time, since when).
    pub fn set_active(&self, env: &str) -> Result<(), StateError> {
        check_environment(env)?;
        self.write(&self.active_path(), format!("{env}\n").as_bytes())
    }

    /// The value of `key`, or `None` when it is not set.
    pub fn get(&self, key: &str) -> Result<Option<Value>, StateError> {
        Ok(self.all()?.remove(key))
    }

    /// Sets `key` to `value`; `null` removes the key.
    pub fn set(&self, key: &str, value: Value) -> Result<(), StateError> {
        check_key(key)?;
        let mut all = self.all()?;
        if value.is_null() {
            all.remove(key);
        } else {
            all.insert(key.to_string(), value);
        }
        let mut text = serde_json::to_string_pretty(&all).expect("a JSON map serializes");
        text.push('\n');
        self.write(&self.state_path(), text.as_bytes())
    }

    /// Every key of the JSON state file.
    pub fn all(&self) -> Result<Map<String, Value>, StateError> {
        let path = self.state_path();
        let Some(text) = read_if_exists(&path)? else {
            return Ok(Map::new());
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(StateError::Corrupt {
                path,
                message: format!("found {}", json_type(&other)),
            }),
            Err(error) => Err(StateError::Corrupt {
                path,
                message: error.to_string(),
            }),
        }
    }

    fn write(&self, path: &Path, content: &[u8]) -> Result<(), StateError> {
        let error = |source| StateError::Write {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(error)?;
        // Private: a runbook may set anything. `.current-environment` holds only a name, and
        // the old scripts (perhaps run by another user) read it.
        let mode = if path.ends_with(ACTIVE_FILE) {
            0o644
        } else {
            0o600
        };
        crate::journal::atomic::write(path, content, mode).map_err(error)?;
        // A run killed mid-write leaves its temporary file; the next write sweeps it away.
        crate::journal::atomic::remove_abandoned(path);
        Ok(())
    }
}

fn read_if_exists(path: &Path) -> Result<Option<String>, StateError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Checks an environment name before anything is written.
pub fn check_environment(name: &str) -> Result<(), StateError> {
    check_name("environment name", name)
}

/// Checks a state key before anything is written.
pub fn check_key(key: &str) -> Result<(), StateError> {
    check_name("state key", key)
}

/// Environment names and state keys are plain words: letters, digits, `_`, `-`, `.`, starting
/// with a letter or digit. They end up in file contents the old shell scripts `cat`, in container
/// names and in log lines, so nothing that a shell or a path could misread gets in.
fn check_name(what: &'static str, name: &str) -> Result<(), StateError> {
    let invalid = |why| {
        Err(StateError::Invalid {
            what,
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > 128 {
        return invalid("it is longer than 128 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return invalid("it must start with a letter or a digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return invalid("only letters, digits, `_`, `-` and `.` are allowed");
    }
    Ok(())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_environment_is_the_old_scripts_format() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        assert_eq!(store.active().unwrap(), None);
        store.set_active("green").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(ACTIVE_FILE)).unwrap(),
            "green\n"
        );
        std::fs::write(dir.path().join(ACTIVE_FILE), "blue").unwrap();
        assert_eq!(store.active().unwrap().as_deref(), Some("blue"));
        let before = store.active_record().unwrap().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        store.set_active("green").unwrap();
        let after = store.active_record().unwrap().unwrap();
        assert_eq!(after.env, "green");
        assert!(after.since > before.since, "{after:?} {before:?}");
        std::fs::write(dir.path().join(ACTIVE_FILE), "blue").unwrap();
        assert!(store.set_active("blue; rm -rf /").is_err());
        assert!(store.set_active("../x").is_err());
        assert_eq!(store.active().unwrap().as_deref(), Some("blue"));
    }

    #[test]
    fn keys_round_trip_and_null_removes() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        store.set("tag", Value::from("v1")).unwrap();
        store.set("n", Value::from(3)).unwrap();
        assert_eq!(store.get("tag").unwrap(), Some(Value::from("v1")));
        store.set("tag", Value::Null).unwrap();
        assert_eq!(store.get("tag").unwrap(), None);
        assert_eq!(store.get("n").unwrap(), Some(Value::from(3)));
    }

    #[test]
    fn corrupt_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "[1]").unwrap();
        let error = StateStore::new(dir.path())
            .get("x")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cutover-state.json is not a JSON object"),
            "{error}"
        );
    }
}

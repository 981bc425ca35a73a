//! The Context's variables: the process environment first, then the `.env` files loaded with
//! `--env-file` and `env::load`, and, in a dry run, what `env::save` would have written, so a dry
//! run's plan reads the settings a real run would. Values of secret-looking names are registered
//! for masking as they are loaded.

use std::{path::Path, time::Duration};

use super::Context;
use crate::compose::dotenv::{DotenvError, EnvFile};

impl Context {
    /// `name` from the process environment, then from the loaded `.env` files.
    pub fn env_var(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.env_files.lock().unwrap().get(name).map(str::to_string))
    }

    /// Setting `name` as a duration in seconds (`2.5`); `default` when it is unset, zero or not
    /// a number of seconds.
    pub(crate) fn seconds_setting(&self, name: &str, default: Duration) -> Duration {
        self.env_var(name)
            .and_then(|t| t.trim().parse::<f64>().ok())
            .and_then(|t| Duration::try_from_secs_f64(t).ok())
            .filter(|t| !t.is_zero())
            .unwrap_or(default)
    }

    /// Parses `path` and makes its variables visible to `env::get`.
    pub fn load_env_file(&self, path: &Path) -> Result<EnvFile, DotenvError> {
        let file = self.read_env_file(path)?;
        for (name, value) in &file.vars {
            self.secrets.add_if_secret_name(name, value);
        }
        self.env_files.lock().unwrap().merge(file.clone());
        Ok(file)
    }
}

impl Context {
    /// Reads `path`, with what a dry run's `env::save` would have written to it. A file that
    /// only a dry run would have created reads as those variables.
    pub fn read_env_file(&self, path: &Path) -> Result<EnvFile, DotenvError> {
        let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let pending = self.dry_saves.lock().unwrap().get(&key).cloned();
        let mut file = match (EnvFile::load(path), &pending) {
            (Ok(file), _) => file,
            (Err(DotenvError::Read { .. }), Some(_)) => EnvFile::default(),
            (Err(error), _) => return Err(error),
        };
        if let Some(pending) = pending {
            file.merge(pending);
        }
        Ok(file)
    }

    /// Remembers, in a dry run, what `env::save` would set in `path` (see [`Context::read_env_file`]).
    pub fn save_env_file_dry(&self, path: &Path, vars: Vec<(String, String)>) {
        let key = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        for (name, value) in &vars {
            self.secrets.add_if_secret_name(name, value);
        }
        let mut saves = self.dry_saves.lock().unwrap();
        saves
            .entry(key)
            .or_default()
            .merge(EnvFile { vars: vars.clone() });
        self.env_files.lock().unwrap().merge(EnvFile { vars });
    }

    /// Sets `vars` in the `.env` file at `path` (created with mode 0600 if missing, its mode
    /// kept otherwise), written whole or not at all, and makes them visible to `env::get`.
    pub fn save_env_file(&self, path: &Path, vars: Vec<(String, String)>) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let shown = path.display().to_string();
        let (text, mode) = match std::fs::read_to_string(path) {
            Ok(text) => {
                let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o7777);
                (text, mode.unwrap_or(0o600))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), 0o600),
            Err(e) => return Err(format!("cannot read {shown}: {e}")),
        };
        let updated =
            crate::compose::dotenv::update(&text, &shown, &vars).map_err(|e| e.to_string())?;
        crate::journal::atomic::write(path, updated.as_bytes(), mode)
            .map_err(|e| format!("cannot write {shown}: {e}"))?;
        for (name, value) in &vars {
            self.secrets.add_if_secret_name(name, value);
        }
        self.env_files.lock().unwrap().merge(EnvFile { vars });
        Ok(())
    }
}

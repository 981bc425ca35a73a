//! How a service tree is read: whose vocabulary it speaks (a compose file, a project map, a
//! `docker::run` spec), where relative paths start, where a variable named without a value gets
//! it, and where warnings go. [`super::parse`] reads the service's keys and [`super::syntax`]
//! the values with a syntax of their own (ports, mounts, durations, sizes), both through one
//! [`Reader`].

use std::path::Path;

use crate::compose::tree::{Entry, SpecError, join};

/// Whose vocabulary a tree speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// A compose file's service: unknown keys are warnings.
    ComposeFile,
    /// A service of a project map: compose keys, unknown keys are errors.
    Project,
    /// A `docker::run` spec: compose keys plus `name`, `env`, `network`, `aliases`, `memory`;
    /// no `depends_on`, `profiles` or replicas.
    Run,
}

/// How to read: the dialect, the directory relative paths start from, where a variable named
/// without a value (`environment: [TAG]`) gets it, and where warnings go.
pub struct Reader<'a> {
    pub dialect: Dialect,
    pub base_dir: &'a Path,
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    pub warnings: &'a mut Vec<SpecError>,
    /// Keys a compose file sets that Docker Swarm ignores (`container_name`, `depends_on`, a
    /// host port range or address), for `CUTOVER_ORCHESTRATOR=swarm` to warn about.
    pub swarm_ignored: Vec<SpecError>,
}

impl Reader<'_> {
    /// Warns about (compose file) or rejects (Rhai map) a key cutover does not read.
    pub fn unsupported(&mut self, entry: &Entry, path: &str) -> Result<(), SpecError> {
        let path = join(path, &entry.key);
        if self.dialect == Dialect::ComposeFile {
            let warning = SpecError::new(entry.line, &path, "not supported by cutover, ignored");
            self.warnings.push(warning);
            Ok(())
        } else {
            Err(SpecError::new(entry.line, &path, "unknown key"))
        }
    }

    /// Notes that Swarm ignores `entry` (a compose file's key), and why.
    pub fn swarm_ignores(&mut self, entry: &Entry, path: &str, why: &str) {
        if self.dialect == Dialect::ComposeFile {
            let path = join(path, &entry.key);
            self.swarm_ignored.push(SpecError::new(
                entry.line,
                &path,
                format!("Swarm ignores it: {why}"),
            ));
        }
    }

    /// A path from the document, made absolute against the base directory.
    pub fn host_path(&self, text: &str) -> String {
        let path = Path::new(text);
        let path = match text.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME")
                .map(|home| Path::new(&home).join(rest))
                .unwrap_or_else(|| path.to_path_buf()),
            None => self.base_dir.join(path),
        };
        normalize(&path)
    }
}

/// `a/./b/../c` as `a/c`, without touching the filesystem.
fn normalize(path: &Path) -> String {
    let mut parts: Vec<std::path::Component> = Vec::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir
                if matches!(parts.last(), Some(std::path::Component::Normal(_))) =>
            {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts
        .iter()
        .collect::<std::path::PathBuf>()
        .display()
        .to_string()
}

//! Finds scripts by name. Runbooks and stdlib modules are looked up the same way: each directory
//! of a search path in order, then the copies embedded in the binary at build time. A file on disk
//! therefore overrides the embedded script of the same name, which is how operators change a
//! procedure without recompiling.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// The file extension of every script.
pub const EXTENSION: &str = "rhai";

/// Where a script was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Disk(PathBuf),
    Embedded,
}

/// A script's text and where it came from.
#[derive(Debug, Clone)]
pub struct Script {
    pub name: String,
    pub origin: Origin,
    /// How errors and listings name it: the path on disk, or `<embedded>/DIR/NAME.rhai`.
    pub display: String,
    pub text: Arc<str>,
}

/// The search path for one kind of script (runbooks or stdlib modules).
#[derive(Debug, Clone)]
pub struct Catalog {
    kind: &'static str,
    dirs: Vec<PathBuf>,
    embedded: &'static [(&'static str, &'static str)],
}

/// Errors finding or reading a script.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no {kind} named `{name}` (searched {searched}){}", guess.as_deref().map(|g| format!("; {g}")).unwrap_or_default())]
    NotFound {
        kind: &'static str,
        name: String,
        searched: String,
        /// "did you mean …?", when a name is near.
        guess: Option<String>,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Catalog {
    /// Runbooks: `dirs` (already in priority order), then the embedded `runbooks/`.
    pub fn runbooks(dirs: Vec<PathBuf>) -> Catalog {
        Catalog {
            kind: "runbook",
            dirs,
            embedded: embedded::RUNBOOKS,
        }
    }

    /// Stdlib modules: `dirs`, then the embedded `stdlib/`.
    pub fn stdlib(dirs: Vec<PathBuf>) -> Catalog {
        Catalog {
            kind: "stdlib module",
            dirs,
            embedded: embedded::STDLIB,
        }
    }

    fn embedded_dir(&self) -> &'static str {
        if self.kind == "runbook" {
            "runbooks"
        } else {
            "stdlib"
        }
    }

    /// Finds `name`: a path to a file (contains `/` or ends in `.rhai`) is read as is; otherwise
    /// the first directory holding `NAME.rhai` wins, then the embedded copy.
    pub fn find(&self, name: &str) -> Result<Script, CatalogError> {
        if name.contains('/') || name.ends_with(&format!(".{EXTENSION}")) {
            return read(Path::new(name));
        }
        for dir in &self.dirs {
            let path = dir.join(format!("{name}.{EXTENSION}"));
            if path.is_file() {
                return read(&path);
            }
        }
        if let Some((_, text)) = self.embedded.iter().find(|(n, _)| *n == name) {
            return Ok(self.embedded_script(name, text));
        }
        let names: Vec<String> = self
            .list()
            .map(|scripts| scripts.into_iter().map(|s| s.name).collect())
            .unwrap_or_default();
        let guess = super::hints::did_you_mean(&super::hints::nearest(
            name,
            names.iter().map(String::as_str),
        ));
        // The stdlib is short: when nothing is near, name what there is.
        let guess = match guess {
            None if self.kind == "stdlib module" => {
                Some(format!("the stdlib modules are {}", names.join(", ")))
            }
            guess => guess,
        };
        Err(CatalogError::NotFound {
            kind: self.kind,
            name: name.to_string(),
            searched: self.searched(),
            guess,
        })
    }

    /// Every script reachable by name, with the one that wins for each name.
    pub fn list(&self) -> Result<Vec<Script>, CatalogError> {
        let mut found: BTreeMap<String, Script> = BTreeMap::new();
        for (name, text) in self.embedded {
            found.insert(name.to_string(), self.embedded_script(name, text));
        }
        // Lowest priority first, so a higher-priority directory overwrites.
        for dir in self.dirs.iter().rev() {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                if path.extension().is_some_and(|ext| ext == EXTENSION) && path.is_file() {
                    let script = read(&path)?;
                    found.insert(script.name.clone(), script);
                }
            }
        }
        Ok(found.into_values().collect())
    }

    fn embedded_script(&self, name: &str, text: &'static str) -> Script {
        Script {
            name: name.to_string(),
            origin: Origin::Embedded,
            display: format!("<embedded>/{}/{name}.{EXTENSION}", self.embedded_dir()),
            text: Arc::from(text),
        }
    }

    fn searched(&self) -> String {
        let mut places: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        places.push(format!("the embedded {}", self.embedded_dir()));
        places.join(", ")
    }
}

fn read(path: &Path) -> Result<Script, CatalogError> {
    let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Script {
        name,
        origin: Origin::Disk(path.to_path_buf()),
        display: path.display().to_string(),
        text: Arc::from(text),
    })
}

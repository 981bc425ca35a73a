//! The text of every script loaded in this process, by the name errors refer to it with, so an
//! error in any runbook or stdlib module can be shown with its source line.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// Shared map from a script's display path (`runbooks/deploy.rhai`, `<embedded>/stdlib/x.rhai`)
/// to its text. Cloning shares the map.
#[derive(Clone, Default)]
pub struct SourceMap(Arc<Mutex<HashMap<String, Arc<str>>>>);

impl SourceMap {
    pub fn insert(&self, name: &str, text: impl Into<Arc<str>>) {
        self.0.lock().unwrap().insert(name.to_string(), text.into());
    }

    pub fn get(&self, name: &str) -> Option<Arc<str>> {
        self.0.lock().unwrap().get(name).cloned()
    }
}

//! What every host function can reach: the tokio runtime (through a handle, since scripts run on
//! a plain thread and host calls `block_on` it), the cancellation flag, the dry-run switch, the
//! secret registry and the settings. One `Context` per process, shared by `Arc`.

mod ahead;
mod env;
mod journal;
mod lock;
pub(crate) mod logging;
mod notify;
pub(crate) mod progress;
mod report;

pub(crate) use journal::RunRecord;

use std::{
    future::Future,
    sync::{
        Arc, Mutex, OnceLock, RwLock, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rhai::{EvalAltResult, Position};

use ahead::Ahead;

use crate::{
    caddy::{
        ahead::SwitchAhead,
        upstream::{SlotWrite, StagedSlots},
    },
    cancel::{Cancel, StopReason},
    compose::dotenv::EnvFile,
    config::Settings,
    pg::target::Target,
    redact::Redactor,
};

pub struct Context {
    pub settings: Settings,
    runtime: tokio::runtime::Handle,
    pub cancel: Arc<Cancel>,
    dry_run: AtomicBool,
    pub secrets: Arc<Redactor>,
    /// Variables loaded from `--env-file` and `env::load`, below the process environment.
    pub env_files: Mutex<EnvFile>,
    /// What `env::save` would have written, by file, in a dry run: later reads of those files
    /// in the same run see it, so the plan shown is the plan a real run would follow.
    pub dry_saves: Mutex<std::collections::HashMap<std::path::PathBuf, EnvFile>>,
    /// Every change this process made, in order, for the summary printed when a run fails.
    changes_made: Mutex<Vec<String>>,
    /// What is running now: set by `cutover run` (and the REPL for each call).
    run: RwLock<RunInfo>,
    /// Connected once, by the first call or by [`Context::warm_up`], whichever comes first:
    /// a call made while the warm-up connects waits for that connection.
    docker: Arc<tokio::sync::OnceCell<bollard::Docker>>,
    /// The warm-up's connection attempt while nobody has waited for it: the first call takes
    /// its outcome (so an engine that does not answer costs one timeout, not two).
    docker_warming: Mutex<Option<tokio::sync::oneshot::Receiver<Result<(), String>>>>,
    /// One HTTP client (connection pool) for the whole process.
    http: OnceLock<reqwest::Client>,
    /// Database connections being opened ahead of the query that will use each (`pg::
    /// connect_ahead`), by target: a query takes the one for its target, or opens its own.
    pg_ahead: Ahead<Target, PgOpened>,
    /// Container listings started ahead of the `compose::ps` that will use each, by project;
    /// dropped by any change (see [`ahead`]).
    ps_ahead: Ahead<String, PsListed>,
    /// Slot files being written for the next switch of a route (`caddy::switch_ahead`): the
    /// switch takes them, and what the run's switches did not take is removed when it ends.
    switch_ahead: SwitchAhead,
    /// The run lock while this process holds it (see [`crate::journal::lock`]).
    pub(crate) run_lock: Mutex<Weak<crate::journal::lock::Held>>,
    /// With lock-each-change on (the REPL), the lock taken by the first change of a call and
    /// held until the call ends.
    pub(crate) change_lock: Mutex<Option<lock::LockGuard>>,
    /// Take the lock around each change instead of for a whole run (the REPL).
    pub(crate) lock_each_change: AtomicBool,
}

/// What opening a connection for `pg::connect_ahead` gave.
type PgOpened = Result<crate::pg::query::Connection, crate::pg::query::QueryError>;
/// How old a listing started by `compose::ps_ahead` may be when taken: a runbook takes it within
/// milliseconds; one left longer (a REPL session, a run that failed in between) is listed again.
const PS_AHEAD_FRESH: Duration = Duration::from_secs(1);
/// What listing a project's containers for `compose::ps_ahead` gave.
type PsListed = Result<Vec<crate::compose::down::Status>, crate::docker::EngineError>;

/// The runbook being run, as the journal and the readonly guard need to know it.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub runbook: String,
    pub args: Vec<String>,
    /// The runbook's header says `//! readonly`: every change is refused.
    pub readonly: bool,
    /// What the journal files this run under (`promotion`, `rollback`, …): the header's
    /// `//! kind: …`. Empty means the runbook's name.
    pub kind: String,
}

impl Context {
    pub fn new(
        settings: Settings,
        runtime: tokio::runtime::Handle,
        secrets: Arc<Redactor>,
    ) -> Context {
        Context {
            dry_run: AtomicBool::new(settings.dry_run),
            settings,
            runtime,
            cancel: Arc::new(Cancel::default()),
            secrets,
            env_files: Mutex::new(EnvFile::default()),
            dry_saves: Mutex::default(),
            changes_made: Mutex::default(),
            run: RwLock::new(RunInfo::default()),
            docker: Arc::default(),
            docker_warming: Mutex::default(),
            http: OnceLock::new(),
            pg_ahead: Ahead::default(),
            ps_ahead: Ahead::default(),
            switch_ahead: SwitchAhead::default(),
            run_lock: Mutex::new(Weak::new()),
            change_lock: Mutex::new(None),
            lock_each_change: AtomicBool::new(false),
        }
    }

    pub fn run_info(&self) -> RunInfo {
        self.run.read().unwrap().clone()
    }

    pub fn set_run_info(&self, info: RunInfo) {
        *self.run.write().unwrap() = info;
    }

    /// The Docker client, connected on first use (see [`crate::docker`]).
    pub fn docker(&self) -> Result<bollard::Docker, Box<EvalAltResult>> {
        if let Some(docker) = self.docker.get() {
            return Ok(docker.clone());
        }
        let warming = self.docker_warming.lock().unwrap().take();
        if let Some(outcome) = warming {
            // A dropped sender (the task ended without a word) falls through to connecting.
            if let Ok(Err(error)) = self.block_on(outcome)? {
                return Err(fail(error));
            }
            if let Some(docker) = self.docker.get() {
                return Ok(docker.clone());
            }
        }
        let docker = self
            .block_on(self.docker.get_or_try_init(crate::docker::connect))?
            .map_err(fail)?;
        Ok(docker.clone())
    }

    /// The HTTP client shared by every host call (connections are pooled and reused).
    pub fn http(&self) -> reqwest::Client {
        self.http.get_or_init(http_client).clone()
    }

    /// Starts what a run will most likely need, while its scripts compile: the Docker Engine
    /// connection (a version negotiation, ~10 ms otherwise before its first check). Nothing
    /// here is reported: the first call that needs the engine says what went wrong (later ones
    /// try again). The HTTP client needs no head start: it reads the system's root
    /// certificates only at its first HTTPS handshake (`health::tls`).
    pub fn warm_up(&self) {
        let docker = Arc::clone(&self.docker);
        let (outcome, warming) = tokio::sync::oneshot::channel();
        *self.docker_warming.lock().unwrap() = Some(warming);
        self.runtime.spawn(async move {
            let connected = docker.get_or_try_init(crate::docker::connect).await;
            let _ = outcome.send(connected.map(|_| ()).map_err(|e| e.to_string()));
        });
    }

    /// Starts opening a connection to `target` in the background, for the next query of the
    /// same target ([`Context::take_pg_connection`]). A failure is that query's to report (it
    /// then connects itself and says why it cannot), so none is reported here.
    pub fn connect_pg_ahead(&self, target: Target) -> Result<(), Box<EvalAltResult>> {
        let docker = match target.container_name() {
            Some(_) => Some(self.docker()?),
            None => None,
        };
        let opening = target.clone();
        self.pg_ahead.start(&self.runtime, target, async move {
            crate::pg::query::open(&opening, docker.as_ref()).await
        });
        Ok(())
    }

    /// The connection opened ahead for `target`, once open, or `None` (none was, or opening it
    /// failed: the caller connects itself). Each is used once.
    pub fn take_pg_connection(
        &self,
        target: &Target,
    ) -> Result<Option<crate::pg::query::Connection>, Box<EvalAltResult>> {
        let Some(opening) = self.pg_ahead.take(target) else {
            return Ok(None);
        };
        Ok(self.block_on(opening)?.ok().and_then(Result::ok))
    }

    /// Starts listing `project`'s containers in the background, for the next `compose::ps` of
    /// it ([`Context::take_ps`]) — unless a change comes first, which drops it.
    pub fn ps_ahead(&self, project: String) -> Result<(), Box<EvalAltResult>> {
        let docker = self.docker()?;
        let listing = project.clone();
        self.ps_ahead.start(&self.runtime, project, async move {
            crate::compose::down::ps(&docker, &listing).await
        });
        Ok(())
    }

    /// `project`'s containers as listed ahead, or `None` when no listing was started, it was
    /// dropped by a change, or it started over a second ago: the caller lists them itself. An engine error is the caller's.
    pub fn take_ps(&self, project: &str) -> Result<Option<PsListed>, Box<EvalAltResult>> {
        let Some(listing) = self
            .ps_ahead
            .take_within(&project.to_string(), PS_AHEAD_FRESH)
        else {
            return Ok(None);
        };
        Ok(self.block_on(listing)?.ok())
    }

    /// Starts writing `writes` beside their slot files for the next switch of `route_id`
    /// ([`crate::caddy::ahead`]), in place of what was staged before.
    pub fn stage_switch(&self, route_id: &str, writes: Vec<SlotWrite>) {
        self.switch_ahead.start(route_id, writes);
    }

    /// The slot files staged for `route_id`'s switch, once written, if any were.
    pub fn take_staged_switch(&self, route_id: &str) -> Option<StagedSlots> {
        self.switch_ahead.take(route_id)
    }

    /// Removes what was staged and not taken (waiting for it to be written first): at the end
    /// of a run, the process may exit without dropping anything.
    pub fn discard_staged_switch(&self) {
        self.switch_ahead.discard();
    }

    /// The one gate for every call that changes the world (docker run/stop/remove, compose
    /// up/down, caddy load/switch, state writes, pg restore, exec, http post). `action` names the
    /// call (`docker::stop`) and `detail` its arguments, secrets masked by the log sink.
    ///
    /// * In a readonly run it fails: nothing is changed.
    /// * In a dry run it logs `would ACTION DETAIL` and returns `dry()`, a plausible value.
    /// * Otherwise it runs `apply` and records the change and its outcome in the journal.
    pub fn change<T>(
        &self,
        action: &str,
        detail: &str,
        dry: impl FnOnce() -> T,
        apply: impl FnOnce() -> Result<T, Box<EvalAltResult>>,
    ) -> Result<T, Box<EvalAltResult>> {
        let run = self.run_info();
        if run.readonly {
            return Err(fail(format!(
                "{action} {detail}: refused, `{}` is a readonly runbook (its header says \
                 `//! readonly`) and may not change anything",
                run.runbook
            )));
        }
        if self.is_dry_run() {
            tracing::info!("would {action} {detail}");
            return Ok(dry());
        }
        let _lock = self.lock_for_change().map_err(fail)?;
        // What was read ahead may be what this change alters: read again after it.
        self.ps_ahead.drop_all();
        // Said as it is made, in the words a dry run uses (`would docker::restart …`), so a
        // real run's log names every change too, not only those whose functions log their own.
        tracing::info!("{action} {detail}");
        let started = Instant::now();
        let result = apply();
        self.record_change(
            action,
            detail,
            result.as_ref().err().map(|e| e.to_string()),
            started.elapsed(),
        );
        result
    }

    /// What a run that failed or was stopped leaves behind: each change it made, or that it
    /// changed nothing, so an operator knows where things stand without reading the journal.
    pub fn changes_summary(&self) -> String {
        let changes = self.changes_made.lock().unwrap();
        if changes.is_empty() {
            return "This run changed nothing.".to_string();
        }
        let mut text = format!(
            "This run made {} change(s) before it ended:\n",
            changes.len()
        );
        for change in changes.iter() {
            text.push_str(&format!("  - {change}\n"));
        }
        text.push_str("(`cutover history` has them; `cutover status` shows where things stand)");
        text
    }

    /// Journals a deferred cleanup that ran (see [`crate::engine::Cleanup`]) like any change:
    /// a `change` entry named `cleanup …` with its outcome and duration, and a line in the
    /// change list of a failed run. Dry runs and readonly runs journal nothing, as for changes.
    pub fn record_cleanup(&self, name: &str, error: Option<String>, took: Duration) {
        if self.is_dry_run() || self.run_info().readonly {
            return;
        }
        self.record_change("cleanup", name, error, took);
    }

    /// Journals one change as a `change` entry (secrets masked), so no runbook can forget to.
    fn record_change(&self, action: &str, detail: &str, error: Option<String>, took: Duration) {
        self.changes_made.lock().unwrap().push(match &error {
            None => format!("{action} {detail}"),
            Some(_) => format!("{action} {detail} (failed)"),
        });
        match &error {
            None => tracing::debug!("changed: {action} {detail} ({} ms)", took.as_millis()),
            Some(error) => tracing::debug!("change failed: {action} {detail}: {error}"),
        }
        let mut entry = self.journal_entry(
            crate::journal::Event::Change,
            format!("{action} {detail}").trim_end(),
        );
        entry.outcome = Some(if error.is_none() { "ok" } else { "failed" }.to_string());
        entry.duration_ms = Some(took.as_millis() as u64);
        entry.error = error;
        let _ = self.journal_append(&entry);
    }

    /// The state files of this process's state directory.
    pub fn state(&self) -> crate::journal::state::StateStore {
        crate::journal::state::StateStore::new(&self.settings.state_dir)
    }

    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// True when calls that change the world must only say what they would do.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run.load(Ordering::Relaxed)
    }

    pub fn set_dry_run(&self, on: bool) {
        self.dry_run.store(on, Ordering::Relaxed);
    }

    /// Runs `future` to completion from the script thread, or gives up as soon as the run is
    /// stopped (Ctrl-C, SIGTERM, `--timeout`), returning the error that ends the script.
    pub fn block_on<F: Future>(&self, future: F) -> Result<F::Output, Box<EvalAltResult>> {
        if let Some(reason) = self.cancel.reason() {
            return Err(stopped(reason));
        }
        self.runtime.block_on(async {
            tokio::select! {
                biased;
                _ = self.cancel.stopped() => Err(stopped(self.cancel.reason().unwrap_or(StopReason::Interrupted))),
                output = future => Ok(output),
            }
        })
    }
}

/// An error from a host function (or from the change gate every host function goes through).
pub fn fail(message: impl std::fmt::Display) -> Box<EvalAltResult> {
    message.to_string().into()
}

/// The error a host call returns when the run is stopped. It is an ordinary runtime error, so
/// Rhai records the call chain and the message points at the blocked call. A `catch` cannot
/// swallow the stop: the engine checks the flag again before the next operation and ends the
/// script with `ErrorTerminated`, and every later host call fails at once.
pub fn stopped(reason: StopReason) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        reason.describe().into(),
        Position::NONE,
    ))
}

/// A new HTTP client, as [`Context::http`] shares one (see [`crate::health::client_builder`]).
pub fn http_client() -> reqwest::Client {
    crate::health::client_builder().build().unwrap_or_default()
}

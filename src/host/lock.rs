//! `lock::*`: the run lock from a runbook. `lock::holder()` says who holds it; a long run that
//! holds it (a canary) can take requests from other terminals instead of making them wait:
//! `lock::accept(["promote", "rollback"])` says so in the lock file, a second `cutover promote`
//! then leaves a request rather than waiting, and the holder reads them with `lock::requests()`
//! and answers each with `lock::answer(id, ok, message)`. What a request means is the runbook's
//! business.

use std::sync::Arc;

use rhai::{Array, Dynamic, Module};

use super::{HostResult, convert::to_dynamic, fail, function};
use crate::{
    context::Context,
    journal::{
        lock::{self, Status},
        requests::{self, Answer},
    },
};

pub fn module(context: &Arc<Context>) -> Module {
    let mut module = Module::new();
    function!(&mut module,
        /// Who holds the run lock, `#{user, host, pid, runbook, args, since, accepts}`, or `()`
        /// when nobody does. `accepts` lists the runbooks whose runs it takes requests from.
        ///
        /// ```rhai
        /// let h = lock::holder();
        /// if h != () { print(`${h.user}@${h.host} (pid ${h.pid}) runs ${h.runbook}`); }
        /// ```
        fn holder[context](call) -> Dynamic {
            match lock::status(&context.settings.state_dir).map_err(fail)? {
                Status::Held(Some(holder)) => to_dynamic(holder),
                Status::Held(None) | Status::Free { .. } => Ok(Dynamic::UNIT),
            }
        }
    );
    function!(&mut module,
        /// While this run holds the lock, runs of the runbooks named in `runbooks` leave it a
        /// request (see `lock::requests`) instead of waiting for the lock; `[]` stops that.
        /// Returns false when this run holds no lock (a dry run): nobody can ask it then.
        ///
        /// ```rhai
        /// lock::accept(["promote", "rollback"]);
        /// ```
        fn accept[context](call, runbooks: Array) -> bool {
            let names = runbooks
                .into_iter()
                .map(|n| n.into_string().map_err(|t| fail(format!("lock::accept: {t} is no runbook name"))))
                .collect::<HostResult<Vec<String>>>()?;
            context.accept_requests(names).map_err(fail)
        }
    );
    function!(&mut module,
        /// The requests other runs left for this one and nobody answered yet, oldest first:
        /// `#{id, user, host, pid, runbook, args, time}` each.
        ///
        /// ```rhai
        /// for r in lock::requests() { print(`${r.user} asks: ${r.runbook} ${r.args}`); }
        /// ```
        fn requests[context](call) -> Array {
            requests::pending(&context.settings.state_dir)
                .map_err(fail)?
                .into_iter()
                .map(to_dynamic)
                .collect()
        }
    );
    function!(&mut module,
        /// Claims request `id` before acting on it, so the run that asks waits for the answer
        /// however long the action takes. False when the request was withdrawn (its run gave up
        /// or ended).
        ///
        /// ```rhai
        /// for r in lock::requests() { if lock::take(r.id) { lock::answer(r.id, true, "done"); } }
        /// ```
        fn take[context](call, id: &str) -> bool {
            requests::take(&context.settings.state_dir, id).map_err(fail)
        }
    );
    function!(&mut module,
        /// Answers request `id`: `ok` true when this run did what was asked, false when it
        /// declines; `message` is what the run that asked prints (and journals). False when
        /// nobody waits for the answer any more.
        ///
        /// ```rhai
        /// for r in lock::requests() { lock::answer(r.id, false, "not now: nothing to continue"); }
        /// ```
        fn answer[context](call, id: &str, ok: bool, message: &str) -> bool {
            let answer = Answer { ok, message: context.secrets.redact(message).into_owned() };
            requests::answer(&context.settings.state_dir, id, &answer).map_err(fail)
        }
    );
    module
}

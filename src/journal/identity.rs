//! Who is acting, for the journal and the lock file: the login name (under sudo, the person who
//! ran sudo, since that is who an audit is about), the host name and the process id, looked up
//! once per process; and [`Actor`], that identity with the runbook it runs, as every journal
//! entry and the lock file record it.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::redact::Redactor;

/// Who is acting: written into every entry and into the lock file.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub host: String,
    pub pid: u32,
}

/// This process's identity, looked up once.
pub fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(|| Identity {
        user: user_name(),
        host: host_name(),
        pid: std::process::id(),
    })
}

/// Who runs what: the fields a journal entry and the lock file share (each flattens them into
/// its JSON object, so both read as before: `{"user": …, "host": …, "pid": …, "runbook": …}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub runbook: String,
    #[serde(default)]
    pub args: Vec<String>,
}

impl Actor {
    /// This process, running `runbook` with `args`.
    pub fn me(runbook: String, args: Vec<String>) -> Actor {
        let me = identity();
        Actor {
            user: me.user.clone(),
            host: me.host.clone(),
            pid: me.pid,
            runbook,
            args,
        }
    }

    /// A copy with every registered secret masked in the runbook and its arguments.
    pub fn redacted(&self, secrets: &Redactor) -> Actor {
        let mask = |text: &str| secrets.redact(text).into_owned();
        Actor {
            runbook: mask(&self.runbook),
            args: self.args.iter().map(|a| mask(a)).collect(),
            ..self.clone()
        }
    }

    /// `runbook arg…`, as it was typed.
    pub fn command(&self) -> String {
        std::iter::once(self.runbook.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The login name; under sudo, the person who ran sudo, since that is who the audit is about.
fn user_name() -> String {
    let login = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .or_else(passwd_name)
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::geteuid() }));
    match std::env::var("SUDO_USER") {
        Ok(real) if !real.is_empty() && real != login => format!("{real} (sudo {login})"),
        _ => login,
    }
}

fn passwd_name() -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; 4096];
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || entry.pw_name.is_null() {
        return None;
    }
    Some(
        unsafe { std::ffi::CStr::from_ptr(entry.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn host_name() -> String {
    let mut buffer = [0u8; 256];
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if rc != 0 {
        return "unknown-host".to_string();
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

/// True when a process with this id exists on this host (possibly as another user).
pub fn process_exists(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

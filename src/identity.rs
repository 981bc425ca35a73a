//! Who is acting, for the journal and the lock file: the login name (under sudo, the person who
//! ran sudo, since that is who an audit is about), the host name and the process id. Looked up
//! once per process.

use std::sync::OnceLock;

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

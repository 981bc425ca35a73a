//! The machine's local time zone, for what people read: log line stamps and `cutover history`.
//! The journal and every state file keep UTC.
//!
//! jiff's own lookup of the system zone resolves `/etc/localtime` to its name and then indexes
//! the whole zoneinfo tree to find it — a walk of every directory under `/usr/share/zoneinfo`,
//! 1–2 ms that the first log line of every run paid. A stamp needs only the zone's offsets,
//! which `/etc/localtime` itself holds, so it is read directly; when `TZ` is set (a name, a
//! path or a POSIX rule) or the file cannot be read, jiff decides as it always did.

use std::sync::OnceLock;

use jiff::tz::TimeZone;

/// The local time zone, looked up once per process.
pub fn zone() -> TimeZone {
    static ZONE: OnceLock<TimeZone> = OnceLock::new();
    ZONE.get_or_init(|| {
        std::env::var_os("TZ")
            .is_none()
            .then(|| std::fs::read("/etc/localtime").ok())
            .flatten()
            .and_then(|tzif| TimeZone::tzif("localtime", &tzif).ok())
            .unwrap_or_else(TimeZone::system)
    })
    .clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_zone_read_directly_has_the_offsets_of_jiffs_own_lookup() {
        let system = jiff::tz::TimeZone::system();
        let now = jiff::Timestamp::now();
        for days in [0, 90, 180, 270] {
            let at = now + jiff::SignedDuration::from_hours(24 * days);
            assert_eq!(super::zone().to_offset(at), system.to_offset(at), "{at}");
        }
    }
}

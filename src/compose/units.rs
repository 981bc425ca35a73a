//! The small value syntaxes Docker users write by hand: durations (`1m30s`, `500ms`), byte sizes
//! (`256m`, `1.5g`) and command lines split as a shell would (`sh -c "echo hi"`), without ever
//! running a shell. Shared by compose files and `docker::run` specs.

/// Milliseconds in a duration such as `90s`, `1m30s`, `1.5s`, `500ms`, `2h`. A bare number is
/// milliseconds, as everywhere in cutover's scripting API.
pub fn duration_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let invalid = || format!("invalid duration {text:?} (use e.g. 500ms, 10s, 1m30s)");
    if text.is_empty() {
        return Err(invalid());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return Err(invalid()),
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    Ok(total.round() as u64)
}

/// Bytes in a size such as `256m`, `512MB`, `1.5g`, `100k` or `1048576` (binary units, as
/// Docker reads them).
pub fn bytes(text: &str) -> Result<i64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let invalid = || format!("invalid size {text:?} (use e.g. 256m, 1g, 512k or bytes)");
    let unit_at = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let number: f64 = lower[..unit_at].parse().map_err(|_| invalid())?;
    let factor: f64 = match lower[unit_at..].trim() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(invalid()),
    };
    Ok((number * factor) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_ms("1m30s"), Ok(90_000));
        assert_eq!(duration_ms("500ms"), Ok(500));
        assert_eq!(duration_ms("1.5s"), Ok(1500));
        assert_eq!(duration_ms("250"), Ok(250));
        assert_eq!(duration_ms("2h"), Ok(7_200_000));
        assert!(duration_ms("ten").is_err());
        assert!(duration_ms("5x").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes("256m"), Ok(256 << 20));
        assert_eq!(bytes("1G"), Ok(1 << 30));
        assert_eq!(bytes("512kb"), Ok(512 << 10));
        assert_eq!(bytes("1.5g"), Ok(3 << 29));
        assert_eq!(bytes("1000"), Ok(1000));
        assert!(bytes("lots").is_err());
    }
}

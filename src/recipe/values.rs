//! Range checks on recipe values that serde's types do not catch: ports,
//! uid/gid, timestamps that fit RFC 3339, and NUL in any string.

pub(super) fn valid_port(port: &str) -> bool {
    let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    let digits = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    digits && number.parse::<u16>().is_ok_and(|n| n > 0) && matches!(proto, "tcp" | "udp" | "sctp")
}

/// The last second of the year 9999: later timestamps do not fit RFC 3339.
pub const MAX_EPOCH: u64 = 253_402_300_799;
pub const EPOCH_HINT: &str = "a timestamp is seconds since 1970 up to 253402300799 (9999-12-31), e.g. the last commit's: `git log -1 --format=%ct`";
/// uid/gid 4294967295 is `(uid_t)-1`, "no user" to the kernel.
const MAX_ID: u64 = 4_294_967_294;

/// `UID`, `UID:GID`, `NAME` or `NAME:GROUP`; numbers 0..=4294967294.
pub(super) fn check_user(user: &str) -> Result<(), String> {
    let parts: Vec<&str> = user.split(':').collect();
    if parts.len() > 2 {
        return Err("has more than one `:`".into());
    }
    for part in parts {
        if part.is_empty() || part.chars().any(char::is_whitespace) {
            return Err("is not `USER` or `USER:GROUP`".into());
        }
        if part.bytes().all(|b| b.is_ascii_digit())
            && part.parse::<u64>().map_or(true, |id| id > MAX_ID)
        {
            return Err(format!("has id `{part}`, outside 0-{MAX_ID}"));
        }
    }
    Ok(())
}

/// The first string or key holding a NUL: (its dotted path, the key to find its line by).
pub(super) fn nul_in(text: &str) -> Option<(String, String)> {
    fn walk(value: &toml::Value, path: &str, last: &str) -> Option<(String, String)> {
        match value {
            toml::Value::String(s) if s.contains('\0') => Some((path.into(), last.into())),
            toml::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, &format!("{path}[{i}]"), last)),
            toml::Value::Table(table) => table.iter().find_map(|(k, v)| {
                let here = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if k.contains('\0') {
                    return Some((here.escape_debug().to_string(), last.into()));
                }
                walk(v, &here, if path.contains('.') { last } else { k })
            }),
            _ => None,
        }
    }
    if !text.contains("\\u0000") && !text.contains("\\U00000000") && !text.contains('\0') {
        return None;
    }
    let value: toml::Value = toml::from_str(text).ok()?;
    walk(&value, "", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_users_and_nul() {
        for good in ["80", "65535/udp", "8000/sctp"] {
            assert!(valid_port(good), "{good}");
        }
        for bad in ["+80", "0", "", "65536", "80/http", " 80", "0x50", "-1"] {
            assert!(!valid_port(bad), "{bad}");
        }
        for good in ["0", "1000:1000", "app", "app:staff", "4294967294:0"] {
            assert!(check_user(good).is_ok(), "{good}");
        }
        for bad in [
            "4294967295",
            "0:4294967296",
            "99999999999",
            "",
            ":",
            "a b",
            "1:2:3",
        ] {
            assert!(check_user(bad).is_err(), "{bad}");
        }
        assert_eq!(nul_in("a = \"b\"\n"), None);
        let found = nul_in("[image]\ncmd = [\"x\", \"y\\u0000\"]\n");
        assert_eq!(found, Some(("image.cmd[1]".into(), "cmd".into())));
    }
}

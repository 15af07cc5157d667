//! Optimistic concurrency (API.md): mutable resources carry `version`; a `PATCH` with
//! `If-Match: "<version>"` fails with `412 precondition_failed` when the resource moved on.
//! Without `If-Match` the change applies to whatever is current (last writer wins).

use poem::http::StatusCode;

use crate::Problem;

/// The version an `If-Match` header asks for: `"7"`, `W/"7"` or `7`; `*` (or no header)
/// asks for none.
pub fn if_match(raw: Option<&str>) -> Result<Option<i64>, Problem> {
    let Some(raw) = raw.map(str::trim) else {
        return Ok(None);
    };
    if raw == "*" {
        return Ok(None);
    }
    let tag = raw.strip_prefix("W/").unwrap_or(raw);
    let tag = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag);
    tag.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .map(Some)
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid_if_match",
                "If-Match must be a resource version in quotes, e.g. \"3\".",
            )
        })
}

/// `412 precondition_failed` unless the caller asked for no version or for the current one.
pub fn check(expected: Option<i64>, current: i64) -> Result<(), Problem> {
    match expected {
        Some(v) if v != current => Err(Problem::new(
            StatusCode::PRECONDITION_FAILED,
            "precondition_failed",
            "Precondition failed",
        )
        .with_detail(format!(
            "If-Match asked for version {v}, but the resource is at version {current}; re-read it and retry."
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_takes_quoted_weak_and_bare_versions() {
        assert_eq!(if_match(None).unwrap(), None);
        assert_eq!(if_match(Some("*")).unwrap(), None);
        assert_eq!(if_match(Some("\"3\"")).unwrap(), Some(3));
        assert_eq!(if_match(Some("W/\"3\"")).unwrap(), Some(3));
        assert_eq!(if_match(Some("12")).unwrap(), Some(12));
        for bad in ["", "\"\"", "\"x\"", "\"0\"", "\"-1\"", "\"3"] {
            assert_eq!(if_match(Some(bad)).unwrap_err().status(), 400, "{bad}");
        }
    }

    #[test]
    fn a_stale_version_is_412() {
        assert!(check(None, 4).is_ok());
        assert!(check(Some(4), 4).is_ok());
        let p = check(Some(3), 4).unwrap_err();
        assert_eq!(p.status(), 412);
        assert_eq!(p.code(), "precondition_failed");
    }
}

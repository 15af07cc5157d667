//! Cursor pagination: keyset on `(tenant_id, sort key, id)`, with opaque cursors that are
//! signed, so a client cannot forge one or carry it into another query.
//!
//! A list endpoint parses [`PageParams`], asks its store for `fetch_limit()` rows after the
//! cursor's [`Position`], and builds the [`Page`] with [`Page::from_rows`]. The cursor binds
//! the position to a [`QueryId`] (the endpoint, the scope and every filter), so a cursor from
//! one query is refused by another with `422`.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    hex::encode as hex,
    problem::{FieldError, Problem},
};

/// Default and maximum page sizes (API.md).
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// Where a page starts: after the row with this sort key and id.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    /// The sort key of the last row of the previous page (a string, number or timestamp).
    pub key: serde_json::Value,
    /// Its id, the tie-breaker.
    pub id: Uuid,
}

/// The identity of a list query: the cursor of one is refused by every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryId([u8; 16]);

impl QueryId {
    /// `operation` and every part that shapes the result (the tenant, each filter).
    pub fn new(operation: &str, parts: &[&str]) -> QueryId {
        let mut h = Sha256::new();
        h.update(operation.as_bytes());
        for p in parts {
            h.update([0]);
            h.update(p.as_bytes());
        }
        let digest = h.finalize();
        QueryId(digest[..16].try_into().expect("16 bytes"))
    }
}

/// Signs and checks cursors. The key is derived from the server's token pepper with HKDF,
/// so it rotates with it.
#[derive(Clone)]
pub struct CursorSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for CursorSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorSigner(***)")
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Payload {
    q: String,
    k: serde_json::Value,
    i: Uuid,
}

const TAG_LEN: usize = 16;

impl CursorSigner {
    /// Derives the signing key from a pepper.
    pub fn from_pepper(pepper: &[u8]) -> CursorSigner {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"balance"), pepper);
        let mut key = [0u8; 32];
        hk.expand(b"cursor-signing-v1", &mut key)
            .expect("32 bytes is a valid HKDF length");
        CursorSigner { key }
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        mac.finalize().into_bytes()[..TAG_LEN]
            .try_into()
            .expect("tag length")
    }

    /// The cursor for the page after `position` in `query`.
    pub fn encode(&self, query: &QueryId, position: &Position) -> String {
        let payload = Payload {
            q: hex(&query.0),
            k: position.key.clone(),
            i: position.id,
        };
        let json = serde_json::to_vec(&payload).expect("a cursor payload serialises");
        let mut bytes = json;
        let tag = self.tag(&bytes);
        bytes.extend_from_slice(&tag);
        B64.encode(bytes)
    }

    /// The position a cursor points at, if it was signed here for `query`.
    pub fn decode(&self, query: &QueryId, cursor: &str) -> Result<Position, Problem> {
        let bad = || {
            Problem::validation(vec![FieldError::new(
                "cursor",
                "is not a cursor of this list; start again without one",
            )])
        };
        let bytes = B64.decode(cursor.as_bytes()).map_err(|_| bad())?;
        if bytes.len() <= TAG_LEN {
            return Err(bad());
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(payload);
        mac.verify_truncated_left(tag).map_err(|_| bad())?;
        let payload: Payload = serde_json::from_slice(payload).map_err(|_| bad())?;
        if payload.q != hex(&query.0) {
            return Err(bad());
        }
        Ok(Position {
            key: payload.k,
            id: payload.i,
        })
    }
}

/// `?limit=` and `?cursor=`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PageParams {
    pub limit: u32,
    pub after: Option<Position>,
}

impl PageParams {
    /// Parses the raw query values: `limit` 1-200 (default 50), a cursor of this query.
    pub fn parse(
        limit: Option<i64>,
        cursor: Option<&str>,
        signer: &CursorSigner,
        query: &QueryId,
    ) -> Result<PageParams, Problem> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=i64::from(MAX_LIMIT)).contains(&n) => n as u32,
            Some(_) => {
                return Err(Problem::validation(vec![FieldError::new(
                    "limit",
                    format!("must be between 1 and {MAX_LIMIT}"),
                )]));
            }
        };
        let after = cursor
            .filter(|c| !c.is_empty())
            .map(|c| signer.decode(query, c))
            .transpose()?;
        Ok(PageParams { limit, after })
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

/// One page of a list: `{data, next_cursor, has_more}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

impl<T> Page<T> {
    /// Builds the page from up to `fetch_limit()` rows in keyset order.
    pub fn from_rows(
        mut rows: Vec<T>,
        params: &PageParams,
        signer: &CursorSigner,
        query: &QueryId,
        position_of: impl Fn(&T) -> Position,
    ) -> Page<T> {
        let has_more = rows.len() > params.limit as usize;
        rows.truncate(params.limit as usize);
        let next_cursor = if has_more {
            rows.last()
                .map(|last| signer.encode(query, &position_of(last)))
        } else {
            None
        };
        Page {
            data: rows,
            next_cursor,
            has_more,
        }
    }

    /// Maps the items (e.g. rows to API objects).
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            data: self.data.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
            has_more: self.has_more,
        }
    }
}

/// A page request of a list keyed by `(created_at, id)`: its signed query, its limit, and
/// where it starts. Built where the request is parsed, handed to the service, which asks
/// its store for [`Keyset::fetch_limit`] rows after [`Keyset::after`] and returns
/// [`Keyset::page`].
#[derive(Debug, Clone)]
pub struct Keyset {
    query: QueryId,
    params: PageParams,
    signer: CursorSigner,
}

impl Keyset {
    /// Parses `?limit=` and `?cursor=` for `operation` in `scope` (the tenant or the user).
    pub fn parse(
        signer: &CursorSigner,
        operation: &str,
        scope: impl std::fmt::Display,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<Keyset, Problem> {
        let query = QueryId::new(operation, &[&scope.to_string()]);
        let params = PageParams::parse(limit, cursor, signer, &query)?;
        Ok(Keyset {
            query,
            params,
            signer: signer.clone(),
        })
    }

    /// The first page of `limit` rows, for callers without a cursor (a job, the bot).
    pub fn first(
        signer: &CursorSigner,
        operation: &str,
        scope: impl std::fmt::Display,
        limit: u32,
    ) -> Keyset {
        let query = QueryId::new(operation, &[&scope.to_string()]);
        Keyset {
            query,
            params: PageParams {
                limit: limit.clamp(1, MAX_LIMIT),
                after: None,
            },
            signer: signer.clone(),
        }
    }

    /// `(created_at, id)` of the previous page's last row, if any.
    pub fn after(&self) -> (Option<DateTime<Utc>>, Option<Uuid>) {
        match &self.params.after {
            Some(p) => (
                p.key
                    .as_str()
                    .and_then(|k| DateTime::parse_from_rfc3339(k).ok())
                    .map(|d| d.with_timezone(&Utc)),
                Some(p.id),
            ),
            None => (None, None),
        }
    }

    /// Rows to fetch: one more than the page.
    pub fn fetch_limit(&self) -> i64 {
        self.params.fetch_limit()
    }

    /// The page of `rows` (fetched with [`Keyset::fetch_limit`]), each keyed by `key`.
    pub fn page<R>(&self, rows: Vec<R>, key: impl Fn(&R) -> (DateTime<Utc>, Uuid)) -> Page<R> {
        Page::from_rows(rows, &self.params, &self.signer, &self.query, |r| {
            let (at, id) = key(r);
            Position {
                key: serde_json::json!(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
                id,
            }
        })
    }
}

/// Declares the API object of a page of `$item`: `{data, next_cursor, has_more}`.
#[macro_export]
macro_rules! page_object {
    ($(#[$doc:meta])* $name:ident, $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, poem_openapi::Object)]
        pub struct $name {
            /// The items of this page.
            pub data: Vec<$item>,
            /// Pass as `cursor` to get the next page; `null` on the last page.
            pub next_cursor: Option<String>,
            /// Whether another page follows.
            pub has_more: bool,
        }

        impl From<$crate::page::Page<$item>> for $name {
            fn from(page: $crate::page::Page<$item>) -> Self {
                Self { data: page.data, next_cursor: page.next_cursor, has_more: page.has_more }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> CursorSigner {
        CursorSigner::from_pepper(b"pepper-for-tests-0123456789abcdef")
    }

    #[test]
    fn a_cursor_round_trips_within_its_query_only() {
        let q = QueryId::new("list_members", &["tenant-a"]);
        let pos = Position {
            key: serde_json::json!("2026-11-25T08:00:00Z"),
            id: Uuid::now_v7(),
        };
        let cursor = signer().encode(&q, &pos);
        assert_eq!(signer().decode(&q, &cursor).unwrap(), pos);

        let other_query = QueryId::new("list_members", &["tenant-b"]);
        assert_eq!(
            signer().decode(&other_query, &cursor).unwrap_err().errors()[0].field,
            "cursor"
        );
        let other_key = CursorSigner::from_pepper(b"another pepper");
        assert!(
            other_key.decode(&q, &cursor).is_err(),
            "signed with another key"
        );
    }

    #[test]
    fn a_tampered_or_garbage_cursor_is_refused() {
        let q = QueryId::new("list", &[]);
        let cursor = signer().encode(
            &q,
            &Position {
                key: serde_json::json!(5),
                id: Uuid::nil(),
            },
        );
        let mut bytes = B64.decode(&cursor).unwrap();
        bytes[10] ^= 1;
        let tampered = B64.encode(bytes);
        for bad in [
            tampered.as_str(),
            "",
            "abc",
            "!!!!",
            &cursor[..cursor.len() - 2],
        ] {
            if bad.is_empty() {
                continue;
            }
            assert!(signer().decode(&q, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_outside_1_to_200_are_refused() {
        let q = QueryId::new("list", &[]);
        for (limit, ok) in [
            (None, true),
            (Some(1), true),
            (Some(200), true),
            (Some(0), false),
            (Some(201), false),
            (Some(-5), false),
        ] {
            assert_eq!(
                PageParams::parse(limit, None, &signer(), &q).is_ok(),
                ok,
                "{limit:?}"
            );
        }
        assert_eq!(
            PageParams::parse(None, None, &signer(), &q).unwrap().limit,
            50
        );
    }
}

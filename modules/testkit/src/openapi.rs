//! Validates real HTTP responses against an OpenAPI 3.0.x document.
//!
//! This is test support whose job is to catch a committed spec that disagrees
//! with what the server really sends, so the rules are strict, not forgiving.
//! It depends on `serde_json` alone, which is why `pattern` (needs a regex
//! engine), external `$ref`s and request validation are left out.

use serde_json::{Map, Value};
use std::collections::HashSet;
use std::ops::Range;

type Obj = Map<String, Value>;

/// The committed spec, parsed once.
pub struct Spec {
    doc: Value,
}

/// Cap on `$ref` alias hops for path items and responses, so a cyclic alias
/// cannot hang a test (schema refs have their own cycle guard in [`Walk`]).
const MAX_REF_HOPS: usize = 32;

impl Spec {
    /// Wraps a parsed OpenAPI 3.0.x document (JSON form; convert YAML first).
    pub fn new(doc: Value) -> Spec {
        Spec { doc }
    }

    /// The operation whose path template matches a concrete request path,
    /// e.g. `/api/v1/tenants/0192.../members` matches
    /// `/api/v1/tenants/{tenant_id}/members`. Templates use whole-segment
    /// `{name}` parameters; when several match, a literal segment beats a
    /// parameter segment, compared from the left. The query string is ignored.
    /// Returns `(template, operation object)` for `method` in any case, or
    /// `None` when no template matches or the best match lacks that method
    /// (as a router answers 405 rather than falling back to a looser route).
    pub fn operation(&self, method: &str, path: &str) -> Option<(String, &Value)> {
        let path = path.split(['?', '#']).next().unwrap_or("");
        let segs: Vec<&str> = path.split('/').collect();
        let mut best: Option<(Vec<bool>, &String, &Value)> = None;
        for (tmpl, item) in self.doc.get("paths")?.as_object()? {
            let tsegs: Vec<&str> = tmpl.split('/').collect();
            if tsegs.len() != segs.len() {
                continue;
            }
            let mut literal = Vec::with_capacity(segs.len());
            let matched = tsegs.iter().zip(&segs).all(|(t, s)| {
                let param = t.len() > 2 && t.starts_with('{') && t.ends_with('}');
                literal.push(!param);
                (param && !s.is_empty()) || t == s
            });
            // Vec<bool> orders lexicographically with false < true, so the
            // template with a literal at the first differing segment wins.
            if matched && best.as_ref().is_none_or(|(b, _, _)| literal > *b) {
                best = Some((literal, tmpl, item));
            }
        }
        let (_, tmpl, item) = best?;
        let op = self.resolve(item).get(method.to_ascii_lowercase())?;
        Some((tmpl.clone(), op))
    }

    /// Validates one response: the status (exact code, else a `2XX`-style
    /// range, else `default`), the media type (parameters such as
    /// `; charset=utf-8` are stripped; an empty body is fine only when no
    /// content is declared, e.g. 204) and, for JSON media types (`*/json`,
    /// `*+json`), the body against that media type's schema. Returns
    /// human-readable violations, each led by a path such as
    /// `$.data[0].deleted_at` or by the request line; empty means the
    /// response matches. An undeclared status or media type is a violation.
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Vec<String> {
        let what = format!("{} {path} -> {status}", method.to_ascii_uppercase());
        let err = |m: String| vec![format!("{what}: {m}")];
        let Some((tmpl, op)) = self.operation(method, path) else {
            return err("no operation in the spec matches".into());
        };
        let (code, range) = (status.to_string(), format!("{}XX", status / 100));
        let keys = [&*code, &*range, &range.to_lowercase(), "default"];
        let responses = op.get("responses");
        let Some(resp) = keys.iter().find_map(|k| responses?.get(*k)) else {
            return err(format!("status is not declared for {tmpl}"));
        };
        let resp = self.resolve(resp);
        if resp.get("$ref").is_some() {
            return err("the response object has an unresolvable $ref".into());
        }
        let content = resp.get("content").and_then(Value::as_object);
        let Some(content) = content.filter(|c| !c.is_empty()) else {
            // Nothing declared (e.g. 204): the only conforming body is none.
            return match body.len() {
                0 => vec![],
                n => err(format!("no content declared, but the body has {n} bytes")),
            };
        };
        let declared = content.keys().cloned().collect::<Vec<_>>().join(", ");
        // HEAD answers carry GET's headers but never a body.
        if method.eq_ignore_ascii_case("head") {
            return vec![];
        }
        if body.is_empty() {
            return err(format!("empty body, but the spec declares {declared}"));
        }
        let Some(ct) = content_type else {
            return err(format!("no Content-Type, but the spec declares {declared}"));
        };
        let mt = essence(ct);
        // Most specific first: exact type, then `type/*`, then `*/*`.
        let wildcard = format!("{}/*", mt.split('/').next().unwrap_or(""));
        let found = [&*mt, &*wildcard, "*/*"]
            .iter()
            .find_map(|want| content.iter().find(|(k, _)| essence(k) == *want));
        let Some((_, media)) = found else {
            return err(format!("undeclared media type {mt} (spec has {declared})"));
        };
        // Only JSON bodies are parsed; other media types stop at the type check.
        let json = mt == "application/json" || mt.ends_with("+json");
        let Some(schema) = media.get("schema").filter(|_| json) else {
            return vec![];
        };
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => self.check_value(schema, &value),
            Err(e) => err(format!("body is not valid JSON: {e}")),
        }
    }

    /// Validates a value against a schema object of this spec (resolving
    /// `$ref`s). Returns violations as in [`Spec::check_response`].
    pub fn check_value(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut walk = Walk {
            spec: self,
            seen: HashSet::new(),
            errs: Vec::new(),
        };
        walk.validate(schema, value, "$");
        // Sibling branches (e.g. of allOf) may report the very same thing.
        walk.errs.dedup();
        walk.errs
    }

    /// Follows `$ref` aliases of non-schema objects (path items, responses).
    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        for _ in 0..MAX_REF_HOPS {
            match v.get("$ref").and_then(|r| self.lookup(r.as_str()?)) {
                Some(t) => v = t,
                None => break,
            }
        }
        v
    }

    /// Resolves a local reference such as `#/components/schemas/Name`;
    /// `Value::pointer` does the RFC 6901 `~1`/`~0` unescaping.
    fn lookup(&self, r: &str) -> Option<&Value> {
        self.doc.pointer(r.strip_prefix('#')?)
    }
}

/// One validation pass. `seen` holds the (ref, value path) pairs being
/// expanded right now: meeting one again means a cycle that consumes no
/// input (`A: {allOf: [A]}`), which is cut instead of recursing forever.
struct Walk<'a> {
    spec: &'a Spec,
    seen: HashSet<(String, String)>,
    errs: Vec<String>,
}

impl Walk<'_> {
    fn fail(&mut self, at: &str, msg: String) {
        self.errs.push(format!("{at}: {msg}"));
    }

    /// Validates into a fresh list, for branches whose failure is no error by itself.
    fn errors_of(&mut self, s: &Value, v: &Value, at: &str) -> Vec<String> {
        let outer = std::mem::take(&mut self.errs);
        self.validate(s, v, at);
        std::mem::replace(&mut self.errs, outer)
    }

    fn validate(&mut self, s: &Value, v: &Value, at: &str) {
        let Some(o) = s.as_object() else { return };
        if v.is_null() && flag(o, "nullable") {
            return;
        }
        if let Some(r) = o.get("$ref") {
            // 3.0 ignores siblings of $ref; `nullable` was honoured above.
            let r = r.as_str().unwrap_or_default();
            let spec = self.spec; // a copy, so `target` does not borrow `self`
            let Some(target) = spec.lookup(r) else {
                return self.fail(at, format!("unresolvable $ref {r:?}"));
            };
            let key = (r.to_string(), at.to_string());
            if self.seen.insert(key.clone()) {
                self.validate(target, v, at);
                self.seen.remove(&key);
            }
            return;
        }
        let ty = o.get("type").and_then(Value::as_str);
        // 3.0: only `nullable: true` admits null. A schema without `type` that
        // still describes a shape is held to that too; a composition-only
        // schema lets its branches decide.
        let shaped = ty.is_some() || o.contains_key("properties") || o.contains_key("items");
        if v.is_null() && shaped {
            return self.fail(at, "null is not allowed (not nullable)".into());
        }
        if let Some(t) = ty {
            let ok = match t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "boolean" => v.is_boolean(),
                "number" => v.is_number(),
                "integer" => as_int(v).is_some(),
                _ => return self.fail(at, format!("schema has unknown type {t:?}")),
            };
            if !ok {
                // Keyword checks on a value of the wrong type would only add noise.
                return self.fail(at, format!("expected {t}, got {}", short(v)));
            }
        }
        if let Some(e) = o.get("enum").filter(|e| !list(e).contains(v)) {
            self.fail(at, format!("{} is not one of {}", short(v), short(e)));
        }
        if let Some(c) = o.get("const").filter(|c| *c != v) {
            self.fail(at, format!("{} is not the const {}", short(v), short(c)));
        }
        // Own-level messages go first, then those of nested values.
        match v {
            Value::String(st) => string_issues(o, st)
                .into_iter()
                .for_each(|m| self.fail(at, m)),
            Value::Number(_) => number_issues(o, v)
                .into_iter()
                .for_each(|m| self.fail(at, m)),
            Value::Array(a) => {
                for m in bounds(o, a.len(), "minItems", "maxItems", "items") {
                    self.fail(at, m);
                }
                // Quadratic, but only when asked for: Value has no Hash.
                let unique = || (0..a.len()).find(|&i| a[..i].contains(&a[i]));
                if let Some(i) = flag(o, "uniqueItems").then(unique).flatten() {
                    self.fail(
                        at,
                        format!("items are not unique: [{i}] repeats an earlier one"),
                    );
                }
                if let Some(items) = o.get("items") {
                    for (i, x) in a.iter().enumerate() {
                        self.validate(items, x, &format!("{at}[{i}]"));
                    }
                }
            }
            Value::Object(m) => {
                for r in list_of(o, "required").iter().filter_map(Value::as_str) {
                    if !m.contains_key(r) {
                        self.fail(at, format!("missing required property {r:?}"));
                    }
                }
                let props = o.get("properties").and_then(Value::as_object);
                for (k, x) in m {
                    let child = prop_path(at, k);
                    match (props.and_then(|p| p.get(k)), o.get("additionalProperties")) {
                        (Some(ps), _) => self.validate(ps, x, &child),
                        (None, Some(Value::Bool(false))) => self.fail(
                            &child,
                            "unknown property is not allowed (additionalProperties: false)".into(),
                        ),
                        (None, Some(ap)) if ap.is_object() => self.validate(ap, x, &child),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        for b in list_of(o, "allOf") {
            self.validate(b, v, at);
        }
        for kw in ["anyOf", "oneOf"] {
            if o.contains_key(kw) {
                self.branches(o, kw, v, at);
            }
        }
        if let Some(not) = o.get("not")
            && self.errors_of(not, v, at).is_empty()
        {
            self.fail(at, "matches the schema under `not`".into());
        }
    }

    /// anyOf (at least one branch must pass) and oneOf (exactly one).
    fn branches(&mut self, o: &Obj, kw: &str, v: &Value, at: &str) {
        let bs = list_of(o, kw);
        let disc = o.get("discriminator");
        if let Some(prop) = disc.and_then(|d| d.get("propertyName")?.as_str()) {
            // The payload names its branch: check that one alone, as a client
            // would, which also gives precise errors.
            let Some(tag) = v.get(prop).and_then(Value::as_str) else {
                return self.fail(at, format!("missing discriminator property {prop:?}"));
            };
            // Without a mapping entry the tag is a component schema name.
            let mapped = disc.and_then(|d| d.get("mapping")?.get(tag)?.as_str());
            let target = match mapped.unwrap_or(tag) {
                m if m.starts_with('#') => m.to_string(),
                m => format!("#/components/schemas/{m}"),
            };
            let is_target = |b: &&Value| b.get("$ref").and_then(Value::as_str) == Some(&*target);
            return match bs.iter().find(is_target) {
                Some(b) => self.validate(b, v, at),
                None => self.fail(at, format!("discriminator {tag:?} selects no {kw} branch")),
            };
        }
        let results: Vec<Vec<String>> = bs.iter().map(|b| self.errors_of(b, v, at)).collect();
        let passing: Vec<usize> = (0..bs.len()).filter(|&i| results[i].is_empty()).collect();
        if passing.is_empty() {
            let why = results
                .iter()
                .enumerate()
                .map(|(i, e)| format!("[{i}] {}", e.join("; ")));
            let why = why.collect::<Vec<_>>().join(" | ");
            self.fail(at, format!("matches no {kw} branch: {why}"));
        } else if kw == "oneOf" && passing.len() > 1 {
            self.fail(
                at,
                format!("matches oneOf branches {passing:?}, not exactly one"),
            );
        }
    }
}

fn flag(o: &Obj, k: &str) -> bool {
    o.get(k) == Some(&Value::Bool(true))
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn list_of<'a>(o: &'a Obj, k: &str) -> &'a [Value] {
    o.get(k).map_or(&[], list)
}

/// `minItems`/`maxItems`-style count limits.
fn bounds(o: &Obj, n: usize, min_k: &str, max_k: &str, what: &str) -> Vec<String> {
    let (n, get) = (n as u64, |k: &str| o.get(k).and_then(Value::as_u64));
    let mut out = Vec::new();
    if let Some(min) = get(min_k).filter(|m| n < *m) {
        out.push(format!("{n} {what}, fewer than {min_k} {min}"));
    }
    if let Some(max) = get(max_k).filter(|m| n > *m) {
        out.push(format!("{n} {what}, more than {max_k} {max}"));
    }
    out
}

/// `application/json; charset=utf-8` -> `application/json`.
fn essence(ct: &str) -> String {
    let essence = ct.split(';').next().unwrap_or("");
    essence.trim().to_ascii_lowercase()
}

/// A JSON number with no fractional part (so `3.0` counts, as in JSON Schema).
fn as_int(v: &Value) -> Option<i128> {
    let f = v.as_f64().filter(|f| f.is_finite() && f.fract() == 0.0);
    let exact = v.as_i64().map(i128::from).or(v.as_u64().map(i128::from));
    exact.or(f.map(|f| f as i128))
}

/// The value as JSON, cut short so a big body cannot flood a test failure.
fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// `$.name` for plain keys, `$["odd key"]` otherwise, so paths stay unambiguous.
fn prop_path(at: &str, k: &str) -> String {
    let plain = k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match plain {
        true => format!("{at}.{k}"),
        false => format!("{at}[{k:?}]"),
    }
}

fn string_issues(o: &Obj, s: &str) -> Vec<String> {
    // Length counts characters, not bytes.
    let mut out = bounds(o, s.chars().count(), "minLength", "maxLength", "chars");
    // `pattern` is deliberately not checked: it needs a regex engine, and this
    // module allows no dependency beyond serde_json.
    let fmt = o.get("format").and_then(Value::as_str).unwrap_or_default();
    let ok = match fmt {
        "uuid" => is_uuid(s),
        "date-time" => is_date_time(s),
        "date" => is_date(s),
        "email" => is_email(s),
        "uri" => is_uri(s),
        _ => true, // unknown formats are annotations only
    };
    if !ok {
        out.push(format!("{s:?} is not a valid {fmt}"));
    }
    out
}

fn number_issues(o: &Obj, v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let x = v.as_f64().unwrap_or_default();
    // 3.0 form: exclusiveMinimum/exclusiveMaximum are booleans qualifying minimum/maximum.
    let lim = |k: &str| o.get(k).and_then(Value::as_f64);
    let (emin, emax) = (flag(o, "exclusiveMinimum"), flag(o, "exclusiveMaximum"));
    let word = |e: bool| if e { "exclusive " } else { "" };
    if let Some(min) = lim("minimum").filter(|m| x < *m || (emin && x == *m)) {
        out.push(format!("{v} is below the {}minimum {min}", word(emin)));
    }
    if let Some(max) = lim("maximum").filter(|m| x > *m || (emax && x == *m)) {
        out.push(format!("{v} is above the {}maximum {max}", word(emax)));
    }
    // intN/uintN: 3.0's int32/int64, plus the int8..uint64 that poem-openapi emits.
    let fmt = o.get("format").and_then(Value::as_str).unwrap_or_default();
    let bits = fmt.strip_prefix('u').unwrap_or(fmt).strip_prefix("int");
    let bits = bits
        .and_then(|b| b.parse().ok())
        .filter(|b: &u32| [8, 16, 32, 64].contains(b));
    let ok = bits.is_none_or(|b| {
        let (lo, hi) = match fmt.starts_with('u') {
            true => (0, (1i128 << b) - 1),
            false => (-(1i128 << (b - 1)), (1i128 << (b - 1)) - 1),
        };
        as_int(v).is_some_and(|i| (lo..=hi).contains(&i))
    });
    if !ok {
        out.push(format!("{v} is not a valid {fmt}"));
    }
    out
}

/// Digits only (no sign, unlike `str::parse`) in byte range `r` of `s`.
fn num(s: &str, r: Range<usize>) -> Option<u32> {
    let t = s.get(r).filter(|t| t.bytes().all(|b| b.is_ascii_digit()))?;
    t.parse().ok()
}

fn is_uuid(s: &str) -> bool {
    let hex_or_dash = |(i, b): (usize, u8)| match i {
        8 | 13 | 18 | 23 => b == b'-',
        _ => b.is_ascii_hexdigit(),
    };
    s.len() == 36 && s.bytes().enumerate().all(hex_or_dash)
}

/// `YYYY-MM-DD` with a real month and day (leap years included).
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let (Some(y), Some(m), Some(d)) = (num(s, 0..4), num(s, 5..7), num(s, 8..10)) else {
        return false;
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// RFC 3339 date-time: `T`, optional fractional seconds, then `Z` or `±HH:MM`
/// (RFC 3339 allows lowercase `t`/`z`; a bare local time is rejected).
fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let seps = b.len() >= 20 && matches!(b[10], b'T' | b't') && b[13] == b':' && b[16] == b':';
    if !seps || !is_date(&s[..10]) {
        return false;
    }
    let (Some(h), Some(mi), Some(sec)) = (num(s, 11..13), num(s, 14..16), num(s, 17..19)) else {
        return false;
    };
    if h > 23 || mi > 59 || sec > 60 {
        return false; // 60 allows a leap second
    }
    let mut rest = &s[19..]; // bytes 10..19 were just checked to be ASCII
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', _, _, b':', _, _] => {
            num(rest, 1..3).is_some_and(|h| h < 24) && num(rest, 4..6).is_some_and(|m| m < 60)
        }
        _ => false,
    }
}

/// Loose on purpose: `local@domain.tld` with no whitespace and no empty labels.
fn is_email(s: &str) -> bool {
    let ok = |(local, domain): (&str, &str)| {
        let labels: Vec<&str> = domain.split('.').collect();
        !local.is_empty() && labels.len() >= 2 && labels.iter().all(|l| !l.is_empty())
    };
    !s.chars().any(char::is_whitespace) && s.rsplit_once('@').is_some_and(ok)
}

/// An RFC 3986 scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`) then `:`.
fn is_uri(s: &str) -> bool {
    let scheme_char = |c: char| c.is_ascii_alphanumeric() || "+-.".contains(c);
    let scheme = s.split_once(':').map_or("", |(scheme, _)| scheme);
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(scheme_char)
        && !s.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: &str = "/api/v1/tenants/0192f0c4-7b8e-7a4c-9a8e-2b6f1d3c4e5f";

    fn r(name: &str) -> Value {
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    fn spec() -> Spec {
        let body = |schema: Value| json!({ "description": "", "content": { "application/json": { "schema": schema } } });
        let problem = json!({ "$ref": "#/components/responses/Problem" });
        Spec::new(json!({
            "openapi": "3.0.3",
            "paths": {
                "/api/v1/tenants/{tenant_id}/members": { "get": { "responses": {
                    "200": { "description": "", "content": { "application/json; charset=utf-8": { "schema": {
                        "type": "object", "required": ["data"], "additionalProperties": false,
                        "properties": { "data": { "type": "array", "items": r("Member") } } } } } },
                    "404": problem } } },
                "/api/v1/tenants/{tenant_id}": {
                    "get": { "responses": { "200": body(r("Tenant")) } },
                    "head": { "responses": { "200": body(r("Tenant")) } },
                    "delete": { "responses": { "204": { "description": "gone" } } } },
                "/api/v1/tenants/me": { "get": { "responses": { "200": body(r("Tenant")) } } },
                "/api/v1/{a}/b": { "get": {} },
                "/api/v1/a/{b}": { "get": {} },
                "/api/v1/pets/{id}": { "get": { "responses": { "2XX": body(r("Pet")), "default": problem } } }
            },
            "components": {
                "responses": { "Problem": { "description": "",
                    "content": { "application/problem+json": { "schema": r("Problem") } } } },
                "schemas": {
                    "Member": { "type": "object", "additionalProperties": false,
                        "required": ["id", "email", "created_at", "deleted_at"], "properties": {
                        "id": { "type": "string", "format": "uuid" },
                        "email": { "type": "string", "format": "email" },
                        "created_at": { "type": "string", "format": "date-time" },
                        "deleted_at": { "type": "string", "format": "date-time", "nullable": true },
                        "role": { "type": "string", "enum": ["owner", "member"] } } },
                    // A $ref chain whose second hop needs `~1` unescaping, and recursion.
                    "Tenant": r("Tenant~1v1"),
                    "Tenant/v1": { "allOf": [r("Named"), { "type": "object", "properties": {
                        "parent": { "allOf": [r("Tenant")], "nullable": true } } }] },
                    "Named": { "type": "object", "required": ["name"],
                        "properties": { "name": { "type": "string", "minLength": 1, "maxLength": 3 } } },
                    "Loop": { "allOf": [r("Loop")] },
                    "Pet": { "oneOf": [r("Cat"), r("Dog")] },
                    "Tagged": { "oneOf": [r("Cat"), r("Dog")], "discriminator": {
                        "propertyName": "kind", "mapping": { "dog": "#/components/schemas/Dog" } } },
                    "Cat": { "type": "object", "required": ["meow"], "properties": { "meow": { "type": "boolean" } } },
                    "Dog": { "type": "object", "required": ["bark"], "properties": { "bark": { "type": "boolean" } } },
                    "Problem": { "type": "object", "required": ["title", "status"], "properties": {
                        "title": { "type": "string" }, "status": { "type": "integer", "format": "int32" } } }
                }
            }
        }))
    }

    /// A valid member with `patch` merged in; a patch value of "-" removes the key.
    fn member(patch: Value) -> Value {
        let mut m = json!({ "id": "0192f0c4-7b8e-7a4c-9a8e-2b6f1d3c4e5f", "email": "a@b.io",
            "created_at": "2024-05-01T12:00:00Z", "deleted_at": null, "role": "owner" });
        for (k, v) in patch.as_object().unwrap() {
            match v.as_str() {
                Some("-") => m.as_object_mut().unwrap().remove(k),
                _ => m.as_object_mut().unwrap().insert(k.clone(), v.clone()),
            };
        }
        json!({ "data": [m] })
    }

    /// Asserts the violations: equal in order, or merely containing an
    /// expected entry written with a leading `~`.
    fn expect(got: &[String], want: &Value, case: &Value) {
        let want: Vec<&str> = want
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let same = |(g, w): (&String, &&str)| w.strip_prefix('~').map_or(g == w, |p| g.contains(p));
        let ok = got.len() == want.len() && got.iter().zip(&want).all(same);
        assert!(ok, "case {case}\ngot {got:#?}");
    }

    #[test]
    fn path_templates_prefer_literal_segments() {
        let (s, m) = (spec(), format!("{T}/members"));
        let cases = json!([
            ["get", m, "/api/v1/tenants/{tenant_id}/members"],
            ["GET", format!("{T}?x=1"), "/api/v1/tenants/{tenant_id}"],
            ["Delete", T, "/api/v1/tenants/{tenant_id}"],
            ["get", "/api/v1/tenants/me", "/api/v1/tenants/me"],
            ["get", "/api/v1/a/b", "/api/v1/a/{b}"],
            // The best path lacks DELETE: a router answers 405, not a looser route.
            ["delete", "/api/v1/tenants/me", null],
            ["get", "/api/v1/tenants/", null], // an empty segment is no parameter
            ["get", format!("{m}/x"), null],
            ["post", T, null]
        ]);
        for c in cases.as_array().unwrap() {
            let got = s.operation(c[0].as_str().unwrap(), c[1].as_str().unwrap());
            assert_eq!(got.map(|(t, _)| t).as_deref(), c[2].as_str(), "{c}");
        }
    }

    #[test]
    fn responses() {
        let (s, m, pets) = (spec(), format!("{T}/members"), "/api/v1/pets/7");
        let (json, pj) = ("application/json", "application/problem+json");
        let problem = json!({ "title": "boom", "status": 500 });
        // [method, path, status, Content-Type, body (a string is sent as is), violations]
        let cases = json!([
            ["DELETE", T, 204, null, "", []],
            ["delete", T, 204, "text/plain", "", []],
            ["delete", T, 204, json, "{}", [format!("DELETE {T} -> 204: no content declared, but the body has 2 bytes")]],
            ["get", m, 200, json, member(json!({})), []],
            ["get", m, 200, "application/json; charset=utf-8", member(json!({ "role": "member" })), []],
            ["get", m, 200, json, member(json!({ "created_at": null })),
                ["$.data[0].created_at: null is not allowed (not nullable)"]],
            ["get", m, 200, json, member(json!({ "email": "-", "extra": 1, "role": "admin", "id": "x" })), [
                "$.data[0]: missing required property \"email\"",
                "$.data[0].extra: unknown property is not allowed (additionalProperties: false)",
                "$.data[0].id: \"x\" is not a valid uuid",
                "$.data[0].role: \"admin\" is not one of [\"owner\",\"member\"]"]],
            ["get", m, 200, json, { "data": [], "next": null },
                ["$.next: unknown property is not allowed (additionalProperties: false)"]],
            ["get", m, 500, json, "{}",
                [format!("GET {m} -> 500: status is not declared for /api/v1/tenants/{{tenant_id}}/members")]],
            ["get", m, 404, "Application/Problem+JSON; charset=utf-8", problem, []],
            // The spec promises problem+json; plain JSON is a lie either way round.
            ["get", m, 404, json, problem,
                [format!("GET {m} -> 404: undeclared media type application/json (spec has {pj})")]],
            ["get", m, 404, pj, { "title": 1, "status": 404 }, ["$.title: expected string, got 1"]],
            ["get", m, 404, pj, { "title": "x", "status": 2_147_483_648_u64 }, ["$.status: 2147483648 is not a valid int32"]],
            ["get", pets, 201, json, { "bark": true }, []], // via 2XX
            ["get", pets, 503, pj, problem, []], // via default
            ["get", pets, 200, json, { "meow": true, "bark": false }, ["$: matches oneOf branches [0, 1], not exactly one"]],
            ["get", pets, 200, json, {}, ["~$: matches no oneOf branch: [0] $: missing required property \"meow\" | [1]"]],
            ["get", m, 200, null, "{}", ["~no Content-Type, but the spec declares application/json; charset=utf-8"]],
            ["get", m, 200, json, "", ["~empty body, but the spec declares"]],
            ["get", m, 200, json, "{", ["~body is not valid JSON"]],
            ["HEAD", T, 200, json, "", []], // HEAD has GET's headers, never a body
            ["get", "/nope", 200, null, "", ["GET /nope -> 200: no operation in the spec matches"]]
        ]);
        for c in cases.as_array().unwrap() {
            let body = c[4]
                .as_str()
                .map_or_else(|| c[4].to_string(), str::to_string);
            let (method, path, status) = (
                c[0].as_str().unwrap(),
                c[1].as_str().unwrap(),
                c[2].as_u64().unwrap(),
            );
            let got = s.check_response(method, path, status as u16, c[3].as_str(), body.as_bytes());
            expect(&got, &c[5], c);
        }
    }

    #[test]
    fn schema_keywords() {
        let s = spec();
        let (int64, num) = (
            json!({ "type": "integer", "format": "int64" }),
            json!({ "type": "number",
            "minimum": 0, "maximum": 10, "exclusiveMaximum": true }),
        );
        let any = json!({ "anyOf": [{ "type": "string" }, { "type": "integer" }, { "type": "string", "nullable": true }] });
        let arr = json!({ "type": "array", "minItems": 1, "maxItems": 2, "uniqueItems": true });
        // [schema, value, violations]
        let cases = json!([
            [r("Tenant"), { "name": "ééé", "parent": { "name": "b", "parent": null } }, []], // chars, not bytes
            [r("Tenant"), { "name": "abcd" }, ["$.name: 4 chars, more than maxLength 3"]],
            [r("Tenant"), { "parent": { "name": "" } },
                ["$: missing required property \"name\"", "$.parent.name: 0 chars, fewer than minLength 1"]],
            [r("Tenant"), { "name": null }, ["$.name: null is not allowed (not nullable)"]],
            [r("Tenant"), null, ["$: null is not allowed (not nullable)"]],
            [r("Loop"), 1, []], // a cycle consuming no input ends instead of overflowing
            [r("Nope"), 1, ["$: unresolvable $ref \"#/components/schemas/Nope\""]],
            [r("Tagged"), { "kind": "dog", "bark": true, "meow": true }, []],
            [r("Tagged"), { "kind": "Cat", "meow": true }, []], // implicit mapping
            [r("Tagged"), { "kind": "dog", "meow": true }, ["$: missing required property \"bark\""]],
            [r("Tagged"), { "kind": "fish" }, ["$: discriminator \"fish\" selects no oneOf branch"]],
            [r("Tagged"), {}, ["$: missing discriminator property \"kind\""]],
            [any, "x", []], [any, null, []], [any, 1.5, ["~$: matches no anyOf branch"]],
            [{ "not": { "type": "string" } }, "x", ["$: matches the schema under `not`"]],
            [{ "type": "object", "additionalProperties": { "type": "integer" } }, { "a": 1, "b c": "x" },
                ["$[\"b c\"]: expected integer, got \"x\""]],
            [int64, 3.0, []], [int64, 1.5, ["$: expected integer, got 1.5"]],
            [int64, 9_223_372_036_854_775_808_u64, ["$: 9223372036854775808 is not a valid int64"]],
            [{ "format": "uint16" }, 65_536, ["$: 65536 is not a valid uint16"]], [{ "format": "uint64" }, -1, ["~uint64"]],
            [{ "format": "int8" }, -128, []], [{ "type": "number", "format": "float" }, 1.5, []],
            [num, 0, []], [num, -0.5, ["$: -0.5 is below the minimum 0"]],
            [num, 10, ["$: 10 is above the exclusive maximum 10"]],
            [arr, [], ["$: 0 items, fewer than minItems 1"]], [arr, [1, 2, 3], ["$: 3 items, more than maxItems 2"]],
            [arr, [{ "a": 1 }, { "a": 1 }], ["$: items are not unique: [1] repeats an earlier one"]],
            [{ "const": "a" }, "b", ["$: \"b\" is not the const \"a\""]]
        ]);
        for c in cases.as_array().unwrap() {
            expect(&s.check_value(&c[0], &c[1]), &c[2], c);
        }
    }

    #[test]
    fn formats() {
        // format: [valid..], [invalid..]
        let cases = json!({
            "uuid": [["0192F0C4-7b8e-7a4c-9a8e-2b6f1d3c4e5f"],
                ["0192f0c47b8e7a4c9a8e2b6f1d3c4e5f", "0192f0c4-7b8e-7a4c-9a8e-2b6f1d3c4e5g", "x"]],
            "date-time": [["2024-05-01T12:00:00Z", "2024-05-01t12:00:00.123456+02:00", "2016-12-31T23:59:60-00:30"],
                ["2024-05-01T12:00:00", "2024-05-01 12:00:00Z", "2024-13-01T12:00:00Z", "2024-05-01T24:00:00Z",
                 "2024-05-01T12:00:00.Z", "2024-05-01T12:00:00+0200", "2024-05-01T12:00:00Zx", "2024-05-01Té2:00:00Z"]],
            "date": [["2024-02-29", "2000-02-29"], ["1900-02-29", "2024-04-31", "2024-1-01", "2024-00-10"]],
            "email": [["a.b+c@example.co.uk"], ["nope", "a@b", "a @b.io", "@b.io", "a@b..io"]],
            "uri": [["https://x.io/a", "urn:isbn:1"], ["/relative", "1http://x", "http ://x"]],
            "color": [["anything: unknown formats are ignored"], []]
        });
        let s = spec();
        for (fmt, c) in cases.as_object().unwrap() {
            let schema = json!({ "type": "string", "format": fmt });
            for (i, valid) in [(0, true), (1, false)] {
                for v in c[i].as_array().unwrap() {
                    assert_eq!(s.check_value(&schema, v).is_empty(), valid, "{fmt} {v}");
                }
            }
        }
    }
}

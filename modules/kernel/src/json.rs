//! The JSON request body of every operation.
//!
//! poem-openapi's own `Json<T>` reports a bad field as one sentence without its path.
//! [`JsonBody`] parses with serde and reports each bad field by its path
//! (`items[2].amount`), then runs the type's [`Validate`] rules, so a client gets every
//! problem of a request in one `422`. Request types derive `poem_openapi::Object` for the
//! spec and `serde::Deserialize` for parsing; both use the same field names.

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::{
    impl_apirequest_for_payload,
    payload::{ParsePayload, Payload},
    registry::{MetaSchemaRef, Registry},
    types::Type,
};
use serde::de::DeserializeOwned;
use sha2::Digest;

use crate::problem::{FieldError, Problem};

/// Rules a request must meet beyond its shape (lengths, ranges, relations between fields).
pub trait Validate {
    /// Adds every broken rule to `errors`.
    fn validate(&self, errors: &mut FieldErrors) {
        let _ = errors;
    }
}

/// The invalid fields found while checking a request.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// Records that `field` is invalid.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// Records an error a domain type's parser reported.
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// Records an error when `ok` is false.
    pub fn check(&mut self, ok: bool, field: &str, message: impl Into<String>) {
        if !ok {
            self.add(field, message);
        }
    }

    /// `Err(422 validation_failed)` when any error was recorded.
    pub fn into_result(self) -> Result<(), Problem> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Problem::validation(self.0))
        }
    }
}

/// A JSON request body, parsed and validated, with the digest of its exact bytes (what an
/// idempotency key's replay is matched against).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonBody<T> {
    value: T,
    digest: [u8; 32],
}

impl<T> JsonBody<T> {
    /// The parsed body.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// SHA-256 of the body's bytes as received.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}

impl<T> std::ops::Deref for JsonBody<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        content_type
            .parse::<mime_guess_lite::Mime>()
            .is_ok_and(|m| m.is_json())
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + DeserializeOwned + Validate> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = Vec::<u8>::from_request(request, body).await?;
        let value = parse(&bytes)?;
        Ok(Self {
            value,
            digest: sha2::Sha256::digest(&bytes).into(),
        })
    }
}

impl_apirequest_for_payload!(JsonBody<T>, T: Type + DeserializeOwned + Validate);

/// A JSON body read now and parsed later: tenant endpoints check membership and permission
/// first, so a stranger gets `404` even with a malformed body. Same schema as [`JsonBody`].
#[derive(Debug, Clone)]
pub struct LazyJson<T> {
    bytes: Vec<u8>,
    _type: std::marker::PhantomData<T>,
}

impl<T: DeserializeOwned + Validate> LazyJson<T> {
    /// Parses and validates the body (`400`/`422` as [`JsonBody`] does), with the digest of
    /// its exact bytes.
    pub fn parse(&self) -> Result<JsonBody<T>, Problem> {
        let value = parse(&self.bytes)?;
        Ok(JsonBody {
            value,
            digest: sha2::Sha256::digest(&self.bytes).into(),
        })
    }

    /// The body's exact bytes, as they arrived (a webhook's signature covers them).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl<T: Type> Payload for LazyJson<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        content_type
            .parse::<mime_guess_lite::Mime>()
            .is_ok_and(|m| m.is_json())
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: Type + DeserializeOwned + Validate> ParsePayload for LazyJson<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = Vec::<u8>::from_request(request, body).await?;
        Ok(Self {
            bytes,
            _type: std::marker::PhantomData,
        })
    }
}

impl_apirequest_for_payload!(LazyJson<T>, T: Type + DeserializeOwned + Validate);

/// Parses and validates a JSON document: `400 malformed_json` when it is not JSON,
/// `422 validation_failed` with every bad field's path otherwise.
pub fn parse<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.is_empty() {
        return Err(Problem::bad_request(
            "malformed_json",
            "The request body is empty; send a JSON object.",
        ));
    }
    // Syntax first, so a truncated document is a 400 and not a misleading field error.
    if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(Problem::bad_request(
            "malformed_json",
            format!("The request body is not valid JSON: {err}."),
        ));
    }
    // No text anywhere may hold a NUL: PostgreSQL cannot store one, and nothing needs it.
    // A JSON string can only carry one escaped, so the walk runs only when that escape is
    // there at all.
    if bytes.windows(6).any(|w| w == b"\\u0000")
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes)
    {
        let mut errors = Vec::new();
        find_nul(&value, "", &mut errors);
        if !errors.is_empty() {
            return Err(Problem::validation(errors));
        }
    }
    // Bodies are objects. (serde would also read a struct from an array of its fields.)
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Problem::validation(vec![FieldError::new(
            "body",
            "must be a JSON object",
        )]));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        Problem::validation(vec![field_error(&path, &inner.to_string())])
    })?;
    let mut errors = FieldErrors::default();
    value.validate(&mut errors);
    errors.into_result()?;
    Ok(value)
}

/// The paths of every string (or key) in `value` that holds a NUL character.
fn find_nul(value: &serde_json::Value, path: &str, errors: &mut Vec<FieldError>) {
    let at = |child: &str| {
        if path.is_empty() {
            child.to_string()
        } else {
            format!("{path}.{child}")
        }
    };
    match value {
        serde_json::Value::String(s) if s.contains('\0') => errors.push(FieldError::new(
            if path.is_empty() { "body" } else { path },
            "must not contain NUL characters",
        )),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                find_nul(
                    item,
                    &format!("{}[{i}]", if path.is_empty() { "body" } else { path }),
                    errors,
                );
            }
        }
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                if key.contains('\0') {
                    errors.push(FieldError::new(
                        at(&key.replace('\0', "\\u0000")),
                        "field names must not contain NUL characters",
                    ));
                } else {
                    find_nul(item, &at(key), errors);
                }
            }
        }
        _ => {}
    }
}

/// Names the field of a serde error: a `missing field` is a child of the path serde
/// reports (an unknown field's path already ends with it).
fn field_error(path: &str, message: &str) -> FieldError {
    let message = message.split(" at line ").next().unwrap_or(message);
    let child = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let parent = if path == "." { "" } else { path };
    let field = match child {
        Some(child) if parent.is_empty() => child.to_string(),
        Some(child) => format!("{parent}.{child}"),
        None if parent.is_empty() => "body".to_string(),
        None => parent.to_string(),
    };
    let message = match message.split_once(", expected one of") {
        Some((head, _)) if message.starts_with("unknown field") => head.to_string(),
        _ => message.to_string(),
    };
    FieldError::new(field, message)
}

/// Just enough media-type parsing to accept `application/json` and `+json` types with
/// parameters, without another dependency.
mod mime_guess_lite {
    pub struct Mime {
        essence: String,
    }

    impl std::str::FromStr for Mime {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let essence = s
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence.contains('/') {
                Ok(Self { essence })
            } else {
                Err(())
            }
        }
    }

    impl Mime {
        pub fn is_json(&self) -> bool {
            self.essence == "application/json"
                || (self.essence.starts_with("application/") && self.essence.ends_with("+json"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        amount: i64,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Order {
        items: Vec<Item>,
    }

    impl Validate for Order {
        fn validate(&self, errors: &mut FieldErrors) {
            errors.check(!self.items.is_empty(), "items", "must not be empty");
        }
    }

    fn fields(body: &str) -> Vec<String> {
        parse::<Order>(body.as_bytes())
            .unwrap_err()
            .errors()
            .iter()
            .map(|e| e.field.clone())
            .collect()
    }

    #[test]
    fn bad_fields_are_named_by_their_path() {
        assert_eq!(
            fields(r#"{"items":[{"name":"a","amount":"x"}]}"#),
            ["items[0].amount"]
        );
        assert_eq!(fields(r#"{"items":[{"amount":1}]}"#), ["items[0].name"]);
        assert_eq!(fields(r#"{}"#), ["items"]);
        assert_eq!(
            fields(r#"{"items":[{"name":"a","amount":1,"x":1}]}"#),
            ["items[0].x"]
        );
        assert_eq!(fields(r#"{"items":[]}"#), ["items"]);
    }

    #[test]
    fn a_body_that_is_not_json_is_a_400() {
        for body in ["", "{", "nope", "{\"items\": [}"] {
            let p = parse::<Order>(body.as_bytes()).unwrap_err();
            assert_eq!(
                (p.status().as_u16(), p.code()),
                (400, "malformed_json"),
                "{body}"
            );
        }
    }

    #[test]
    fn a_nul_anywhere_in_the_text_is_a_422_naming_the_field() {
        assert_eq!(
            fields(r#"{"items":[{"name":"a\u0000b","amount":1}]}"#),
            ["items[0].name"]
        );
        assert_eq!(fields(r#"{"items":[],"x\u0000":1}"#), ["x\\u0000"]);
        // An escaped backslash before `u0000` is no NUL.
        assert!(parse::<Order>(br#"{"items":[{"name":"a\\u0000","amount":1}]}"#).is_ok());
    }
}

//! A Stripe stand-in that speaks Stripe's form-encoded API on loopback, answering with the
//! JSON objects async-stripe 1.0.0-rc.10 parses (API version `2026-09-30.endive`), so the
//! billing client is tested against real HTTP, Stripe's idempotency and Stripe's error
//! envelope without a network or a Stripe account.
//!
//! [`StripeStandIn::url`] is the root with a trailing slash (`http://127.0.0.1:<port>/`),
//! the form async-stripe's `ClientBuilder::url` takes (it appends `v1/customers` and so on).
//! Every `/v1/…` call needs `Authorization: Bearer `[`SECRET_KEY`], else 401
//! `invalid_request_error` ("You did not provide an API key…" or "Invalid API Key
//! provided: sk_test_****…"). Bodies are `application/x-www-form-urlencoded` with Stripe's
//! brackets (`metadata[tenant_id]=…`, `line_items[0][price]=…`). What it serves:
//!
//! - `POST /v1/customers`: a Customer `cus_standin_<n>` echoing `email`, `name`,
//!   `description`, `phone` and `metadata[…]`;
//! - `POST /v1/checkout/sessions`: a Checkout Session `cs_test_<n>`, `status: open`,
//!   `payment_status: unpaid`, whose `url` is `{root}checkout/<id>`, echoing `mode`
//!   (default `payment`), `customer`, `customer_email`, `client_reference_id`,
//!   `success_url`, `cancel_url` and `metadata`; the line items and
//!   `subscription_data[metadata]` are kept ([`StripeStandIn::checkout_sessions`]). 400
//!   `parameter_missing` without line items in `payment`/`subscription` mode or for a line
//!   item with a `price` and no `quantity`; 400 `resource_missing` (param `customer`) for a
//!   customer it does not know;
//! - `POST /v1/billing_portal/sessions`: a portal Session `bps_<n>` whose `url` is
//!   `{root}portal/<id>`, echoing `customer` and `return_url` (400 `parameter_missing`
//!   without a customer, `resource_missing` for an unknown one);
//! - `GET /v1/subscriptions/<id>`: the object a test gave [`StripeStandIn::put_subscription`],
//!   as it now is, else 404 `resource_missing` (param `id`, "No such subscription: 'sub_x'");
//! - `GET /checkout/<id>` and `GET /portal/<id>`: a tiny HTML page linking to the session's
//!   `success_url`/`cancel_url` or `return_url` (nothing is completed by visiting it).
//!
//! Anything else under `/v1` is Stripe's 404 "Unrecognized request URL (GET: /v1/…)".
//! Customers are known when created over HTTP or given to [`StripeStandIn::put_customer`]
//! (for tenants seeded with a customer id); [`StripeStandIn::customers`] counts only the
//! ones created over HTTP. Errors use Stripe's envelope
//! `{"error":{"type":…,"code":…,"message":…,"param":…,"doc_url":…}}`; every answer carries a
//! `Request-Id: req_…` header; none carries `Stripe-Should-Retry`.
//!
//! # Idempotency
//!
//! As at Stripe, a `POST` with an `Idempotency-Key` that succeeded is saved: the same key on
//! the same path with the same parameters (compared as a set, so `metadata` may come in any
//! order) replays that answer byte for byte (same id, nothing created) with
//! `Idempotent-Replayed: true` and `Original-Request: <its Request-Id>`; the same key with
//! other parameters, or on another path, is 400 `idempotency_error`. Failed answers
//! (validation errors, faults) are not saved, so a retry with the key runs afresh. `GET`s
//! ignore the header.
//!
//! # Recording
//!
//! Every request, however answered, is kept as a [`StripeRequest`] (the decoded form in
//! order, the `Idempotency-Key` and the `Stripe-Version` header): see
//! [`StripeStandIn::requests`] and [`StripeStandIn::calls`]; paths include `/v1`.
//!
//! # Faults
//!
//! [`StripeStandIn::fail_next`] arms one [`Fault`] for the next `/v1` call whose key checks
//! out; [`StripeStandIn::fail_path`] arms one for the next call whose path starts with a
//! prefix (`/v1/checkout/sessions`), and is taken before one armed by `fail_next`. Each is
//! used once; arming again for the same target replaces one not used yet. A fault stands in
//! front of the idempotency layer (as Stripe's rate limiter does), so it is never saved.
//!
//! # Webhooks
//!
//! [`sign_webhook`] makes a `Stripe-Signature` header (`t=<ts>,v1=<hex>` with one `v1` per
//! secret, the HMAC-SHA256 of `"<ts>.<payload>"` keyed by the `whsec_…` string's bytes), the
//! header async-stripe-webhook's `Webhook::construct_event` checks.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use poem::{
    EndpointExt, Request, Response, Route, handler,
    http::{Method, StatusCode},
    listener::{Acceptor, Listener, TcpListener},
    web::Data,
};
use ring::hmac;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The secret key the stand-in requires as `Authorization: Bearer sk_test_standin`.
pub const SECRET_KEY: &str = "sk_test_standin";
/// The `Stripe-Version` async-stripe 1.0.0-rc.10 sends (recorded, not enforced).
pub const API_VERSION: &str = "2026-09-30.endive";

/// A failure for the next call; see the module doc for which call takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 `invalid_request_error` / `rate_limit`, Stripe's rate-limit answer.
    RateLimited,
    /// 500 `api_error` with no code.
    ServerError,
    /// 200 with a body that is not JSON.
    Malformed,
    /// Sleeps this long, then answers normally (for client timeouts).
    Slow(Duration),
    /// This status with this `code`; the type is `api_error` for 5xx, `card_error` for 402,
    /// else `invalid_request_error`.
    Status(u16, &'static str),
}

/// A request the stand-in received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeRequest {
    pub method: String,
    /// The URI path, e.g. `/v1/customers`.
    pub path: String,
    /// The form body, decoded, in order (`("metadata[tenant_id]", "…")`).
    pub form: Vec<(String, String)>,
    pub idempotency_key: Option<String>,
    pub stripe_version: Option<String>,
}

impl StripeRequest {
    /// The first value of the form field `name` (e.g. `line_items[0][price]`).
    pub fn field(&self, name: &str) -> Option<&str> {
        field(&self.form, name)
    }

    /// The `name[key]=value` fields, e.g. `map("metadata")` or
    /// `map("subscription_data[metadata]")`.
    pub fn map(&self, name: &str) -> BTreeMap<String, String> {
        map(&self.form, name)
    }
}

/// A Checkout Session the stand-in created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSessionRecord {
    pub id: String,
    pub url: String,
    pub mode: String,
    pub customer: Option<String>,
    pub client_reference_id: Option<String>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub line_items: Vec<LineItem>,
    /// `subscription_data[metadata]`: what the subscription will carry.
    pub subscription_metadata: BTreeMap<String, String>,
}

/// One `line_items[i]` of a Checkout Session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineItem {
    pub price: Option<String>,
    pub quantity: Option<u64>,
}

/// An answer, as sent and as saved for idempotent replays.
#[derive(Clone)]
struct Answer {
    status: StatusCode,
    body: String,
    request_id: String,
}

struct Saved {
    path: String,
    /// Sorted, so parameters compare as a set.
    form: Vec<(String, String)>,
    answer: Answer,
}

struct State {
    root: String,
    customers: HashMap<String, Value>,
    created_customers: usize,
    checkout_sessions: Vec<CheckoutSessionRecord>,
    portal_sessions: HashMap<String, String>,
    subscriptions: HashMap<String, Value>,
    idempotency: HashMap<String, Saved>,
    /// `(path prefix, fault)`; the prefix `""` is `fail_next`'s.
    faults: Vec<(String, Fault)>,
    requests: Vec<StripeRequest>,
    counter: u64,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock must not hide the next assertion.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running stand-in; stops when dropped.
pub struct StripeStandIn {
    addr: SocketAddr,
    state: Shared,
    task: JoinHandle<()>,
}

impl Drop for StripeStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StripeStandIn {
    /// Listens on a free loopback port, knowing no customers or subscriptions.
    pub async fn start() -> std::io::Result<StripeStandIn> {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .ok_or_else(|| std::io::Error::other("the listener has no TCP address"))?;
        let state: Shared = Arc::new(Mutex::new(State {
            root: format!("http://{addr}/"),
            customers: HashMap::new(),
            created_customers: 0,
            checkout_sessions: Vec::new(),
            portal_sessions: HashMap::new(),
            subscriptions: HashMap::new(),
            idempotency: HashMap::new(),
            faults: Vec::new(),
            requests: Vec::new(),
            counter: 0,
        }));
        let app = Route::new().at("/*path", dispatch).data(state.clone());
        let task = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        Ok(StripeStandIn { addr, state, task })
    }

    /// `http://127.0.0.1:<port>/`, with the trailing slash async-stripe's `url` needs.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Arms `fault` for the next `/v1` call; replaces one armed this way and not used yet.
    pub fn fail_next(&self, fault: Fault) {
        self.arm(String::new(), fault);
    }

    /// Arms `fault` for the next call whose path starts with `prefix` (e.g.
    /// `/v1/checkout/sessions`).
    pub fn fail_path(&self, prefix: &str, fault: Fault) {
        self.arm(prefix.to_string(), fault);
    }

    /// Whether an armed fault has not been used yet.
    pub fn fault_pending(&self) -> bool {
        !lock(&self.state).faults.is_empty()
    }

    /// How many requests reached `path` (e.g. `/v1/customers`), however answered.
    pub fn calls(&self, path: &str) -> usize {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Every request received on `path`, oldest first, however answered.
    pub fn requests(&self, path: &str) -> Vec<StripeRequest> {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// How many distinct customers `POST /v1/customers` created (replays create none).
    pub fn customers(&self) -> usize {
        lock(&self.state).created_customers
    }

    /// The customer object with this id, as created (or put).
    pub fn customer(&self, id: &str) -> Option<Value> {
        lock(&self.state).customers.get(id).cloned()
    }

    /// Makes a customer with this id known without creating it over HTTP.
    pub fn put_customer(&self, id: &str) {
        let customer = customer_object(id, &[]);
        lock(&self.state).customers.insert(id.to_string(), customer);
    }

    /// Every Checkout Session created, oldest first.
    pub fn checkout_sessions(&self) -> Vec<CheckoutSessionRecord> {
        lock(&self.state).checkout_sessions.clone()
    }

    /// Serves `subscription` (a Stripe Subscription object, e.g. a fixture event's
    /// `data.object`) at `GET /v1/subscriptions/<its id>`; replaces one with that id.
    pub fn put_subscription(&self, subscription: Value) {
        let id = subscription["id"]
            .as_str()
            .expect("a subscription object has a string `id`")
            .to_string();
        lock(&self.state).subscriptions.insert(id, subscription);
    }

    /// The stored subscription object, as it now is.
    pub fn subscription(&self, id: &str) -> Option<Value> {
        lock(&self.state).subscriptions.get(id).cloned()
    }

    /// Sets the stored subscription's `status` (`active`, `past_due`, `canceled`, …).
    pub fn set_subscription_status(&self, id: &str, status: &str) {
        let mut state = lock(&self.state);
        let subscription = state
            .subscriptions
            .get_mut(id)
            .expect("the Stripe stand-in has no subscription with that id");
        subscription["status"] = json!(status);
    }

    /// Forgets the subscription: `GET` answers 404 `resource_missing` afterwards.
    pub fn remove_subscription(&self, id: &str) {
        lock(&self.state).subscriptions.remove(id);
    }

    fn arm(&self, prefix: String, fault: Fault) {
        let mut state = lock(&self.state);
        state.faults.retain(|(p, _)| *p != prefix);
        state.faults.push((prefix, fault));
    }
}

/// A `Stripe-Signature` header for `payload` at `timestamp` (Unix seconds): `t=<ts>` and one
/// `v1=<hex HMAC-SHA256("<ts>.<payload>")>` per secret, in order (as during a rotation).
pub fn sign_webhook(payload: &[u8], secrets: &[&str], timestamp: i64) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(payload);
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let tag = hmac::sign(&key, &signed);
        header.push_str(",v1=");
        header.push_str(&kernel::hex::encode(tag.as_ref()));
    }
    header
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[handler]
async fn dispatch(req: &Request, body: Vec<u8>, state: Data<&Shared>) -> Response {
    let request = StripeRequest {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        form: url::form_urlencoded::parse(&body).into_owned().collect(),
        idempotency_key: req.header("idempotency-key").map(str::to_string),
        stripe_version: req.header("stripe-version").map(str::to_string),
    };
    lock(&state).requests.push(request.clone());
    if !request.path.starts_with("/v1/") {
        return page(&lock(&state), req.method(), &request.path);
    }
    if let Some(refusal) = check_key(req.header("authorization")) {
        return respond(&refusal, false);
    }
    match take_fault(&state, &request.path) {
        Some(Fault::Slow(pause)) => tokio::time::sleep(pause).await,
        Some(fault) => return respond(&fault_answer(&fault), false),
        None => {}
    }
    answer(&mut lock(&state), req.method(), &request)
}

/// Runs the call under the idempotency layer; the lock is held throughout, so two calls with
/// one key never both run.
fn answer(state: &mut State, method: &Method, request: &StripeRequest) -> Response {
    let key = request
        .idempotency_key
        .as_ref()
        .filter(|_| method == Method::POST);
    let mut sorted = request.form.clone();
    sorted.sort();
    if let Some(key) = key
        && let Some(saved) = state.idempotency.get(key)
    {
        let refusal = if saved.path != request.path {
            format!(
                "Keys for idempotent requests can only be used for the same endpoint they \
                 were first used for ('{}' vs '{}'). Try using a key other than '{key}' if \
                 you meant to execute a different request.",
                saved.path, request.path
            )
        } else if saved.form != sorted {
            format!(
                "Keys for idempotent requests can only be used with the same parameters they \
                 were first used with. Try using a key other than '{key}' if you meant to \
                 execute a different request."
            )
        } else {
            return respond(&saved.answer, true);
        };
        let answer = stripe_error(400, "idempotency_error", None, &refusal, None);
        return respond(&answer, false);
    }
    let answer = route(state, method, request);
    if let Some(key) = key
        && answer.status.is_success()
    {
        let saved = Saved {
            path: request.path.clone(),
            form: sorted,
            answer: answer.clone(),
        };
        state.idempotency.insert(key.clone(), saved);
    }
    respond(&answer, false)
}

fn route(state: &mut State, method: &Method, request: &StripeRequest) -> Answer {
    let form = &request.form;
    let path = request.path.as_str();
    match (method.as_str(), path) {
        ("POST", "/v1/customers") => {
            let id = next_id(state, "cus_standin");
            let customer = customer_object(&id, form);
            state.customers.insert(id, customer.clone());
            state.created_customers += 1;
            ok(&customer)
        }
        ("POST", "/v1/checkout/sessions") => checkout_session(state, form),
        ("POST", "/v1/billing_portal/sessions") => {
            let Some(customer) = field(form, "customer") else {
                return missing("customer");
            };
            if !state.customers.contains_key(customer) {
                return no_such_customer(customer);
            }
            let id = next_id(state, "bps");
            let url = format!("{}portal/{id}", state.root);
            let return_url = field(form, "return_url");
            state
                .portal_sessions
                .insert(id.clone(), return_url.unwrap_or_default().to_string());
            ok(&json!({
                "id": id,
                "object": "billing_portal.session",
                "configuration": "bpc_standin",
                "created": now(),
                "customer": customer,
                "customer_account": null,
                "flow": null,
                "livemode": false,
                "locale": null,
                "on_behalf_of": null,
                "return_url": return_url,
                "url": url,
            }))
        }
        ("GET", _) if path.starts_with("/v1/subscriptions/") => {
            let id = &path["/v1/subscriptions/".len()..];
            match state.subscriptions.get(id) {
                Some(subscription) => ok(subscription),
                None => stripe_error(
                    404,
                    "invalid_request_error",
                    Some("resource_missing"),
                    &format!("No such subscription: '{id}'"),
                    Some("id"),
                ),
            }
        }
        _ => stripe_error(
            404,
            "invalid_request_error",
            None,
            &format!(
                "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs \
                 or we can help at https://support.stripe.com/."
            ),
            None,
        ),
    }
}

/// The optional Checkout Session fields a fresh hosted session has no value for (set
/// after the `json!`, which cannot take them all within its recursion limit).
const CHECKOUT_NULLS: &str = "\
    adaptive_pricing after_expiration allow_promotion_codes amount_subtotal \
    amount_total billing_address_collection client_secret collected_information \
    consent consent_collection currency customer_account customer_details invoice \
    invoice_creation locale payment_intent payment_link \
    payment_method_configuration_details recovered_from \
    saved_payment_method_options setup_intent shipping_address_collection \
    shipping_cost submit_type subscription total_details wallet_options";

fn checkout_session(state: &mut State, form: &[(String, String)]) -> Answer {
    let mode = field(form, "mode").unwrap_or("payment").to_string();
    let line_items = line_items(form);
    if matches!(mode.as_str(), "payment" | "subscription") && line_items.is_empty() {
        return missing("line_items");
    }
    if let Some(i) = line_items
        .iter()
        .position(|l| l.price.is_some() && l.quantity.is_none())
    {
        return missing(&format!("line_items[{i}][quantity]"));
    }
    let customer = field(form, "customer").map(str::to_string);
    if let Some(customer) = &customer
        && !state.customers.contains_key(customer)
    {
        return no_such_customer(customer);
    }
    let id = next_id(state, "cs_test");
    let url = format!("{}checkout/{id}", state.root);
    let text = |name: &str| field(form, name).map(str::to_string);
    let record = CheckoutSessionRecord {
        id: id.clone(),
        url: url.clone(),
        mode,
        customer,
        client_reference_id: text("client_reference_id"),
        success_url: text("success_url"),
        cancel_url: text("cancel_url"),
        metadata: map(form, "metadata"),
        line_items,
        subscription_metadata: map(form, "subscription_data[metadata]"),
    };
    let created = now();
    // Without a customer, Checkout makes one (always, in subscription mode).
    let customer_creation = record.customer.is_none().then_some("always");
    let mut session = json!({
        "id": id,
        "object": "checkout.session",
        "automatic_tax": {
            "enabled": false,
            "liability": null,
            "provider": null,
            "status": null,
        },
        "cancel_url": record.cancel_url,
        "client_reference_id": record.client_reference_id,
        "created": created,
        "custom_fields": [],
        "custom_text": {
            "after_submit": null,
            "shipping_address": null,
            "submit": null,
            "terms_of_service_acceptance": null,
        },
        "customer": record.customer,
        "customer_creation": customer_creation,
        "customer_email": field(form, "customer_email"),
        "discounts": [],
        "expires_at": created + 24 * 60 * 60,
        "livemode": false,
        "metadata": record.metadata,
        "mode": record.mode,
        "payment_method_collection": "always",
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "phone_number_collection": { "enabled": false },
        "shipping_options": [],
        "status": "open",
        "success_url": record.success_url,
        "ui_mode": "hosted",
        "url": url,
    });
    for name in CHECKOUT_NULLS.split_whitespace() {
        session[name] = Value::Null;
    }
    state.checkout_sessions.push(record);
    ok(&session)
}

fn customer_object(id: &str, form: &[(String, String)]) -> Value {
    json!({
        "id": id,
        "object": "customer",
        "address": null,
        "balance": 0,
        "created": now(),
        "currency": null,
        "default_source": null,
        "delinquent": false,
        "description": field(form, "description"),
        "discount": null,
        "email": field(form, "email"),
        "invoice_prefix": id.trim_start_matches("cus_").replace('_', "").to_uppercase(),
        "invoice_settings": {
            "custom_fields": null,
            "default_payment_method": null,
            "footer": null,
            "rendering_options": null,
        },
        "livemode": false,
        "metadata": map(form, "metadata"),
        "name": field(form, "name"),
        "next_invoice_sequence": 1,
        "phone": field(form, "phone"),
        "preferred_locales": [],
        "shipping": null,
        "tax_exempt": "none",
        "test_clock": null,
    })
}

/// The hosted pages a session's `url` points at.
fn page(state: &State, method: &Method, path: &str) -> Response {
    let html = |title: &str, links: &[(&str, &str)]| {
        let links: String = links
            .iter()
            .map(|(label, href)| format!("<p><a href=\"{}\">{label}</a></p>", escape(href)))
            .collect();
        Response::builder()
            .content_type("text/html; charset=utf-8")
            .body(format!(
                "<!doctype html><title>{0}</title><h1>{0}</h1>{links}",
                escape(title)
            ))
    };
    if method == Method::GET {
        if let Some(id) = path.strip_prefix("/checkout/")
            && let Some(s) = state.checkout_sessions.iter().find(|s| s.id == id)
        {
            let (pay, cancel) = (s.success_url.as_deref(), s.cancel_url.as_deref());
            let links: Vec<_> = [("Pay", pay), ("Cancel", cancel)]
                .into_iter()
                .filter_map(|(label, href)| Some((label, href?)))
                .collect();
            return html(
                &format!("Stripe stand-in checkout {id} ({})", s.mode),
                &links,
            );
        }
        if let Some(id) = path.strip_prefix("/portal/")
            && let Some(back) = state.portal_sessions.get(id)
        {
            return html(&format!("Stripe stand-in portal {id}"), &[("Return", back)]);
        }
    }
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .body("no such page on the Stripe stand-in")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Stripe's 401 for a missing or wrong key, or `None` when the key is [`SECRET_KEY`].
fn check_key(authorization: Option<&str>) -> Option<Answer> {
    let message = match authorization.and_then(|a| a.strip_prefix("Bearer ")) {
        Some(SECRET_KEY) => return None,
        Some(key) => {
            let shown = if key.len() > 12 && key.is_ascii() {
                let stars = "*".repeat(key.len() - 12);
                format!("{}{stars}{}", &key[..8], &key[key.len() - 4..])
            } else {
                "*".repeat(key.len())
            };
            format!("Invalid API Key provided: {shown}")
        }
        None => "You did not provide an API key. You need to provide your API key in the \
                 Authorization header, using Bearer auth (e.g. 'Authorization: Bearer \
                 YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, \
                 or we can help at https://support.stripe.com/."
            .to_string(),
    };
    Some(stripe_error(
        401,
        "invalid_request_error",
        None,
        &message,
        None,
    ))
}

/// Takes the fault armed for `path`: one armed for a matching prefix first, then
/// `fail_next`'s.
fn take_fault(state: &Shared, path: &str) -> Option<Fault> {
    let mut state = lock(state);
    let index = state
        .faults
        .iter()
        .position(|(prefix, _)| !prefix.is_empty() && path.starts_with(prefix.as_str()))
        .or_else(|| {
            state
                .faults
                .iter()
                .position(|(prefix, _)| prefix.is_empty())
        })?;
    Some(state.faults.remove(index).1)
}

fn fault_answer(fault: &Fault) -> Answer {
    match fault {
        Fault::RateLimited => stripe_error(
            429,
            "invalid_request_error",
            Some("rate_limit"),
            "Request rate limit exceeded. Learn more about rate limits here \
             https://stripe.com/docs/rate-limits.",
            None,
        ),
        Fault::ServerError => {
            stripe_error(500, "api_error", None, "An unknown error occurred", None)
        }
        Fault::Malformed => Answer {
            status: StatusCode::OK,
            body: "<html><body>502 upstream hiccup: this is not JSON".to_string(),
            request_id: request_id(),
        },
        Fault::Status(status, code) => {
            let error_type = match status {
                500.. => "api_error",
                402 => "card_error",
                _ => "invalid_request_error",
            };
            let message = format!("The Stripe stand-in was told to answer {status} {code}.");
            stripe_error(*status, error_type, Some(code), &message, None)
        }
        // Answered normally after the pause; never turned into an answer here.
        Fault::Slow(_) => ok(&json!({})),
    }
}

/// The answer as sent; a replay gets a fresh `Request-Id` and names the original one.
fn respond(answer: &Answer, replayed: bool) -> Response {
    let builder = Response::builder()
        .status(answer.status)
        .content_type("application/json");
    let builder = if replayed {
        builder
            .header("request-id", request_id())
            .header("idempotent-replayed", "true")
            .header("original-request", answer.request_id.as_str())
    } else {
        builder.header("request-id", answer.request_id.as_str())
    };
    builder.body(answer.body.clone())
}

fn ok(value: &Value) -> Answer {
    Answer {
        status: StatusCode::OK,
        body: value.to_string(),
        request_id: request_id(),
    }
}

/// Stripe's error envelope.
fn stripe_error(
    status: u16,
    error_type: &str,
    code: Option<&str>,
    message: &str,
    param: Option<&str>,
) -> Answer {
    let mut error = json!({ "type": error_type, "message": message });
    if let Some(code) = code {
        error["code"] = json!(code);
        error["doc_url"] = json!(format!(
            "https://stripe.com/docs/error-codes/{}",
            code.replace('_', "-")
        ));
    }
    if let Some(param) = param {
        error["param"] = json!(param);
    }
    let request_id = request_id();
    error["request_log_url"] = json!(format!(
        "https://dashboard.stripe.com/test/logs/{request_id}"
    ));
    Answer {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body: json!({ "error": error }).to_string(),
        request_id,
    }
}

fn missing(param: &str) -> Answer {
    stripe_error(
        400,
        "invalid_request_error",
        Some("parameter_missing"),
        &format!("Missing required param: {param}."),
        Some(param),
    )
}

fn no_such_customer(id: &str) -> Answer {
    stripe_error(
        400,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such customer: '{id}'"),
        Some("customer"),
    )
}

fn next_id(state: &mut State, prefix: &str) -> String {
    state.counter += 1;
    format!("{prefix}_{}", state.counter)
}

fn request_id() -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("req_{}", &id[id.len() - 14..])
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The `name[key]=value` fields as a map.
fn map(form: &[(String, String)], name: &str) -> BTreeMap<String, String> {
    form.iter()
        .filter_map(|(k, v)| {
            let key = k.strip_prefix(name)?.strip_prefix('[')?.strip_suffix(']')?;
            (!key.contains(['[', ']'])).then(|| (key.to_string(), v.clone()))
        })
        .collect()
}

/// `line_items[i][price]` and `line_items[i][quantity]`, by index.
fn line_items(form: &[(String, String)]) -> Vec<LineItem> {
    let mut items: BTreeMap<usize, LineItem> = BTreeMap::new();
    for (k, v) in form {
        let Some(rest) = k.strip_prefix("line_items[") else {
            continue;
        };
        let Some((index, rest)) = rest.split_once(']') else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        let item = items.entry(index).or_default();
        match rest {
            "[price]" => item.price = Some(v.clone()),
            "[quantity]" => item.quantity = v.parse().ok(),
            _ => {}
        }
    }
    items.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_an_independent_hmac() {
        let header = sign_webhook(
            br#"{"id":"evt_1"}"#,
            &["whsec_test", "whsec_old"],
            1_700_000_000,
        );
        assert_eq!(
            header,
            "t=1700000000,\
             v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925,\
             v1=ef1b1b7e4b312671a75ef2a03e10529f7834a6528a49db77ad6568c8c8017843"
        );
    }

    #[test]
    fn bracketed_fields_are_read() {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(
            b"line_items%5B1%5D%5Bprice%5D=p2&line_items[0][price]=p1\
              &line_items[0][quantity]=1&metadata[tenant_id]=t\
              &subscription_data[metadata][tenant_id]=s&line_items[1][quantity]=3",
        )
        .into_owned()
        .collect();
        assert_eq!(
            line_items(&form),
            vec![
                LineItem {
                    price: Some("p1".into()),
                    quantity: Some(1)
                },
                LineItem {
                    price: Some("p2".into()),
                    quantity: Some(3)
                },
            ]
        );
        assert_eq!(
            map(&form, "metadata"),
            BTreeMap::from([("tenant_id".into(), "t".into())])
        );
        assert_eq!(map(&form, "subscription_data[metadata]")["tenant_id"], "s");
    }

    #[test]
    fn a_wrong_key_is_masked() {
        let refusal = check_key(Some("Bearer sk_test_wrong_key_1234")).unwrap();
        assert_eq!(refusal.status, StatusCode::UNAUTHORIZED);
        assert!(
            refusal.body.contains("sk_test_**********1234"),
            "{}",
            refusal.body
        );
        assert!(check_key(Some("Bearer sk_test_standin")).is_none());
    }
}

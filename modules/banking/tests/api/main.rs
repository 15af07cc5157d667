//! The banking module through its services, against the testkit's Plaid stand-in and the
//! built-in sandbox bank, on a database of its own per test.

mod plaid;
mod rotation;
mod sandbox;
mod scope;
mod support;
mod sync;
mod webhook;

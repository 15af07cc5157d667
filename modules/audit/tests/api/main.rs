//! The audit log against a real database: the guarantees, as tests.

mod chain;
mod helpers;
mod tamper;

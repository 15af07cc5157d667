//! The Balance binary's behaviour over real HTTP, against a real PostgreSQL.

mod audit;
mod categorize;
mod cli;
mod data_layer;
mod hardening;
mod helpers;
mod idempotency;
mod identity;
mod imports;
mod isolation;
mod isolation_matrix;
mod jobs;
mod ledger;
mod ops;
mod pagination;
mod probe;
mod problems;
mod roles;
mod schema;
mod slow_clients;
mod spec;
mod spec_conformance;
mod tenant_routes;
mod tenants;
mod test_api;
mod totp;

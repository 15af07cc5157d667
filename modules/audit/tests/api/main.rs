//! The audit log against a real database.

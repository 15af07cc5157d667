//! The job runner against a real database and real worker processes.

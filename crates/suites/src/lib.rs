//! Suites that span every service: `tests/` holds them. The crate has no code of its own.

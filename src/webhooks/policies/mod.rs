//! Admission policies: pure functions from an object to its violations.

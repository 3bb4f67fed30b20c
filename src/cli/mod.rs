//! The `kubectl-canopy` plugin: `tree`, `create`, `set`, `describe`.

//! Kernel profiles.

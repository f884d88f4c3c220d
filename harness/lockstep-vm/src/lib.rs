//! Kernels and guests for lockstep (placeholder docs, rewritten below).
#[cfg(feature = "host")]
pub mod debian;

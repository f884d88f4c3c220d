//! The spin-lock verifier model.

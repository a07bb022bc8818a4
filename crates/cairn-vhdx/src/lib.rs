//! VHDX reader (placeholder while the crate is being written).
#![forbid(unsafe_code)]

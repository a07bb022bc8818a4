//! qcow2 reader (placeholder while the crate is being written).
#![forbid(unsafe_code)]

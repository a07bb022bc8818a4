//! Cairn repository cryptography (work in progress).
#![forbid(unsafe_code)]

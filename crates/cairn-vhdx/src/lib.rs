//! # cairn-vhdx
//!
//! A read-only VHDX reader (placeholder docs).
#![forbid(unsafe_code)]

mod error;
mod format;
mod guid;
mod image;
mod log;

pub use error::{Error, Result};
pub use guid::Guid;
pub use image::VhdxImage;

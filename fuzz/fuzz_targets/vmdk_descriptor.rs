#![no_main]
//! Parses the input as descriptor text, then renders and re-parses it.

use cairn_vmdk::Descriptor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = Descriptor::parse(data, 4096) {
        let _ = d.image_uuid();
        let _ = d.has_parent();
        let _ = Descriptor::parse(d.render().as_bytes(), 4096);
    }
});

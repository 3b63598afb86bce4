//! One request frame (the bytes after the 4-byte size) through the same decoder
//! `handle_frame` uses: header, API/version check, body. Any input must yield
//! Ok or a clean `Close`, never a panic, abort or huge allocation.
#![no_main]

use bytes::Bytes;
use floe_gateway::api::{Decoded, decode_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Request { trailing, .. }) = decode_request(Bytes::copy_from_slice(data)) {
        assert!(trailing <= data.len());
    }
});

//! A produce record set through batch validation, then every accepted batch
//! through the capped record reader ListOffsets uses. Neither may panic, and the
//! reader never returns more than its cap allows.
#![no_main]

use bytes::Bytes;
use floe_gateway::{batch, records};
use libfuzzer_sys::fuzz_target;

/// Small, so decompression bombs hit the cap quickly.
const CAP: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // Validation refuses bad CRCs, which random bytes almost never pass; the
    // first byte chooses whether to fix the CRCs up first, so the fuzzer also
    // reaches the record reader with arbitrary (compressed) payloads.
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let mut bytes = data.to_vec();
    if mode & 1 == 1 {
        fix_crcs(&mut bytes);
    }
    let max = if mode & 2 == 2 { 1000 } else { 1 << 20 };
    let set = Bytes::from(bytes);
    if let Ok(headers) = batch::validate_batches(&set, max) {
        let mut total = 0;
        for h in &headers {
            assert!(h.bytes.len() >= batch::HEADER_LEN && h.bytes.len() <= max);
            assert!(h.record_count > 0);
            total += h.bytes.len();
            if let Ok(section) = records::records_section(&h.bytes, CAP) {
                assert!(section.len() <= CAP.max(h.bytes.len()));
            }
            let _ = records::record_timestamps(&h.bytes, CAP);
        }
        assert_eq!(total, set.len());
    }
    // Stored-batch walking sees the same bytes on reads.
    for (start, end, base, last, _) in batch::stored_batches(&set) {
        assert!(start < end && end <= set.len());
        let _ = (base, last);
    }
    // The record reader also faces bytes validation never saw (stored data).
    let _ = records::record_timestamps(&set, CAP);
});

/// Recomputes each batch's CRC-32C where its length fits, so validation
/// proceeds to the later checks.
fn fix_crcs(b: &mut [u8]) {
    let mut pos = 0usize;
    while b.len() - pos >= batch::HEADER_LEN {
        let len = i32::from_be_bytes([b[pos + 8], b[pos + 9], b[pos + 10], b[pos + 11]]);
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(batch::LOG_OVERHEAD + pos))
            .filter(|&e| e <= b.len() && e >= pos + batch::HEADER_LEN)
        else {
            return;
        };
        let crc = crc32c::crc32c(&b[pos + 21..end]);
        b[pos + 17..pos + 21].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}

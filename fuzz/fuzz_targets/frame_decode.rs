//! Frame decoding: arbitrary bytes as one frame, decoded whole and event by event (the two
//! read paths must agree). The first byte's low bit asks for the checksums to be rewritten
//! first, so that mutations reach the chunk table, zstd and the record codec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::fuzzing::{FUZZ_SALT, decode_frame, reseal_frame};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut frame = rest.to_vec();
    if mode & 1 == 1 {
        reseal_frame(&mut frame, FUZZ_SALT);
    }
    // Ok or a reason; never a panic, a hang or an unbounded allocation.
    let _ = decode_frame(&frame, FUZZ_SALT);
});

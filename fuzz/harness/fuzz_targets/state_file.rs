#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kith_fuzz::quiet_caught_panics();
    if let Some((_, target)) = kith_fuzz::TARGETS.iter().find(|(name, _)| *name == "state_file") {
        target(data);
    }
});

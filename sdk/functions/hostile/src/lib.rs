//! A function that misbehaves on request, for testing the node's limits.
//!
//! Input selects the behaviour: `loop`, `bomb`, `recurse`, `huge`, `trap`, `panic`,
//! `fail`, `sleep` (busy-waits on the host clock), `log-flood`; anything else echoes.
kith_sdk::function!(misbehave);
kith_sdk::manifest!(
    memory_bytes = 16 << 20,
    fuel = 2_000_000_000,
    timeout_ms = 2_000
);

fn misbehave(input: &[u8]) -> Result<Vec<u8>, String> {
    match input {
        b"loop" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        b"bomb" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = vec![0u8; 1 << 20];
                chunk[0] = 1;
                hoard.push(std::hint::black_box(chunk));
            }
        }
        b"recurse" => Ok(vec![(recurse(std::hint::black_box(1)) % 256) as u8]),
        b"huge" => Ok(vec![b'x'; 4 << 20]),
        b"trap" => {
            #[cfg(target_arch = "wasm32")]
            core::arch::wasm32::unreachable();
            #[cfg(not(target_arch = "wasm32"))]
            unreachable!()
        }
        b"panic" => panic!("the hostile function panicked on purpose"),
        b"fail" => Err("the hostile function failed on purpose".to_string()),
        b"sleep" => {
            let start = kith_sdk::now_ms();
            while kith_sdk::now_ms() - start < 60_000 {}
            Ok(b"woke".to_vec())
        }
        b"log-flood" => {
            for i in 0..10_000 {
                kith_sdk::log(
                    kith_sdk::LogLevel::Info,
                    &format!("line {i} {}", "z".repeat(5000)),
                );
            }
            Ok(b"flooded".to_vec())
        }
        other => Ok(other.to_vec()),
    }
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 16]);
    recurse(n + 1).wrapping_add(pad[3])
}

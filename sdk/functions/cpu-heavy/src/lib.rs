//! CPU-bound work of a chosen size: input is a decimal `n`; counts the primes below `n`
//! by trial division and returns the count as decimal text.
kith_sdk::function!(count_primes);
kith_sdk::manifest!(fuel = 5_000_000_000, timeout_ms = 20_000);

fn count_primes(input: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(input)
        .map_err(|e| e.to_string())?
        .trim();
    let n: u32 = text
        .parse()
        .map_err(|e| format!("input must be a decimal size n, got {text:?}: {e}"))?;
    let mut count = 0u32;
    for k in 2..n {
        let mut d = 2;
        let mut prime = true;
        while d * d <= k {
            if k % d == 0 {
                prime = false;
                break;
            }
            d += 1;
        }
        count += u32::from(prime);
    }
    Ok(count.to_string())
}

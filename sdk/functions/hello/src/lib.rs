//! Greets its input.
kith_sdk::function!(greet);
kith_sdk::manifest!(
    fuel = 10_000_000,
    timeout_ms = 1_000,
    memory_bytes = 2 << 20
);

fn greet(input: &[u8]) -> Result<String, String> {
    let name = std::str::from_utf8(input).map_err(|e| format!("input is not UTF-8: {e}"))?;
    let name = if name.is_empty() { "world" } else { name };
    Ok(format!("hello, {name}!"))
}

//! Automerge bloom filters from peers, checked before Automerge sees them.

use super::StateError;

/// Most bits per entry a peer's Automerge bloom filter may claim (Automerge uses 10).
pub const MAX_BLOOM_BITS_PER_ENTRY: u32 = 64;
/// Most probes per hash a peer's Automerge bloom filter may claim (Automerge uses 7).
pub const MAX_BLOOM_PROBES: u32 = 64;

/// Checks the encoding of a bloom filter in a peer's Automerge sync message before the
/// node lets Automerge use it: Automerge trusts the numbers in it, and divides by zero
/// on a filter with entries but no bits, or reserves memory for as many probes as the
/// filter claims (up to 2^32) every time it tests a hash.
///
/// The encoding is empty (no entries), or the LEB128 numbers `entries`,
/// `bits_per_entry`, `probes`, then the bits.
///
/// # Errors
/// [`StateError::Malformed`] naming the number that is out of bounds.
pub fn check_bloom(encoded: &[u8]) -> Result<(), StateError> {
    if encoded.is_empty() {
        return Ok(());
    }
    let mut at = 0;
    let mut number = |what: &str| -> Result<u32, StateError> {
        let mut value: u64 = 0;
        for shift in (0..35).step_by(7) {
            let byte = *encoded
                .get(at)
                .ok_or_else(|| StateError::Malformed(format!("bloom filter: {what} truncated")))?;
            at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return u32::try_from(value).map_err(|_| {
                    StateError::Malformed(format!("bloom filter: {what} over 32 bits"))
                });
            }
        }
        Err(StateError::Malformed(format!(
            "bloom filter: {what} over 32 bits"
        )))
    };
    let entries = number("entries")?;
    let bits_per_entry = number("bits per entry")?;
    let probes = number("probes")?;
    let bits = encoded.len() - at;
    if entries == 0 {
        return Ok(());
    }
    if !(1..=MAX_BLOOM_BITS_PER_ENTRY).contains(&bits_per_entry) {
        return Err(StateError::Malformed(format!(
            "bloom filter of {bits_per_entry} bits per entry (1 ..= {MAX_BLOOM_BITS_PER_ENTRY})"
        )));
    }
    if !(1..=MAX_BLOOM_PROBES).contains(&probes) {
        return Err(StateError::Malformed(format!(
            "bloom filter of {probes} probes (1 ..= {MAX_BLOOM_PROBES})"
        )));
    }
    if bits == 0 || bits >= (1 << 28) {
        return Err(StateError::Malformed(format!(
            "bloom filter of {entries} entries in {bits} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_filters_with_absurd_numbers_are_refused() {
        assert_eq!(check_bloom(&[]), Ok(()));
        // 1 entry, 10 bits each, 7 probes, 2 bytes of bits: what Automerge writes.
        assert_eq!(check_bloom(&[1, 10, 7, 0xff, 0x01]), Ok(()));
        // No bits per entry: Automerge would divide by zero.
        let e = check_bloom(&[1, 0, 7]).unwrap_err();
        assert!(e.to_string().contains("0 bits per entry"), "{e}");
        // 2^32 - 1 probes: Automerge would reserve 16 GiB per hash tested.
        let e = check_bloom(&[1, 10, 0xff, 0xff, 0xff, 0xff, 0x0f, 0]).unwrap_err();
        assert!(e.to_string().contains("probes"), "{e}");
        assert!(check_bloom(&[1, 10, 7]).is_err(), "entries but no bits");
        assert!(check_bloom(&[0x80, 0x80]).is_err(), "truncated");
        assert!(
            check_bloom(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err(),
            "over 32 bits"
        );
    }
}

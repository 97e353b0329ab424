//! Partition assignment: which partition a stream's events go to.

/// The partition of a stream among `partitions`: FNV-1a (64-bit) of the stream
/// id's bytes, modulo `partitions`.
///
/// The hash is fixed and written out here (not `std`'s randomized hasher), so
/// every process, every run and every transport (in-process, Kafka, JetStream)
/// that uses it puts a stream on the same partition. One stream always lands on
/// one partition, which is what keeps its events in order.
///
/// ```
/// use orchestrix::runtime::partition_for;
/// assert_eq!(partition_for("account-1", 1), 0);
/// let p = partition_for("account-1", 8);
/// assert!(p < 8);
/// assert_eq!(partition_for("account-1", 8), p); // stable
/// assert_eq!(partition_for("anything", 0), 0); // no partitions reads as one
/// ```
#[must_use]
pub fn partition_for(stream_id: &str, partitions: u32) -> u32 {
    if partitions <= 1 {
        return 0;
    }
    let hash = fnv1a64(stream_id.as_bytes());
    // The remainder is below `partitions`, a u32, so it fits.
    u32::try_from(hash % u64::from(partitions)).unwrap_or(0)
}

/// FNV-1a, 64-bit.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        // From the FNV reference test suite.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn spreads_streams_over_every_partition() {
        let mut counts = [0u32; 8];
        for i in 0..1000 {
            counts[partition_for(&format!("account-{i}"), 8) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 60), "{counts:?}");
    }
}

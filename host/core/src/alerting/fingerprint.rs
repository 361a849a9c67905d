//! Alert identity: the label set type and its [`fingerprint`], a stable idempotency key. Owns hashing only.

use std::collections::BTreeMap;

/// A label (or annotation) set: sorted by name, one value per name.
pub type LabelSet = BTreeMap<String, String>;

/// Builds a [`LabelSet`] from pairs; a later duplicate name wins.
pub fn label_set<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> LabelSet {
    pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
/// Never valid in UTF-8, so `a=b,c` and `a,b=c` cannot collide.
const SEPARATOR: u8 = 0xff;

/// The 16-hex-digit fingerprint of a label set: FNV-1a 64 over `name 0xff value 0xff` for each label in name
/// order. This is Prometheus' `LabelSet.Fingerprint`, so the key matches what Alertmanager shows; it is stable
/// across processes and versions (std's hasher is randomised and may change), which matters because it is stored.
pub fn fingerprint(labels: &LabelSet) -> String {
    let mut hash = FNV_OFFSET;
    for (name, value) in labels {
        for &byte in name.as_bytes().iter().chain([&SEPARATOR]).chain(value.as_bytes()).chain([&SEPARATOR]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(FNV_PRIME);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_prometheus_label_set_fingerprints() {
        // Vectors from prometheus/common `model/signature_test.go`.
        assert_eq!(fingerprint(&LabelSet::new()), format!("{:016x}", 14_695_981_039_346_656_037_u64));
        let labels = label_set([("name", "garland, briggs"), ("fear", "love is not enough")]);
        assert_eq!(fingerprint(&labels), format!("{:016x}", 5_799_056_148_416_392_346_u64));
        assert_eq!(fingerprint(&labels), "507a62d79ee76c9a");
    }

    #[test]
    fn order_independent_and_separator_safe() {
        let a = label_set([("b", "2"), ("a", "1")]);
        let b = label_set([("a", "1"), ("b", "2")]);
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&label_set([("a", "bc")])), fingerprint(&label_set([("ab", "c")])));
        assert_ne!(fingerprint(&label_set([("a", "")])), fingerprint(&LabelSet::new()));
        assert_eq!(fingerprint(&a).len(), 16);
    }
}

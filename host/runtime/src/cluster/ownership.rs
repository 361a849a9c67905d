//! Which live member owns a service: rendezvous (highest-random-weight) hashing. Every member computes the same
//! answer from the same member list, and a member joining or leaving moves only the services it wins or held. The
//! weight is the SHA-1 of `node \n service` in hex, the function Redis offers scripts as `redis.sha1hex`, so the
//! fencing script in Redis and this code agree on the owner. Pure: no I/O.

/// The weight of `node` for `service`: compared as text (40 lowercase hex digits compare like the numbers).
pub fn weight(node: &str, service: &str) -> String {
    let mut h = sha1_smol::Sha1::new();
    h.update(node.as_bytes());
    h.update(b"\n");
    h.update(service.as_bytes());
    h.digest().to_string()
}

/// The owner of `service` among `members`: the member with the highest weight (`None` without members).
pub fn owner<'a>(service: &str, members: &'a [String]) -> Option<&'a str> {
    let mut best: Option<(String, &'a str)> = None;
    for m in members {
        let w = weight(m, service);
        // Strictly greater, in member order: the fencing script breaks (impossible) ties the same way.
        if best.as_ref().is_none_or(|(b, _)| w > *b) {
            best = Some((w, m.as_str()));
        }
    }
    best.map(|(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_weight_is_redis_sha1hex_of_node_newline_service() {
        // `redis-cli EVAL "return redis.sha1hex('a\nsvc')" 0` answers this on Redis 7.0.
        assert_eq!(weight("a", "svc"), "abb370f2a4c3fd86fc6650da87f0dd8e25a5d1d7");
        assert_eq!(weight("", ""), "adc83b19e793491b1c6ea0fd8b46cd9f32e592fc", "sha1 of a newline");
    }

    #[test]
    fn every_service_has_one_owner_and_a_change_moves_only_what_it_must() {
        let three = members(&["a", "b", "c"]);
        let services: Vec<String> = (0..3000).map(|i| format!("svc-{i}")).collect();
        let before: Vec<&str> = services.iter().map(|s| owner(s, &three).expect("an owner")).collect();
        for m in ["a", "b", "c"] {
            let n = before.iter().filter(|o| **o == m).count();
            assert!((800..1200).contains(&n), "{m} owns {n} of 3000");
        }
        // `b` leaves: only its services move, spread over the others.
        let two = members(&["a", "c"]);
        for (s, was) in services.iter().zip(&before) {
            let now = owner(s, &two).expect("an owner");
            if *was != "b" {
                assert_eq!(now, *was, "{s} moved although its owner stayed");
            }
        }
        // The member order does not matter.
        let shuffled = members(&["c", "a", "b"]);
        assert!(services.iter().zip(&before).all(|(s, was)| owner(s, &shuffled) == Some(*was)));
        assert_eq!(owner("x", &[]), None);
    }
}

//! Fuzzes `X-Hub-Signature-256`: header parsing and verification. Input: a header line, a NUL,
//! then the body. `parse` must accept exactly `sha256=<64 hex>` (surrounding white space allowed),
//! a body signed with the secret must verify whole or in any split, and nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shipgate::config::Secret;
use shipgate::github::signature::{Verifier, parse, sign};

const SECRET: &str = "fuzz-secret";

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(header) = std::str::from_utf8(header) else { return };
    let verifier = Verifier::new(&[Secret::new("old-secret"), Secret::new(SECRET)]);

    // What `parse` accepts, stated independently.
    let hex = header.trim().strip_prefix("sha256=");
    let well_formed = hex.is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    let parsed = parse(header);
    assert_eq!(parsed.is_some(), well_formed, "parse({header:?})");
    if let Some(sig) = parsed {
        assert_eq!(hex::encode(sig), hex.unwrap().to_ascii_lowercase());
    }

    // A fuzzed header verifies only if it is the body's real signature.
    let real = sign(SECRET, body);
    let verified = verifier.verify(header, body);
    assert_eq!(verified, parsed.is_some_and(|sig| format!("sha256={}", hex::encode(sig)) == real), "{header:?}");

    // The real signature verifies, whole and in parts split anywhere, upper- or lower-case.
    assert!(verifier.verify(&real, body));
    assert!(verifier.verify(&format!(" {} ", real.to_ascii_uppercase().replace("SHA256=", "sha256=")), body));
    let cut = header.len() % (body.len() + 1);
    let (a, b) = body.split_at(cut);
    assert!(verifier.verify_parts(&real, &[a, b]));
    assert!(verifier.verify_parts(&real, &[&[][..], a, &[][..], b]));
    if !body.is_empty() {
        // One flipped bit anywhere is refused.
        let mut other = body.to_vec();
        other[cut % body.len()] ^= 1;
        assert!(!verifier.verify(&real, &other));
    }
    // A verifier without secrets verifies nothing.
    assert!(!Verifier::new(&[]).verify(&real, body));
});

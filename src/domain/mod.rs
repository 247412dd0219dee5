//! The domain: plain Rust, no I/O, no async. Parsers for the repository policy
//! (`.github/shipgate.yml`), the change request in an issue body, and the commands in comments;
//! gate evaluation and the messages the App writes.

pub mod action;
pub mod alert;
pub mod breakglass;
pub mod ci;
pub mod commands;
pub mod figures;
pub mod flow;
pub mod freeze;
pub mod gate;
pub mod ids;
pub mod links;
pub mod messages;
pub mod notify;
pub mod policy;
pub mod report;
pub mod request;
pub mod state;
pub mod zone;

/// Shared by the parsers' never-panic tests.
#[cfg(test)]
pub(crate) mod testutil {
    /// A small xorshift PRNG, so the "random" tests are the same on every run (no crate needed).
    pub struct XorShift(u64);

    impl XorShift {
        pub fn new(seed: u64) -> Self {
            XorShift(seed.max(1))
        }

        pub fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }
}

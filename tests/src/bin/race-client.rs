//! A separate OS process in the slot race: reads a `race::Spec` on stdin, sends its requests
//! at the given instant through its own handler state, prints the outcomes as JSON.

use dcbackup_tests::race::{fire, Spec};
use dcbackup_tests::Stack;
use std::io::Read;

#[tokio::main]
async fn main() {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .expect("reading the spec from stdin");
    let spec: Spec = serde_json::from_str(&input).expect("a race spec on stdin");
    let stack = Stack::attach(&spec.prefix).await;
    let outcomes = fire(&stack, spec.start_at_ms, &spec.targets).await;
    println!(
        "{}",
        serde_json::to_string(&outcomes).expect("outcomes serialize")
    );
}
